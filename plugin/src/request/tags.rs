//! Immutable cost tags: what the client may not send (`x-aispend-*`), what it
//! may send (allow-listed labels), and the headers the filter injects toward
//! the upstream in their place.

use crate::config::{self, Config, OnConflict};
use crate::request::identity::{Principal, TagSchema};
use crate::usage::Provider;

pub const PREFIX: &str = "x-aispend-";
pub const KEY_ID_HEADER: &str = "x-aispend-key-id";
pub const REQUEST_ID_HEADER: &str = "x-aispend-request-id";
/// Besides the tags, what reject mode refuses: who called (the key id) and
/// the proof of it (`request::signing`). A client echoing a request id back
/// is only stripped.
const IDENTITY_HEADERS: [&str; 2] = [KEY_ID_HEADER, "x-aispend-signature"];

/// What the client sent under the `x-aispend-` prefix.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientTags {
    /// Header names to remove before the request goes upstream.
    pub strip: Vec<String>,
    /// Allowed labels: (label name, value), in allow-list order.
    pub labels: Vec<(String, String)>,
}

/// A client-sent canonical tag header in reject mode (400 `tag_conflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub header: String,
}

/// The tag rules of the config, compiled once.
#[derive(Debug, Clone)]
pub struct TagPolicy {
    on_conflict: OnConflict,
    /// (allowed header, label name)
    labels: Vec<(String, String)>,
    /// Provider credentials by `Provider` (openai, azure, anthropic, gemini).
    credentials: [Option<(String, String)>; 4],
    /// The configured ids of those credentials (`credential.id`).
    credential_ids: [Option<String>; 4],
}

/// A provider's slot in the credential arrays; no credential is guessed
/// for a path nobody recognised.
fn slot(provider: Provider) -> Option<usize> {
    match provider {
        Provider::OpenAi => Some(0),
        Provider::Azure => Some(1),
        Provider::Anthropic => Some(2),
        Provider::Gemini => Some(3),
        Provider::Unknown => None,
    }
}

impl TagPolicy {
    pub fn new(config: &Config) -> Self {
        let labels = config
            .tags
            .labels
            .allow
            .iter()
            .map(|h| {
                let name = h.strip_prefix("x-aispend-label-").unwrap_or(h);
                (h.clone(), name.to_string())
            })
            .collect();
        let cred = |p: &Option<config::ProviderConfig>| {
            p.as_ref()
                .and_then(|p| p.credential.as_ref())
                .map(|c| (c.header.clone(), c.value.clone()))
        };
        let id = |p: &Option<config::ProviderConfig>| {
            p.as_ref()
                .and_then(|p| p.credential.as_ref())
                .and_then(|c| c.id.clone())
        };
        let p = &config.providers;
        TagPolicy {
            on_conflict: config.tags.on_conflict,
            labels,
            credentials: [
                cred(&p.openai),
                cred(&p.azure),
                cred(&p.anthropic),
                cred(&p.gemini),
            ],
            credential_ids: [id(&p.openai), id(&p.azure), id(&p.anthropic), id(&p.gemini)],
        }
    }

    /// Sort the client's `x-aispend-*` headers into "strip" and "label", or
    /// refuse the request when reject mode meets a canonical tag header.
    pub fn inspect_client(
        &self,
        schema: &TagSchema,
        headers: &[(&str, &str)],
    ) -> Result<ClientTags, Conflict> {
        let mut out = ClientTags::default();
        for &(name, value) in headers {
            if !starts_with_ignore_case(name, PREFIX) {
                continue;
            }
            if let Some((_, label)) = self.labels.iter().find(|(h, _)| same_header_name(h, name)) {
                // An allowed label passes upstream untouched when its value is
                // well-formed; a malformed one is dropped, never recorded.
                if config::valid_tag_value(value) && !out.labels.iter().any(|(l, _)| l == label) {
                    out.labels.push((label.clone(), value.to_string()));
                    continue;
                }
            } else if self.on_conflict == OnConflict::Reject
                && (schema.headers().iter().any(|h| same_header_name(h, name))
                    || IDENTITY_HEADERS.iter().any(|h| same_header_name(h, name)))
            {
                return Err(Conflict {
                    header: name.to_string(),
                });
            }
            out.strip.push(name.to_string());
        }
        Ok(out)
    }

    /// The provider credential to set upstream, if configured.
    pub fn credential(&self, provider: Provider) -> Option<(&str, &str)> {
        self.credentials
            .get(slot(provider)?)
            .and_then(|c| c.as_ref())
            .map(|(h, v)| (h.as_str(), v.as_str()))
    }

    /// The id of the provider credential the gateway sets, if configured.
    pub fn credential_id(&self, provider: Provider) -> Option<&str> {
        self.credential_ids
            .get(slot(provider)?)
            .and_then(|c| c.as_deref())
    }
}

/// The headers injected toward the upstream: one per tag, the key id and the
/// request id. Borrowed, so injecting allocates nothing.
pub fn injected<'a>(
    schema: &'a TagSchema,
    principal: &'a Principal,
    request_id: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    principal
        .tags
        .iter()
        .map(move |(i, v)| (schema.header(*i), v.as_str()))
        .chain([
            (KEY_ID_HEADER, &*principal.key_id),
            (REQUEST_ID_HEADER, request_id),
        ])
}

/// `s` starts with `prefix` in any letter case, an `_` or a `.` standing for
/// a `-`: frameworks behind the gateway read `x_aispend_team` as
/// `X-Aispend-Team` (CGI, WSGI, Rack, PHP and nginx's `$http_` variables all
/// turn `-` into `_`), and PHP turns a `.` in a variable name into `_` too,
/// so such a header is a spoofed tag as well.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    // Most header names differ at the first byte: decide those at once.
    let first = |x: &str| x.as_bytes().first().map(u8::to_ascii_lowercase);
    first(s) == first(prefix)
        && s.get(..prefix.len())
            .is_some_and(|p| same_header_name(p, prefix))
}

/// Header names equal in any letter case, `_`, `.` and `-` alike.
pub fn same_header_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let fold = |c: u8| {
                if c == b'_' || c == b'.' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            fold(x) == fold(y)
        })
}

#[cfg(test)]
mod tests;
