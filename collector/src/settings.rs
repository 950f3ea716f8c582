//! Collector settings from flags, environment and an optional TOML file.
//! Precedence: flags > environment > file > defaults.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use crate::domain::keys::{KeyPolicy, DEFAULT_REQUIRED_TAGS};
use crate::domain::webhooks::AllowedHosts;
use crate::logging::LogFormat;
use crate::service::alerts::{
    AlertSettings, DEFAULT_ANOMALY_MIN_USD, DEFAULT_INTERVAL_MS, DEFAULT_SPIKE_MIN_USD,
    DEFAULT_WEBHOOK_TIMEOUT_MS,
};
use crate::service::ingest::DEFAULT_INGEST_MEMORY_MB;
use crate::service::webhook_client::WebhookCa;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/aispend.db";
/// A request head must arrive within this of its first byte; a body may not
/// stall longer.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// A connection with nothing in flight is closed after this.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Connections served at once; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Command line; every flag also reads its `AISPEND_*` environment variable.
#[derive(Debug, Parser, Default)]
#[command(
    name = "aispend-collector",
    version,
    about = "aispend collector: ingests, prices, stores and aggregates LLM usage records",
    long_about = "aispend collector: receives usage records from the aispend gateway filter \
(POST /v1/records), prices them, stores them and answers GET /v1/usage.\n\n\
Every setting can be given as a flag, as an AISPEND_* environment variable, or in a TOML \
file passed with --config (keys: listen, database_url, ingest_token, read_token, \
admin_token, prices, price_changes, insecure_no_auth, log_format, log_level, \
header_timeout_ms, idle_timeout_ms, max_connections, ingest_memory_mb, required_tags, \
key_max_lifetime, retention_days, webhook_allowed_hosts, webhook_timeout_ms, \
alert_interval_ms, spike_min_usd, anomaly_min_usd, coverage_min, webhook_ca_file). Precedence: flags > environment > file > defaults.\n\n\
The collector refuses to start unless the ingest, read and admin tokens are all set, so it \
is never open by accident; --insecure-no-auth lifts the check for unset tokens (local \
experiments only)."
)]
pub struct Cli {
    /// TOML settings file.
    #[arg(long, env = "AISPEND_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9090].
    #[arg(long, env = "AISPEND_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Database URL: sqlite://<path> (the directory is created), or
    /// postgres://user@host:port/db for several replicas on one database
    /// (tables are created by versioned migrations at start-up)
    /// [default: sqlite://./data/aispend.db].
    #[arg(long, env = "AISPEND_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Bearer token the gateway filter sends to POST /v1/records.
    #[arg(
        long,
        env = "AISPEND_INGEST_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub ingest_token: Option<String>,
    /// Bearer token for reads: GET /v1/usage, GET /v1/caps, GET /v1/budgets.
    #[arg(
        long,
        env = "AISPEND_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub read_token: Option<String>,
    /// Bearer token for budget changes (admin API).
    #[arg(
        long,
        env = "AISPEND_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Price file in LiteLLM's model_prices_and_context_window.json format,
    /// replacing the embedded table.
    #[arg(long, env = "AISPEND_PRICES", value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Price changes and contract discounts with effective dates (JSON, the
    /// body of POST /v1/prices), stored at start; entries already stored
    /// change nothing, an entry contradicting a stored one stops the start.
    #[arg(long, env = "AISPEND_PRICE_CHANGES", value_name = "FILE")]
    pub price_changes: Option<PathBuf>,
    /// Allow unset tokens: the matching endpoints are then open to anyone.
    /// (environment: 1/true/yes enable it, 0/false/no/empty do not).
    #[arg(
        long,
        env = "AISPEND_INSECURE_NO_AUTH",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub insecure_no_auth: bool,
    /// Log lines as human text or as one JSON object each [default: text].
    #[arg(long, env = "AISPEND_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log level (error, warn, info, debug, trace) or RUST_LOG-style
    /// directives such as `warn,aispend_collector=debug`
    /// [default: RUST_LOG, else info].
    #[arg(long, env = "AISPEND_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// A request head must arrive within this many ms of its first byte, and
    /// a request body may not stall longer; else the connection is cut
    /// [default: 10000].
    #[arg(long, env = "AISPEND_HEADER_TIMEOUT_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_timeout_ms: Option<u64>,
    /// A keep-alive connection with no request for this many ms is closed,
    /// and a request body must be in whole within it of its head
    /// [default: 60000].
    #[arg(long, env = "AISPEND_IDLE_TIMEOUT_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub idle_timeout_ms: Option<u64>,
    /// Connections served at once; further ones wait until one closes
    /// [default: 1024].
    #[arg(long, env = "AISPEND_MAX_CONNECTIONS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// MiB of POST /v1/records bodies read and parsed at once; further
    /// batches wait their turn [default: 64].
    #[arg(long, env = "AISPEND_INGEST_MEMORY_MB", value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=4095))]
    pub ingest_memory_mb: Option<u64>,
    /// Tags every virtual key must carry at issuance, and every record for its
    /// cost to count as covered (tag coverage in GET /v1/usage, the
    /// aispend_tag_coverage_ratio metric, GET /v1/reports/unattributed);
    /// comma separated; a blank value requires none
    /// [default: org,team,cost_center,environment].
    #[arg(long, env = "AISPEND_REQUIRED_TAGS", value_name = "TAGS")]
    pub required_tags: Option<String>,
    /// Longest lifetime of a virtual key per `environment` tag value, e.g.
    /// `dev=30d,staging=30d` (units d, h, m, s). Such a key created without
    /// `expires_at` expires at the longest lifetime; a later `expires_at` is
    /// refused [default: none].
    #[arg(long, env = "AISPEND_KEY_MAX_LIFETIME", value_name = "ENV=DURATION,…")]
    pub key_max_lifetime: Option<String>,
    /// Delete raw records older than this many days, in small batches in the
    /// background (the hourly and daily rollups keep them all, so totals,
    /// budgets and exports stay exact; a query needing deleted records is
    /// answered 400) [default: off: records are kept forever].
    #[arg(long, env = "AISPEND_RETENTION_DAYS", value_name = "DAYS",
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub retention_days: Option<u64>,
    /// Hosts a webhook URL may name, comma separated; `*` allows any
    /// [default: 127.0.0.1,localhost,[::1]].
    #[arg(long, env = "AISPEND_WEBHOOK_ALLOWED_HOSTS", value_name = "HOSTS")]
    pub webhook_allowed_hosts: Option<String>,
    /// A webhook receiver must answer within this many ms [default: 5000].
    #[arg(long, env = "AISPEND_WEBHOOK_TIMEOUT_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub webhook_timeout_ms: Option<u64>,
    /// Every budget is evaluated for alerts this often, besides shortly
    /// after each ingest [default: 60000].
    #[arg(long, env = "AISPEND_ALERT_INTERVAL_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub alert_interval_ms: Option<u64>,
    /// The spike rule (Critical at ≥ 20 % above the previous period) needs
    /// the previous period's spend to be at least this many USD [default: 10].
    #[arg(long, env = "AISPEND_SPIKE_MIN_USD", value_name = "USD")]
    pub spike_min_usd: Option<f64>,
    /// An anomaly alert (a day's spend of one team and model with a z-score
    /// above 3 against the previous 30 days) needs that day's spend to be
    /// at least this many USD [default: 10].
    #[arg(long, env = "AISPEND_ANOMALY_MIN_USD", value_name = "USD")]
    pub anomaly_min_usd: Option<f64>,
    /// The alert `coverage.low` fires when a month's gateway-measured cost is
    /// under this share of the provider's bill (imported exports), a
    /// fraction in (0, 1] [default: 0.95].
    #[arg(long, env = "AISPEND_COVERAGE_MIN", value_name = "SHARE")]
    pub coverage_min: Option<f64>,
    /// A PEM file of extra CA certificates trusted for https webhook
    /// targets, besides the compiled-in Mozilla roots (a private CA).
    #[arg(long, env = "AISPEND_WEBHOOK_CA_FILE", value_name = "PATH")]
    pub webhook_ca_file: Option<PathBuf>,
    /// A strict budget's lease lasts this long without renewal [default: 10000].
    #[arg(long, env = "AISPEND_LEASE_TTL_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub lease_ttl_ms: Option<u64>,
    /// The smallest lease slice: this share of a strict budget's room not
    /// yet committed to a gateway host, 0 < share <= 1 [default: 0.1].
    #[arg(long, env = "AISPEND_LEASE_FLOOR_SHARE", value_name = "SHARE")]
    pub lease_floor_share: Option<f64>,
    /// A subcommand (`keys …`) instead of serving.
    #[command(subcommand)]
    pub command: Option<crate::cli::Command>,
}

/// The TOML file: the same keys as the flags, with underscores.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub ingest_token: Option<String>,
    pub read_token: Option<String>,
    pub admin_token: Option<String>,
    pub prices: Option<PathBuf>,
    pub price_changes: Option<PathBuf>,
    pub insecure_no_auth: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub ingest_memory_mb: Option<u64>,
    pub required_tags: Option<String>,
    pub key_max_lifetime: Option<String>,
    pub retention_days: Option<u64>,
    pub webhook_allowed_hosts: Option<String>,
    pub webhook_timeout_ms: Option<u64>,
    pub alert_interval_ms: Option<u64>,
    pub spike_min_usd: Option<f64>,
    pub anomaly_min_usd: Option<f64>,
    pub coverage_min: Option<f64>,
    pub webhook_ca_file: Option<PathBuf>,
    pub lease_ttl_ms: Option<u64>,
    pub lease_floor_share: Option<f64>,
}

/// Final settings after merging every source.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: String,
    pub database_url: String,
    pub ingest_token: Option<String>,
    pub read_token: Option<String>,
    pub admin_token: Option<String>,
    pub prices: Option<PathBuf>,
    /// `AISPEND_PRICE_CHANGES`: applied at start (`service::prices`).
    pub price_changes: Option<PathBuf>,
    pub log_format: LogFormat,
    /// `None`: `RUST_LOG`, else info.
    pub log_level: Option<String>,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub ingest_memory_mb: usize,
    /// Virtual key issuance: required tags and lifetimes per environment.
    pub key_policy: KeyPolicy,
    /// `None`: raw records are kept forever.
    pub retention_days: Option<u32>,
    /// Alert evaluation and webhook delivery.
    pub alerts: AlertSettings,
    /// How leases of strict budgets are sized.
    pub lease_policy: crate::domain::leases::LeasePolicy,
}

impl Settings {
    /// Reads the config file named by the flags (if any) and merges.
    pub fn load(cli: Cli) -> Result<Self, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => FileSettings::default(),
        };
        Self::merge(cli, file)
    }

    /// Flags and environment (already merged by clap) win over the file.
    pub fn merge(cli: Cli, file: FileSettings) -> Result<Self, String> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let key_policy = KeyPolicy::parse(
            &cli.required_tags
                .or(file.required_tags)
                .unwrap_or_else(|| DEFAULT_REQUIRED_TAGS.join(",")),
            &cli.key_max_lifetime
                .or(file.key_max_lifetime)
                .unwrap_or_default(),
        )?;
        let spike_min_usd = cli
            .spike_min_usd
            .or(file.spike_min_usd)
            .unwrap_or(DEFAULT_SPIKE_MIN_USD);
        if !(spike_min_usd.is_finite() && spike_min_usd >= 0.0) {
            return Err(format!(
                "spike_min_usd must be a number >= 0, not {spike_min_usd}"
            ));
        }
        let anomaly_min_usd = cli
            .anomaly_min_usd
            .or(file.anomaly_min_usd)
            .unwrap_or(DEFAULT_ANOMALY_MIN_USD);
        if !(anomaly_min_usd.is_finite() && anomaly_min_usd >= 0.0) {
            return Err(format!(
                "anomaly_min_usd must be a number >= 0, not {anomaly_min_usd}"
            ));
        }
        let coverage_min = cli
            .coverage_min
            .or(file.coverage_min)
            .unwrap_or(crate::service::alerts::DEFAULT_COVERAGE_MIN);
        if !(coverage_min > 0.0 && coverage_min <= 1.0) {
            return Err(format!(
                "coverage_min must be a fraction in (0, 1], not {coverage_min}"
            ));
        }
        let webhook_ca = match cli.webhook_ca_file.or(file.webhook_ca_file) {
            None => None,
            Some(path) => {
                Some(WebhookCa::load(&path).map_err(|e| format!("webhook_ca_file: {e}"))?)
            }
        };
        let alerts = AlertSettings {
            interval_ms: cli
                .alert_interval_ms
                .or(file.alert_interval_ms)
                .unwrap_or(DEFAULT_INTERVAL_MS),
            spike_min_usd,
            anomaly_min_usd,
            coverage_min,
            webhook_ca,
            allowed_hosts: cli
                .webhook_allowed_hosts
                .or(file.webhook_allowed_hosts)
                .map_or_else(AllowedHosts::default, |h| AllowedHosts::parse(&h)),
            webhook_timeout_ms: cli
                .webhook_timeout_ms
                .or(file.webhook_timeout_ms)
                .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS),
        };
        let mut lease_policy = crate::domain::leases::LeasePolicy::default();
        if let Some(ms) = cli.lease_ttl_ms.or(file.lease_ttl_ms) {
            if !(1_000..=600_000).contains(&ms) {
                return Err(format!(
                    "lease_ttl_ms must be between 1000 and 600000, not {ms}"
                ));
            }
            lease_policy.ttl_ms = i64::try_from(ms).unwrap_or(600_000);
        }
        if let Some(share) = cli.lease_floor_share.or(file.lease_floor_share) {
            if !(share.is_finite() && share > 0.0 && share <= 1.0) {
                return Err(format!(
                    "lease_floor_share must be a number in (0, 1], not {share}"
                ));
            }
            lease_policy.floor_share = share;
        }
        let settings = Settings {
            alerts,
            key_policy,
            lease_policy,
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            database_url: cli
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            ingest_token: non_empty(cli.ingest_token.or(file.ingest_token)),
            read_token: non_empty(cli.read_token.or(file.read_token)),
            admin_token: non_empty(cli.admin_token.or(file.admin_token)),
            prices: cli.prices.or(file.prices),
            price_changes: cli.price_changes.or(file.price_changes),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            log_level: non_empty(cli.log_level.or(file.log_level)),
            header_timeout_ms: cli
                .header_timeout_ms
                .or(file.header_timeout_ms)
                .unwrap_or(DEFAULT_HEADER_TIMEOUT_MS),
            idle_timeout_ms: cli
                .idle_timeout_ms
                .or(file.idle_timeout_ms)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
            max_connections: cli
                .max_connections
                .or(file.max_connections)
                .map_or(DEFAULT_MAX_CONNECTIONS, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            ingest_memory_mb: cli
                .ingest_memory_mb
                .or(file.ingest_memory_mb)
                .map_or(DEFAULT_INGEST_MEMORY_MB, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            retention_days: cli
                .retention_days
                .or(file.retention_days)
                .map(|d| u32::try_from(d).unwrap_or(u32::MAX)),
        };
        if settings
            .retention_days
            .is_some_and(|d| !(1..=36_500).contains(&d))
        {
            return Err(String::from(
                "retention_days must be between 1 and 36500 (leave it unset to keep records forever)",
            ));
        }
        let insecure = cli.insecure_no_auth || file.insecure_no_auth.unwrap_or(false);
        let missing: Vec<&str> = [
            ("AISPEND_INGEST_TOKEN", &settings.ingest_token),
            ("AISPEND_READ_TOKEN", &settings.read_token),
            ("AISPEND_ADMIN_TOKEN", &settings.admin_token),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
        if settings.max_connections == 0 || settings.ingest_memory_mb == 0 {
            return Err(String::from(
                "max_connections and ingest_memory_mb must be at least 1",
            ));
        }
        if !missing.is_empty() && !insecure {
            return Err(format!(
                "refusing to start without {}: set them (flags, environment or config file), \
                 or pass --insecure-no-auth to leave those endpoints open",
                missing.join(", ")
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["aispend-collector"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("valid flags")
    }

    const TOKENS: [&str; 6] = [
        "--ingest-token",
        "i",
        "--read-token",
        "r",
        "--admin-token",
        "a",
    ];

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = Settings::merge(cli(&TOKENS), FileSettings::default()).expect("ok");
        assert_eq!(s.listen, DEFAULT_LISTEN);
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.ingest_token.as_deref(), Some("i"));
    }

    #[test]
    fn the_removed_caps_poll_setting_is_refused_not_ignored() {
        // `--caps-poll-ms` set the `poll_interval_ms` of GET /v1/caps, which
        // no gateway read (the filter polls at its own `caps.poll_interval_ms`).
        let mut args = vec!["aispend-collector", "--caps-poll-ms", "500"];
        args.extend_from_slice(&TOKENS);
        assert!(Cli::try_parse_from(args).is_err());
        assert!(toml::from_str::<FileSettings>("caps_poll_ms = 500").is_err());
    }

    #[test]
    fn flags_win_over_file() {
        let file: FileSettings = toml::from_str(
            "listen = \"0.0.0.0:1\"\ndatabase_url = \"sqlite://f.db\"\nread_token = \"file\"",
        )
        .expect("toml");
        let mut args = TOKENS.to_vec();
        args.extend(["--listen", "127.0.0.1:2"]);
        let s = Settings::merge(cli(&args), file).expect("ok");
        assert_eq!(s.listen, "127.0.0.1:2");
        assert_eq!(s.database_url, "sqlite://f.db");
        assert_eq!(s.read_token.as_deref(), Some("r"));
    }

    #[test]
    fn file_fills_what_flags_leave_unset() {
        let file: FileSettings =
            toml::from_str("ingest_token = \"fi\"\nread_token = \"fr\"\nadmin_token = \"fa\"")
                .expect("toml");
        let s = Settings::merge(cli(&[]), file).expect("ok");
        assert_eq!(s.ingest_token.as_deref(), Some("fi"));
        assert_eq!(s.admin_token.as_deref(), Some("fa"));
    }

    #[test]
    fn unset_or_empty_tokens_refuse_to_start_unless_insecure() {
        let err = Settings::merge(
            cli(&["--ingest-token", "i", "--read-token", " "]),
            FileSettings::default(),
        )
        .expect_err("must refuse");
        assert!(
            err.contains("AISPEND_READ_TOKEN") && err.contains("AISPEND_ADMIN_TOKEN"),
            "{err}"
        );
        assert!(!err.contains("AISPEND_INGEST_TOKEN"), "{err}");
        let s = Settings::merge(cli(&["--insecure-no-auth"]), FileSettings::default()).expect("ok");
        assert_eq!(s.ingest_token, None);
    }

    #[test]
    fn log_format_and_level_from_flag_or_file() {
        let s = Settings::merge(cli(&TOKENS), FileSettings::default()).expect("ok");
        assert_eq!((s.log_format, s.log_level), (LogFormat::Text, None));
        let file: FileSettings =
            toml::from_str("log_format = \"json\"\nlog_level = \"debug\"").expect("toml");
        let s = Settings::merge(cli(&TOKENS), file).expect("ok");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_level.as_deref(), Some("debug"));
        let mut args = TOKENS.to_vec();
        args.extend(["--log-format", "json", "--log-level", "warn"]);
        let s = Settings::merge(cli(&args), FileSettings::default()).expect("ok");
        assert_eq!(
            (s.log_format, s.log_level.as_deref()),
            (LogFormat::Json, Some("warn"))
        );
        let mut args = vec!["aispend-collector", "--log-format", "xml"];
        args.extend_from_slice(&TOKENS);
        assert!(Cli::try_parse_from(args).is_err());
    }

    #[test]
    fn connection_limits_from_flag_env_names_or_file() {
        let s = Settings::merge(cli(&TOKENS), FileSettings::default()).expect("ok");
        assert_eq!(s.header_timeout_ms, DEFAULT_HEADER_TIMEOUT_MS);
        assert_eq!(s.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(s.ingest_memory_mb, DEFAULT_INGEST_MEMORY_MB);
        let file: FileSettings =
            toml::from_str("max_connections = 8\ningest_memory_mb = 16").expect("toml");
        let mut args = TOKENS.to_vec();
        args.extend(["--header-timeout-ms", "500", "--idle-timeout-ms", "2000"]);
        let s = Settings::merge(cli(&args), file).expect("ok");
        assert_eq!((s.header_timeout_ms, s.idle_timeout_ms), (500, 2000));
        assert_eq!((s.max_connections, s.ingest_memory_mb), (8, 16));
        assert_eq!(s.retention_days, None, "retention is off by default");
        let s = Settings::merge(
            cli(&TOKENS),
            toml::from_str("retention_days = 90").expect("toml"),
        )
        .expect("ok");
        assert_eq!(s.retention_days, Some(90));
        let mut flags = TOKENS.to_vec();
        flags.extend(["--retention-days", "30"]);
        let s = Settings::merge(
            cli(&flags),
            toml::from_str("retention_days = 90").expect("toml"),
        )
        .expect("ok");
        assert_eq!(s.retention_days, Some(30), "a flag wins over the file");
        let zero = Settings::merge(
            cli(&TOKENS),
            toml::from_str("retention_days = 0").expect("toml"),
        );
        assert!(zero.is_err_and(|e| e.contains("retention_days")));
        let mut args = vec!["aispend-collector", "--max-connections", "0"];
        args.extend_from_slice(&TOKENS);
        assert!(Cli::try_parse_from(args).is_err());
        let file: FileSettings = toml::from_str("max_connections = 0").expect("toml");
        assert!(Settings::merge(cli(&TOKENS), file).is_err());
    }

    #[test]
    fn key_policy_from_flag_or_file_with_defaults() {
        let s = Settings::merge(cli(&TOKENS), FileSettings::default()).expect("ok");
        assert_eq!(s.key_policy, KeyPolicy::default());
        let file: FileSettings =
            toml::from_str("required_tags = \"team\"\nkey_max_lifetime = \"dev=7d\"")
                .expect("toml");
        let s = Settings::merge(cli(&TOKENS), file).expect("ok");
        assert_eq!(s.key_policy.required_tags, vec!["team"]);
        assert_eq!(
            s.key_policy.max_lifetime_ms.get("dev"),
            Some(&(7 * 86_400_000))
        );
        let mut args = TOKENS.to_vec();
        args.extend([
            "--required-tags",
            "org,project",
            "--key-max-lifetime",
            "staging=12h",
        ]);
        let file: FileSettings = toml::from_str("required_tags = \"team\"").expect("toml");
        let s = Settings::merge(cli(&args), file).expect("ok");
        assert_eq!(s.key_policy.required_tags, vec!["org", "project"]);
        assert!(s.key_policy.max_lifetime_ms.contains_key("staging"));
        let mut args = TOKENS.to_vec();
        args.extend(["--key-max-lifetime", "dev=soon"]);
        let err = Settings::merge(cli(&args), FileSettings::default()).expect_err("bad");
        assert!(err.contains("key_max_lifetime"), "{err}");
    }

    #[test]
    fn alert_settings_from_flag_or_file_with_defaults() {
        let s = Settings::merge(cli(&TOKENS), FileSettings::default()).expect("ok");
        assert_eq!(s.alerts, AlertSettings::default());
        assert!(s.alerts.allowed_hosts.allows("127.0.0.1"));
        assert!(!s.alerts.allowed_hosts.allows("hooks.example.com"));
        let file: FileSettings = toml::from_str(
            "webhook_allowed_hosts = \"hooks.example.com\"\nalert_interval_ms = 1000\nspike_min_usd = 2.5",
        )
        .expect("toml");
        let mut args = TOKENS.to_vec();
        args.extend(["--webhook-timeout-ms", "250"]);
        let s = Settings::merge(cli(&args), file).expect("ok");
        assert!(s.alerts.allowed_hosts.allows("hooks.example.com"));
        assert!(!s.alerts.allowed_hosts.allows("127.0.0.1"));
        assert_eq!(
            (
                s.alerts.interval_ms,
                s.alerts.spike_min_usd,
                s.alerts.webhook_timeout_ms
            ),
            (1000, 2.5, 250)
        );
        let file: FileSettings = toml::from_str("spike_min_usd = -1.0").expect("toml");
        assert!(Settings::merge(cli(&TOKENS), file).is_err());
        let file: FileSettings = toml::from_str("anomaly_min_usd = 25.0").expect("toml");
        let s = Settings::merge(cli(&TOKENS), file).expect("ok");
        assert_eq!(s.alerts.anomaly_min_usd, 25.0);
        let mut args = TOKENS.to_vec();
        args.push("--anomaly-min-usd=-2");
        let err = Settings::merge(cli(&args), FileSettings::default()).expect_err("negative");
        assert!(err.contains("anomaly_min_usd"), "{err}");
        assert_eq!(
            Settings::merge(cli(&TOKENS), FileSettings::default())
                .expect("ok")
                .alerts
                .coverage_min,
            0.95
        );
        let file: FileSettings = toml::from_str("coverage_min = 0.8").expect("toml");
        let s = Settings::merge(cli(&TOKENS), file).expect("ok");
        assert_eq!(s.alerts.coverage_min, 0.8);
        for bad in ["--coverage-min=0", "--coverage-min=1.5"] {
            let mut args = TOKENS.to_vec();
            args.push(bad);
            let err = Settings::merge(cli(&args), FileSettings::default()).expect_err(bad);
            assert!(err.contains("coverage_min"), "{err}");
        }
        let mut args = TOKENS.to_vec();
        args.extend(["--webhook-ca-file", "/nonexistent/ca.pem"]);
        let err = Settings::merge(cli(&args), FileSettings::default()).expect_err("no file");
        assert!(
            err.contains("webhook_ca_file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn lease_settings_from_flag_or_file_and_checked() {
        let s = Settings::merge(cli(&TOKENS), FileSettings::default()).expect("ok");
        assert_eq!(
            s.lease_policy,
            crate::domain::leases::LeasePolicy::default()
        );
        let file: FileSettings =
            toml::from_str("lease_floor_share = 0.5\nlease_ttl_ms = 5000").expect("toml");
        let s = Settings::merge(cli(&TOKENS), file).expect("ok");
        assert_eq!(
            (s.lease_policy.floor_share, s.lease_policy.ttl_ms),
            (0.5, 5000)
        );
        for bad in [
            "lease_floor_share = 0.0",
            "lease_floor_share = 1.5",
            "lease_ttl_ms = 10",
        ] {
            let file: FileSettings = toml::from_str(bad).expect("toml");
            let e = Settings::merge(cli(&TOKENS), file).expect_err(bad);
            assert!(e.contains("lease_"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<FileSettings>("listne = \"x\"").is_err());
    }
}
