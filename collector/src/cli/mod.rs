//! `aispend-collector keys …`: a small command for platform engineers that
//! calls the key API of a running collector (CONTRACTS §8) and prints its
//! JSON answer. It holds no rule of its own: validation, the policy and the
//! secrets all stay in the collector.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

mod client;

pub const DEFAULT_URL: &str = "http://127.0.0.1:9090";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage virtual keys over the collector's API (prints JSON).
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The collector's base URL, http only [default: http://127.0.0.1:9090].
    #[arg(long, env = "AISPEND_COLLECTOR_URL", global = true)]
    pub url: Option<String>,
    /// Admin bearer token.
    #[arg(
        long,
        env = "AISPEND_ADMIN_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Issue a key: POST /v1/keys. The plain key is printed once.
    Create {
        /// A tag, `name=value`; repeat for each tag.
        #[arg(long = "tag", value_name = "NAME=VALUE", required = true)]
        tags: Vec<String>,
        /// The key id (default: generated).
        #[arg(long)]
        key_id: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// RFC 3339 time the key stops working.
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
    },
    /// Every key: GET /v1/keys.
    List,
    /// One key: GET /v1/keys/{key_id}.
    Show { key_id: String },
    /// A new secret: POST /v1/keys/{key_id}/rotate; the old one works for
    /// the grace period.
    Rotate {
        key_id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
    /// Revoke one key: DELETE /v1/keys/{key_id}.
    Revoke { key_id: String },
    /// Revoke every key with all the given tags: POST /v1/keys/revoke.
    RevokeByTag {
        #[arg(long = "tag", value_name = "NAME=VALUE", required = true)]
        tags: Vec<String>,
    },
}

/// `name=value` pairs as a JSON object; the error names the bad one.
fn tag_object(pairs: &[String]) -> Result<Value, String> {
    let mut map = Map::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--tag {pair:?}: expected NAME=VALUE"))?;
        map.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Ok(Value::Object(map))
}

/// The request an action makes: (method, path, body).
fn request(action: &KeysAction) -> Result<(&'static str, String, Option<Value>), String> {
    let path = |id: &str, tail: &str| format!("/v1/keys/{}{tail}", encode_segment(id));
    Ok(match action {
        KeysAction::Create {
            tags,
            key_id,
            rpm,
            tpm,
            expires_at,
        } => {
            let mut body = json!({"tags": tag_object(tags)?});
            if let Some(id) = key_id {
                body["key_id"] = json!(id);
            }
            if rpm.is_some() || tpm.is_some() {
                let mut limits = Map::new();
                if let Some(n) = rpm {
                    limits.insert("requests_per_minute".into(), json!(n));
                }
                if let Some(n) = tpm {
                    limits.insert("tokens_per_minute".into(), json!(n));
                }
                body["limits"] = Value::Object(limits);
            }
            if let Some(at) = expires_at {
                body["expires_at"] = json!(at);
            }
            ("POST", "/v1/keys".to_owned(), Some(body))
        }
        KeysAction::List => ("GET", "/v1/keys".to_owned(), None),
        KeysAction::Show { key_id } => ("GET", path(key_id, ""), None),
        KeysAction::Rotate {
            key_id,
            grace_seconds,
        } => (
            "POST",
            path(key_id, "/rotate"),
            Some(json!({"grace_seconds": grace_seconds})),
        ),
        KeysAction::Revoke { key_id } => ("DELETE", path(key_id, ""), None),
        KeysAction::RevokeByTag { tags } => (
            "POST",
            "/v1/keys/revoke".to_owned(),
            Some(json!({"tags": tag_object(tags)?})),
        ),
    })
}

/// Percent-encodes what a key id may hold that a path segment may not.
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Runs a subcommand: prints the answer's JSON on stdout; exits 1 with the
/// error on stderr when the call fails or the collector refuses it.
pub async fn run(command: Command) -> ExitCode {
    let Command::Keys(args) = command;
    match call(&args).await {
        Ok((status, body)) => {
            let text = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            if (200..300).contains(&status) {
                println!("{text}");
                ExitCode::SUCCESS
            } else {
                eprintln!("aispend-collector keys: the collector answered {status}");
                println!("{text}");
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("aispend-collector keys: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn call(args: &KeysArgs) -> Result<(u16, Vec<u8>), String> {
    let token = args
        .token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or("no admin token: pass --token or set AISPEND_ADMIN_TOKEN")?;
    let (method, path, body) = request(&args.action)?;
    let url = args
        .url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or(DEFAULT_URL);
    let base = client::BaseUrl::parse(url)?;
    client::send(&base, method, &path, token, body.map(|b| b.to_string())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_map_to_the_api() {
        let create = KeysAction::Create {
            tags: vec!["team=search".into(), "org=acme".into()],
            key_id: Some("k1".into()),
            rpm: Some(5),
            tpm: None,
            expires_at: None,
        };
        let (method, path, body) = request(&create).expect("request");
        assert_eq!((method, path.as_str()), ("POST", "/v1/keys"));
        assert_eq!(
            body,
            Some(
                json!({"tags": {"team": "search", "org": "acme"}, "key_id": "k1",
                "limits": {"requests_per_minute": 5}})
            )
        );
        let rotate = KeysAction::Rotate {
            key_id: "a/b".into(),
            grace_seconds: 60,
        };
        let (method, path, body) = request(&rotate).expect("request");
        assert_eq!((method, path.as_str()), ("POST", "/v1/keys/a%2Fb/rotate"));
        assert_eq!(body, Some(json!({"grace_seconds": 60})));
        let bad = KeysAction::RevokeByTag {
            tags: vec!["team".into()],
        };
        assert!(request(&bad).expect_err("no =").contains("NAME=VALUE"));
    }
}
