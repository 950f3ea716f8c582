//! What the client asked for (request body), and the one edit the filter
//! makes to it: asking OpenAI-format chat streams for their usage chunk.

use super::{Operation, RequestInfo, Route, UsageOptions};
use crate::json::scan::{is_null, top_level_ranges, CaptureScanner};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

const KEYS: &[&str; 3] = &["model", "stream", "stream_options"];

/// Read `model`, `stream` and `stream_options` from a JSON request body.
/// Unparseable bodies give defaults and are never rewritten: the provider
/// answers the error, and the record shows it.
pub fn inspect_request(route: &Route, body: &[u8], opts: &UsageOptions) -> RequestInfo {
    match top_level_ranges(body, KEYS) {
        Some(ranges) => read(route, body, ranges, opts),
        None => RequestInfo {
            model: route.path_model.clone(),
            stream: route.path_stream,
            ..RequestInfo::default()
        },
    }
}

/// A reader for a body that passes in chunks without being held: it keeps
/// only the few values `inspect_request` reads (each at most 4 KiB).
pub fn body_scanner() -> CaptureScanner {
    CaptureScanner::new(KEYS, 4096)
}

/// What a streamed body said, from `body_scanner`'s captures. Such a body
/// has already gone upstream, so nothing is rewritten.
pub fn inspect_scanned(route: &Route, scanner: &CaptureScanner) -> RequestInfo {
    let mut doc = Vec::with_capacity(128);
    doc.push(b'{');
    for (i, key) in KEYS.iter().enumerate() {
        if let Some(value) = scanner.value(i) {
            if doc.len() > 1 {
                doc.push(b',');
            }
            doc.push(b'"');
            doc.extend_from_slice(key.as_bytes());
            doc.extend_from_slice(b"\":");
            doc.extend_from_slice(value);
        }
    }
    doc.push(b'}');
    let no_rewrite = UsageOptions {
        openai_stream_usage: false,
    };
    inspect_request(route, &doc, &no_rewrite)
}

/// `inspect_request` for bytes that may be only the start of the body: `None`
/// unless they are one complete JSON object the members walk reads (then
/// nothing but whitespace can follow, so they are the whole body).
pub fn inspect_whole_request(
    route: &Route,
    body: &[u8],
    opts: &UsageOptions,
) -> Option<RequestInfo> {
    let ranges = crate::json::fast::top_level_ranges(body, KEYS)?;
    Some(read(route, body, ranges, opts))
}

fn read(
    route: &Route,
    body: &[u8],
    [model, stream, stream_options]: [Option<std::ops::Range<usize>>; 3],
    opts: &UsageOptions,
) -> RequestInfo {
    let value = |r: &Option<std::ops::Range<usize>>| r.clone().and_then(|r| body.get(r));
    let body_model = value(&model)
        .and_then(|m| match crate::json::fast::plain_string(m) {
            Some(plain) => Some(Cow::Borrowed(plain)),
            None => serde_json::from_slice::<Cow<'_, str>>(m).ok(),
        })
        .filter(|m| !m.is_empty())
        .map(Cow::into_owned);
    let stream = route.path_stream || value(&stream) == Some(b"true");
    let client_wants_usage = value(&stream_options)
        .and_then(|o| serde_json::from_slice::<StreamOptions>(o).ok())
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let body_rewrite = if route.operation == Operation::Chat
        && stream
        && !client_wants_usage
        && opts.openai_stream_usage
    {
        with_include_usage(body, stream_options)
    } else {
        None
    };
    RequestInfo {
        // The path names the model where the provider routes by it (Azure
        // deployment, Gemini model); the body otherwise.
        model: route.path_model.clone().or(body_model),
        stream,
        client_wants_usage,
        body_rewrite,
    }
}

/// The body with `stream_options.include_usage` set to true, everything else
/// byte-identical. `existing` is the range of a top-level `stream_options`.
fn with_include_usage(body: &[u8], existing: Option<std::ops::Range<usize>>) -> Option<Vec<u8>> {
    const ADDED: &[u8] = br#"{"include_usage":true}"#;
    let mut out = Vec::with_capacity(body.len() + 48);
    match existing {
        Some(range) => {
            let old = body.get(range.clone())?;
            let replacement = if is_null(old) {
                ADDED.to_vec()
            } else {
                let mut map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(old).ok()?;
                map.insert("include_usage".into(), serde_json::Value::Bool(true));
                serde_json::to_vec(&map).ok()?
            };
            out.extend_from_slice(body.get(..range.start)?);
            out.extend_from_slice(&replacement);
            out.extend_from_slice(body.get(range.end..)?);
        }
        None => {
            let open = body.iter().position(|&b| b == b'{')?;
            let (head, tail) = body.split_at(open + 1);
            let empty = tail.iter().find(|b| !crate::json::is_ws(**b)) == Some(&b'}');
            out.extend_from_slice(head);
            out.extend_from_slice(br#""stream_options":"#);
            out.extend_from_slice(ADDED);
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(tail);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::detect;

    fn chat() -> Route {
        detect("/v1/chat/completions").unwrap()
    }

    #[test]
    fn adds_include_usage_to_chat_streams() {
        let body =
            br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let info = inspect_request(&chat(), body, &UsageOptions::default());
        assert_eq!(info.model.as_deref(), Some("gpt-4o-mini"));
        assert!(info.stream);
        assert!(!info.client_wants_usage);
        let rewritten = info.body_rewrite.unwrap();
        assert_eq!(
            rewritten,
            br#"{"stream_options":{"include_usage":true},"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
    }

    #[test]
    fn keys_spelled_with_escapes_are_read_and_rewritten() {
        let opts = UsageOptions::default();
        let body = br#"{"mod\u0065l":"m","str\u0065am":true}"#;
        let info = inspect_request(&chat(), body, &opts);
        assert_eq!(info.model.as_deref(), Some("m"));
        assert!(info.stream && !info.client_wants_usage);
        assert_eq!(
            info.body_rewrite.unwrap(),
            br#"{"stream_options":{"include_usage":true},"mod\u0065l":"m","str\u0065am":true}"#
        );
        let body = br#"{"stream":true,"stream\u005foptions":{"include_usage":false}}"#;
        let info = inspect_request(&chat(), body, &opts);
        assert_eq!(
            info.body_rewrite.unwrap(),
            br#"{"stream":true,"stream\u005foptions":{"include_usage":true}}"#
        );
        let body = br#"{"stream":true,"stream_options":{"include_\u0075sage":true}}"#;
        let info = inspect_request(&chat(), body, &opts);
        assert!(info.client_wants_usage && info.body_rewrite.is_none());
    }

    #[test]
    fn fixes_existing_stream_options() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#;
        let info = inspect_request(&chat(), body, &UsageOptions::default());
        assert_eq!(
            info.body_rewrite.unwrap(),
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
        let body = br#"{"model":"m","stream":true,"stream_options":null}"#;
        let info = inspect_request(&chat(), body, &UsageOptions::default());
        assert_eq!(
            info.body_rewrite.unwrap(),
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn leaves_other_requests_alone() {
        let opts = UsageOptions::default();
        let wants = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let info = inspect_request(&chat(), wants, &opts);
        assert!(info.client_wants_usage && info.body_rewrite.is_none());
        let plain = br#"{"model":"m","stream":false}"#;
        assert!(inspect_request(&chat(), plain, &opts)
            .body_rewrite
            .is_none());
        let off = UsageOptions {
            openai_stream_usage: false,
        };
        let stream = br#"{"model":"m","stream":true}"#;
        assert!(inspect_request(&chat(), stream, &off)
            .body_rewrite
            .is_none());
        let responses = detect("/v1/responses").unwrap();
        assert!(inspect_request(&responses, stream, &opts)
            .body_rewrite
            .is_none());
        let broken = inspect_request(&chat(), b"{\"stream\":true", &opts);
        assert_eq!(broken, RequestInfo::default());
    }

    #[test]
    fn path_names_the_model_for_azure_and_gemini() {
        let opts = UsageOptions::default();
        let azure = detect("/openai/deployments/prod-4o/chat/completions").unwrap();
        let info = inspect_request(&azure, br#"{"messages":[]}"#, &opts);
        assert_eq!(info.model.as_deref(), Some("prod-4o"));
        let gemini = detect("/v1beta/models/gemini-2.5-pro:streamGenerateContent").unwrap();
        let info = inspect_request(&gemini, br#"{"contents":[]}"#, &opts);
        assert_eq!(info.model.as_deref(), Some("gemini-2.5-pro"));
        assert!(info.stream);
        assert!(info.body_rewrite.is_none());
    }
}

#[cfg(test)]
mod streamed_tests {
    use super::*;
    use crate::usage::Provider;

    #[test]
    fn a_streamed_body_reads_like_a_whole_one() {
        let route = Route {
            provider: Provider::OpenAi,
            operation: Operation::Chat,
            path_model: None,
            path_stream: false,
        };
        let filler = "x ".repeat(50_000);
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"gpt-4o","stream":true}}"#
        );
        let mut scanner = body_scanner();
        for chunk in body.as_bytes().chunks(16_384) {
            scanner.feed(chunk);
        }
        let info = inspect_scanned(&route, &scanner);
        assert_eq!(info.model.as_deref(), Some("gpt-4o"));
        assert!(info.stream && !info.client_wants_usage);
        assert_eq!(
            info.body_rewrite, None,
            "a streamed body is never rewritten"
        );
    }
}
