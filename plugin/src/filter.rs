//! The config compiled for the hot path: built once per `on_configure`,
//! shared (read-only) by every HTTP context of the VM.

use crate::config::{Config, JwtConfig};
use crate::host::profile::Profile;
use crate::jobs::shipper::ShipperSettings;
use crate::request::identity::{Identity, TagSchema};
use crate::request::record::PrincipalJson;
use crate::request::signing::Signer;
use crate::request::tags::TagPolicy;
use crate::usage::UsageOptions;

#[derive(Debug, Clone)]
pub struct Filter {
    pub config: Config,
    pub profile: Profile,
    pub schema: TagSchema,
    pub identity: Identity,
    pub tags: TagPolicy,
    pub usage: UsageOptions,
    /// Records' principal parts, per registry key (see `PrincipalJson`).
    pub principal_json: PrincipalJson,
    /// `x-aispend-signature` (config `signing`), absent when not configured.
    pub signer: Option<Signer>,
}

impl Filter {
    pub fn new(config: Config) -> Self {
        let schema = TagSchema::new(&config.tags.extra);
        let identity = Identity::new(&config, &schema);
        let tags = TagPolicy::new(&config);
        Filter {
            profile: Profile::new(config.gateway),
            usage: UsageOptions {
                openai_stream_usage: config.usage.openai_stream_usage,
            },
            schema,
            identity,
            tags,
            signer: Signer::new(config.signing.as_ref()),
            config,
            principal_json: PrincipalJson::default(),
        }
    }

    /// Parse, validate and compile a config document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::config::ConfigError> {
        crate::config::parse(bytes).map(Filter::new)
    }

    /// Settings that are valid but almost surely not what the operator
    /// meant; the root context logs each at start and counts it in
    /// `aispend_config_warnings`.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let caps = &self.config.caps;
        if caps.enabled && caps.token.is_none() {
            out.push(
                "caps.token is not set: a collector with tokens refuses the caps poll and no budget cap is enforced; set it to the collector's read token, or caps.enabled to false",
            );
        }
        out
    }

    pub fn jwt(&self) -> Option<&JwtConfig> {
        self.config.identity.jwt.as_ref()
    }

    pub fn shipper_settings(&self) -> ShipperSettings {
        let c = &self.config.collector;
        ShipperSettings {
            flush_interval_ms: c.flush_interval_ms,
            max_batch: c.max_batch,
            max_batch_bytes: c.max_batch_bytes,
            max_buffer: c.max_buffer,
            max_backoff_ms: c.max_backoff_ms,
        }
    }
}
