//! Replays every wire sample of `tests/corpus/<provider>/<case>.expect.json`
//! through `usage`: path detection, request inspection (and rewrite), and the
//! response meter — whole, split at every byte, in random multi-splits and
//! byte by byte — asserting the same normalized usage and the same bytes
//! reaching the client every time.

use aispend_plugin::usage::{
    detect, inspect_request, ChunkEdit, ResponseMeter, Usage, UsageOptions,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Case {
    name: String,
    path: String,
    request_body: Vec<u8>,
    status: u32,
    content_type: String,
    response: Vec<u8>,
    client_view: Vec<u8>,
    truncated: bool,
    expect: Value,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

fn load_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut providers: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    providers.sort();
    for dir in providers {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("provider dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".expect.json"))
            .collect();
        files.sort();
        for file in files {
            let expect: Value =
                serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("expect json");
            let response =
                std::fs::read(dir.join(expect["response"]["body_file"].as_str().unwrap()))
                    .expect("body file");
            let client_view = match expect["client_body_file"].as_str() {
                Some(f) => std::fs::read(dir.join(f)).expect("client file"),
                None => response.clone(),
            };
            cases.push(Case {
                name: file.display().to_string(),
                path: expect["request"]["path"].as_str().unwrap().to_owned(),
                request_body: match expect["request"]["body_text"].as_str() {
                    Some(text) => text.as_bytes().to_vec(),
                    None => serde_json::to_vec(&expect["request"]["body"]).unwrap(),
                },
                status: expect["response"]["status"].as_u64().unwrap() as u32,
                content_type: expect["response"]["content_type"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                response,
                client_view,
                truncated: expect["truncated"].as_bool().unwrap_or(false),
                expect,
            });
        }
    }
    cases
}

fn expected_usage(v: &Value) -> Usage {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("usage.{k}"));
    Usage {
        input_tokens: n("input_tokens"),
        cached_input_tokens: n("cached_input_tokens"),
        cache_write_input_tokens: n("cache_write_input_tokens"),
        output_tokens: n("output_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
        model: v["model"].as_str().map(str::to_owned),
        // `Usage::error` is a &'static str; leaking a few test strings is fine.
        error: v["error"]
            .as_str()
            .map(|s| &*Box::leak(s.to_owned().into_boxed_str())),
    }
}

/// Run one case with the response cut into `pieces`; returns what the meter
/// reported and the bytes the client would see.
fn run(case: &Case, pieces: &[&[u8]], with_end: bool) -> (Usage, Vec<u8>) {
    let route = detect(&case.path).expect("metered path");
    let info = inspect_request(&route, &case.request_body, &UsageOptions::default());
    let mut meter = ResponseMeter::new(&route, &info, case.status, Some(&case.content_type));
    let mut client = Vec::new();
    let mut apply = |chunk: &[u8], edit: ChunkEdit| match edit {
        ChunkEdit::Keep => client.extend_from_slice(chunk),
        ChunkEdit::Replace(bytes) => client.extend_from_slice(&bytes),
    };
    for piece in pieces {
        let edit = meter.feed(piece);
        apply(piece, edit);
    }
    if with_end && !case.truncated {
        let edit = meter.feed_end(&[], true);
        apply(&[], edit);
    }
    (meter.finish(!case.truncated), client)
}

fn check(case: &Case, pieces: &[&[u8]], how: &str) {
    let want = expected_usage(&case.expect["usage"]);
    let (got, client) = run(case, pieces, true);
    assert_eq!(got.error, want.error, "{} ({how}): error", case.name);
    assert_eq!(
        (
            got.input_tokens,
            got.cached_input_tokens,
            got.cache_write_input_tokens,
            got.output_tokens,
            got.reasoning_tokens,
            &got.model
        ),
        (
            want.input_tokens,
            want.cached_input_tokens,
            want.cache_write_input_tokens,
            want.output_tokens,
            want.reasoning_tokens,
            &want.model
        ),
        "{} ({how}): counts",
        case.name
    );
    if !case.truncated {
        assert!(
            client == case.client_view,
            "{} ({how}): client view differs:\n{}",
            case.name,
            String::from_utf8_lossy(&client)
        );
    }
}

#[test]
fn corpus_covers_every_provider_and_form() {
    let cases = load_cases();
    for dir in ["openai", "azure", "responses", "anthropic", "gemini"] {
        let has = |ext: &str| {
            cases.iter().any(|c| {
                c.name.contains(&format!("/{dir}/"))
                    && c.expect["response"]["body_file"]
                        .as_str()
                        .unwrap()
                        .ends_with(ext)
            })
        };
        assert!(has(".json"), "{dir} has JSON samples");
        assert!(has(".sse"), "{dir} has SSE samples");
    }
    assert!(cases.len() >= 30, "{} cases", cases.len());
}

#[test]
fn request_side_matches_expectations() {
    for case in load_cases() {
        let route = detect(&case.path).unwrap_or_else(|| panic!("{}: not detected", case.name));
        let record = &case.expect["record"];
        assert_eq!(route.provider.as_str(), record["provider"], "{}", case.name);
        assert_eq!(
            route.operation.as_str(),
            record["operation"],
            "{}",
            case.name
        );
        let info = inspect_request(&route, &case.request_body, &UsageOptions::default());
        assert_eq!(
            info.model.as_deref(),
            record["requested_model"].as_str(),
            "{}",
            case.name
        );
        assert_eq!(
            info.stream,
            record["stream"].as_bool().unwrap(),
            "{}",
            case.name
        );
        match &case.expect["upstream_request_body"] {
            Value::Null => assert!(
                info.body_rewrite.is_none(),
                "{}: unexpected rewrite",
                case.name
            ),
            want => {
                let body = info
                    .body_rewrite
                    .unwrap_or_else(|| panic!("{}: no rewrite", case.name));
                let got: Value = serde_json::from_slice(&body).expect("rewritten body is JSON");
                assert_eq!(&got, want, "{}", case.name);
            }
        }
    }
}

/// The whole body in the callback that ends the stream (how a plain JSON
/// answer usually arrives): read in place, not through the chunk scanner.
fn run_in_one_callback(case: &Case) -> Usage {
    let route = detect(&case.path).expect("metered path");
    let info = inspect_request(&route, &case.request_body, &UsageOptions::default());
    let mut meter = ResponseMeter::new(&route, &info, case.status, Some(&case.content_type));
    let _ = meter.feed_end(&case.response, true);
    meter.finish(true)
}

#[test]
fn whole_bodies() {
    for case in load_cases() {
        if !case.truncated {
            let (chunked, _) = run(&case, &[&case.response], true);
            assert_eq!(
                run_in_one_callback(&case),
                chunked,
                "{}: in one callback",
                case.name
            );
        }
        check(&case, &[&case.response], "whole");
        // Without the end-of-stream feed the usage is the same.
        let (got, _) = run(&case, &[&case.response], false);
        assert_eq!(got, run(&case, &[&case.response], true).0, "{}", case.name);
    }
}

#[test]
fn every_single_split_point() {
    for case in load_cases() {
        for cut in 0..=case.response.len() {
            let (a, b) = case.response.split_at(cut);
            check(&case, &[a, b], &format!("split at {cut}"));
        }
    }
}

#[test]
fn byte_by_byte() {
    for case in load_cases() {
        let pieces: Vec<&[u8]> = case.response.chunks(1).collect();
        check(&case, &pieces, "byte by byte");
    }
}

#[test]
fn random_multi_splits() {
    // A fixed LCG: reproducible, no dependency.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % bound.max(1)
    };
    for case in load_cases() {
        for round in 0..40 {
            let mut pieces = Vec::new();
            let mut rest: &[u8] = &case.response;
            while !rest.is_empty() {
                let take = 1 + next(if round % 2 == 0 { 7 } else { 300 });
                let (a, b) = rest.split_at(take.min(rest.len()));
                pieces.push(a);
                rest = b;
            }
            check(&case, &pieces, &format!("random round {round}"));
        }
    }
}
