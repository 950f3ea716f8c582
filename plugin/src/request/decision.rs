//! What the filter decided about a request, as a value the glue applies, and
//! the OpenAI-style error bodies of CONTRACTS §5 (so SDKs raise their usual errors).

use crate::request::identity::{Principal, Rejection, TagSchema};
use crate::request::tags::{ClientTags, Conflict};

/// The outcome of the request-headers phase.
#[derive(Debug)]
pub enum Decision {
    Continue(Box<Admitted>),
    Deny(Denial),
}

/// An admitted request: who it is and what the client labelled it with.
#[derive(Debug)]
pub struct Admitted {
    pub principal: Principal,
    pub client: ClientTags,
}

/// A local answer instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u32,
    /// `error.type` and `error.code` of the body.
    pub kind: &'static str,
    pub message: String,
    /// Extra response headers (e.g. `retry-after`).
    pub headers: Vec<(&'static str, String)>,
}

impl Denial {
    pub fn unauthorized(why: Rejection, schema: &TagSchema) -> Self {
        let message = match why {
            Rejection::NoCredential => {
                "No API key provided. Send your aispend virtual key as your provider SDK's API key."
                    .to_string()
            }
            Rejection::NotBearer => {
                "The Authorization header must be `Bearer <your aispend virtual key>`.".to_string()
            }
            Rejection::UnknownKey => "Incorrect API key provided.".to_string(),
            Rejection::RevokedKey => "This API key has been revoked.".to_string(),
            Rejection::ExpiredKey => "This API key has expired.".to_string(),
            Rejection::MissingTag(i) => format!(
                "This identity has no `{}` tag, which this gateway requires.",
                schema.name(i)
            ),
        };
        Denial {
            status: 401,
            kind: "invalid_api_key",
            message,
            headers: Vec::new(),
        }
    }

    pub fn tag_conflict(conflict: &Conflict) -> Self {
        Denial {
            status: 400,
            kind: "tag_conflict",
            message: format!(
                "Header `{}` is set by the gateway from your identity; do not send it.",
                conflict.header
            ),
            headers: Vec::new(),
        }
    }

    /// 400: a header the gateway must keep from the provider came twice, and
    /// this host (Kong) can only overwrite the first copy.
    pub fn duplicate_header(name: &str) -> Self {
        Denial {
            status: 400,
            kind: "duplicate_header",
            message: format!(
                "Header `{name}` was sent more than once; this gateway can only replace one copy before the request goes to the provider. Send it once."
            ),
            headers: Vec::new(),
        }
    }

    /// 404: the path is no LLM call this gateway knows (`unknown_paths: reject`).
    pub fn unknown_path() -> Self {
        Denial {
            status: 404,
            kind: "unknown_path",
            message: "This path is not an LLM API call this gateway meters.".to_string(),
            headers: Vec::new(),
        }
    }

    /// 413: the request body is over `usage.max_request_body_bytes`.
    pub fn request_too_large(limit: usize) -> Self {
        Denial {
            status: 413,
            kind: "request_too_large",
            message: format!("The request body is over this gateway's limit of {limit} bytes."),
            headers: Vec::new(),
        }
    }

    /// 429: the key is over its requests or tokens per minute; `headers`
    /// carry `retry-after` and the `x-ratelimit-*` state.
    pub fn rate_limited(headers: Vec<(&'static str, String)>) -> Self {
        Denial {
            status: 429,
            kind: "rate_limit_exceeded",
            message: "Rate limit reached for this API key. Retry after the time in the retry-after header.".to_string(),
            headers,
        }
    }

    /// 402: a budget covering this caller is at its hard cap (not retryable).
    pub fn budget_exceeded(budget_id: &str) -> Self {
        Denial {
            status: 402,
            kind: "budget_exceeded",
            message: format!(
                "Budget `{budget_id}` has reached its hard cap; calls are refused until it is raised or its period ends."
            ),
            headers: Vec::new(),
        }
    }

    /// 402: a strict budget has not room for even `min` output tokens.
    pub fn budget_no_room(budget_id: &str, min: u64) -> Self {
        Denial {
            status: 402,
            kind: "budget_exceeded",
            message: format!(
                "Budget `{budget_id}` has too little left for this call (not even {min} output tokens fit); calls are refused until it is raised or its period ends."
            ),
            headers: Vec::new(),
        }
    }

    /// 402: a strict budget covers this caller but this gateway holds no
    /// lease of it (collector unreachable) and fails closed.
    pub fn budget_no_lease(budget_id: &str) -> Self {
        Denial {
            status: 402,
            kind: "budget_exceeded",
            message: format!(
                "Budget `{budget_id}` is strict and this gateway holds no current lease of it; calls are refused until the collector renews it."
            ),
            headers: Vec::new(),
        }
    }

    /// 402: a strict budget covers this caller and the model has no price.
    pub fn unpriced_model(model: &str) -> Self {
        Denial {
            status: 402,
            kind: "budget_exceeded",
            message: format!(
                "Model `{model}` has no price, so a strict budget cannot bound its cost; the call is refused."
            ),
            headers: Vec::new(),
        }
    }

    /// 503: a strict call's model price is being fetched (retryable).
    pub fn price_pending(model: &str) -> Self {
        Denial {
            status: 503,
            kind: "caps_unavailable",
            message: format!(
                "The price of model `{model}` is being fetched for a strict budget; try again shortly."
            ),
            headers: vec![("retry-after", "2".to_string())],
        }
    }

    /// 503: budget caps could not be fetched for too long (fail_closed).
    pub fn caps_unavailable() -> Self {
        Denial {
            status: 503,
            kind: "caps_unavailable",
            message: "Budget caps are unavailable and this gateway fails closed; try again later."
                .to_string(),
            headers: vec![("retry-after", "1".to_string())],
        }
    }

    /// `{"error":{"message":…,"type":…,"code":…}}`
    pub fn body(&self) -> String {
        let mut out = String::with_capacity(self.message.len() + 2 * self.kind.len() + 48);
        out.push_str(r#"{"error":{"message":"#);
        push_json_string(&mut out, &self.message);
        out.push_str(r#","type":"#);
        push_json_string(&mut out, self.kind);
        out.push_str(r#","code":"#);
        push_json_string(&mut out, self.kind);
        out.push_str("}}");
        out
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_style_json() {
        let schema = TagSchema::new(&[]);
        let d = Denial::unauthorized(Rejection::RevokedKey, &schema);
        assert_eq!(d.status, 401);
        let v: serde_json::Value = serde_json::from_str(&d.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_api_key");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["message"], "This API key has been revoked.");
    }

    #[test]
    fn body_escapes_header_names() {
        let d = Denial::tag_conflict(&Conflict {
            header: "x-aispend-team\"\n".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&d.body()).unwrap();
        assert_eq!(d.status, 400);
        assert_eq!(v["error"]["type"], "tag_conflict");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-aispend-team\"\n"));
    }

    #[test]
    fn a_bare_key_in_authorization_is_named() {
        let d = Denial::unauthorized(Rejection::NotBearer, &TagSchema::new(&[]));
        assert_eq!(d.status, 401);
        assert!(d.message.contains("Bearer"), "{}", d.message);
    }

    #[test]
    fn missing_tag_names_the_tag() {
        let schema = TagSchema::new(&[]);
        let d = Denial::unauthorized(Rejection::MissingTag(1), &schema);
        assert!(d.message.contains("`team`"), "{}", d.message);
    }
}
