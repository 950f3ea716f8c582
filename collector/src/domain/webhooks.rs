//! Webhooks (CONTRACTS §10): validation of `POST /v1/webhooks`, the
//! signature, the retry backoff and the deliveries of the outbox. Plain logic.

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::access::hex;
use super::time::format_rfc3339_ms;

/// The events a webhook may subscribe to.
pub const EVENTS: &[&str] = &["spend.alert"];
const MAX_URL_LEN: usize = 2048;
const MIN_SECRET_LEN: usize = 16;
const MAX_SECRET_LEN: usize = 256;
/// Attempts before a delivery is given up (state `failed`); with the
/// backoff below that is about 36 hours of retrying.
pub const MAX_ATTEMPTS: i64 = 20;

/// A registered webhook. `secret` signs each delivery, so it is kept as
/// given (an HMAC needs the key itself) and never answered after creation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    #[serde(skip)]
    pub secret: String,
    pub events: Vec<String>,
    /// Body format: `json` (the alert) or `slack` (`{"text": …}` plus the alert).
    pub format: String,
    #[serde(serialize_with = "ser_ms")]
    pub created_at: i64,
    pub created_by: String,
}

fn ser_ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339_ms(*ms))
}

/// Which target hosts a webhook may name (a setting): loopback only by
/// default, for `make run`; `*` allows any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(pub Vec<String>);

impl Default for AllowedHosts {
    fn default() -> Self {
        Self(vec!["127.0.0.1".into(), "localhost".into(), "[::1]".into()])
    }
}

impl AllowedHosts {
    /// Parses a comma-separated list (`*` allows every host).
    pub fn parse(text: &str) -> Self {
        Self(
            text.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        )
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|h| h == "*" || *h == host)
    }
}

/// The parts of a validated `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Splits a webhook URL; only `http` and `https`, no user info.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!(
            "url {url:?}: only http:// and https:// URLs are allowed"
        ));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') || authority.is_empty() {
        return Err(format!(
            "url {url:?}: expected http(s)://host[:port]/path without user info"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("url {url:?}: port {p:?} is not a number 1-65535"))?,
        ),
        _ => (authority, if https { 443 } else { 80 }),
    };
    if host.is_empty() || port == 0 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("url {url:?}: expected http(s)://host[:port]/path"));
    }
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    Ok(Target {
        https,
        host: host.to_owned(),
        port,
        path,
    })
}

/// What `POST /v1/webhooks` may carry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub format: String,
}

pub fn validate_webhook(body: &Value, allowed: &AllowedHosts) -> Result<NewWebhook, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| String::from("webhook must be a JSON object"))?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "url" | "secret" | "events" | "format"))
    {
        return Err(format!(
            "unknown field {unknown:?}: a webhook has url, secret, events, format"
        ));
    }
    let url = str_field(obj, "url")?;
    if url.len() > MAX_URL_LEN {
        return Err(format!("url is longer than {MAX_URL_LEN} characters"));
    }
    let target = parse_url(url)?;
    if !allowed.allows(&target.host) {
        return Err(format!(
            "url: host {:?} is not an allowed webhook target (setting AISPEND_WEBHOOK_ALLOWED_HOSTS, now {:?})",
            target.host,
            allowed.0.join(",")
        ));
    }
    let secret = str_field(obj, "secret")?;
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
        return Err(format!(
            "secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters"
        ));
    }
    let events = match obj.get("events") {
        None => vec![String::from("spend.alert")],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|e| match e.as_str() {
                Some(name) if EVENTS.contains(&name) => Ok(name.to_owned()),
                _ => Err(format!("events: {e} is not one of {EVENTS:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(format!("events must be a non-empty array of {EVENTS:?}")),
    };
    let format = match obj.get("format") {
        None => String::from("json"),
        Some(Value::String(f)) if f == "json" || f == "slack" => f.clone(),
        Some(other) => return Err(format!("format must be \"json\" or \"slack\", not {other}")),
    };
    Ok(NewWebhook {
        url: url.to_owned(),
        secret: secret.to_owned(),
        events,
        format,
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{name} must be a non-empty string")),
        None => Err(format!("{name} is required")),
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `x-aispend-signature`: `v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let message = format!("{timestamp}.{body}");
    format!(
        "v1={}",
        hex(&hmac_sha256(secret.as_bytes(), message.as_bytes()))
    )
}

/// Delay before retry `attempts` (1 = after the first failure): 5 s
/// doubling, at most 1 h.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    (5_000_i64.saturating_mul(1_i64 << exp.min(10))).min(3_600_000)
}

/// The body sent to one webhook: the event as is, or for `slack` a `text`
/// line added (Slack incoming webhooks read `text`, ignore the rest).
pub fn body_for(format: &str, event: &Value) -> String {
    if format != "slack" {
        return event.to_string();
    }
    let f = |k: &str| event.get(k).cloned().unwrap_or(Value::Null);
    let scope = |k: &str| {
        event
            .get("scope")
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let text = if f("kind").as_str() == Some("anomaly") {
        format!(
            "aispend anomaly: team {} spent ${} on model {} on the day starting {} \
             (z-score {}, 30-day mean ${}), {}",
            scope("team"),
            f("spend_usd"),
            scope("model"),
            f("period_start").as_str().unwrap_or("?"),
            f("z_score"),
            f("amount_usd"),
            f("event").as_str().unwrap_or("?"),
        )
    } else {
        format!(
            "aispend {} alert ({}): budget {} at ${} of ${} (forecast ${}), {}",
            f("level").as_str().unwrap_or("?"),
            f("kind").as_str().unwrap_or("?"),
            f("budget_id").as_str().unwrap_or("?"),
            f("spend_usd"),
            f("amount_usd"),
            f("forecast_usd"),
            f("event").as_str().unwrap_or("?"),
        )
    };
    let mut out = event.as_object().cloned().unwrap_or_default();
    out.insert("text".into(), json!(text));
    Value::Object(out).to_string()
}

/// One outbox row: one event for one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub webhook_id: String,
    /// The event (JSON text) as enqueued; formatted per webhook when sent.
    pub event: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The outcome of one attempt, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub delivered: bool,
}

impl Delivery {
    /// The API view (`GET /v1/webhooks/{id}/deliveries`).
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "event_id": self.event_id,
            "webhook_id": self.webhook_id,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": format_rfc3339_ms(self.next_attempt_at),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": format_rfc3339_ms(self.created_at),
            "delivered_at": self.delivered_at.map(format_rfc3339_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (RFC 4231 case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(signature("s", 1, "{}").starts_with("v1="));
        assert_ne!(signature("s", 1, "{}"), signature("s", 2, "{}"));
    }

    #[test]
    fn urls_are_http_or_https_and_hosts_are_allowed() {
        let loopback = AllowedHosts::default();
        let ok = |url: &str| {
            validate_webhook(
                &json!({"url": url, "secret": "0123456789abcdef"}),
                &loopback,
            )
        };
        assert_eq!(
            ok("http://127.0.0.1:8080/hook").map(|w| w.format),
            Ok("json".into())
        );
        let t = parse_url("http://127.0.0.1:8080/hook?x=1").expect("url");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/hook?x=1")
        );
        assert_eq!(parse_url("https://localhost").map(|t| t.port), Ok(443));
        for bad in [
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "http://u:p@127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:x/",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ok("https://localhost:8443/x").map(|w| w.url),
            Ok("https://localhost:8443/x".into())
        );
        let err = ok("http://hooks.example.com/x").expect_err("not allowed");
        assert!(err.contains("AISPEND_WEBHOOK_ALLOWED_HOSTS"), "{err}");
        assert!(AllowedHosts::parse("hooks.example.com, *").allows("anything"));
        assert!(AllowedHosts::parse("Hooks.Example.com").allows("hooks.example.com"));
        let short = validate_webhook(
            &json!({"url": "http://localhost/", "secret": "short"}),
            &loopback,
        );
        assert!(short.expect_err("short").contains("secret"));
        let events = validate_webhook(
            &json!({"url": "http://localhost/", "secret": "0123456789abcdef", "events": ["nope"]}),
            &loopback,
        );
        assert!(events.expect_err("events").contains("events"));
        let unknown = validate_webhook(
            &json!({"url": "http://localhost/", "secret": "0123456789abcdef", "x": 1}),
            &loopback,
        );
        assert!(unknown.expect_err("unknown").contains("\"x\""));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(5), 80_000);
        assert_eq!(backoff_ms(30), 3_600_000);
    }

    #[test]
    fn slack_body_adds_text() {
        let event = json!({"event": "spend.alert", "level": "warning", "budget_id": "b1"});
        let body: Value = serde_json::from_str(&body_for("slack", &event)).expect("json");
        assert!(body["text"].as_str().expect("text").contains("warning"));
        assert_eq!(body["budget_id"], "b1");
        assert_eq!(body_for("json", &event), event.to_string());
        let anomaly = json!({"event": "spend.alert", "kind": "anomaly", "level": "critical",
            "scope": {"team": "search", "model": "gpt-4o"}, "spend_usd": 40.0,
            "amount_usd": 10.0, "z_score": 30.0, "period_start": "2026-11-20T00:00:00Z"});
        let body: Value = serde_json::from_str(&body_for("slack", &anomaly)).expect("json");
        let text = body["text"].as_str().expect("text");
        assert!(
            text.contains("team search") && text.contains("gpt-4o") && text.contains("z-score 30"),
            "{text}"
        );
    }
}
