//! Cost of usage capture on the response path (natively):
//! - SSE framing + usage extraction per event and per MB (OpenAI chat,
//!   Anthropic, Gemini streams fed one network-sized chunk at a time),
//! - JSON usage extraction per MB (an embeddings body full of vectors, a
//!   chat body with a long completion).
//!
//! Run: `CARGO_TARGET_DIR=… cargo bench -p aispend-plugin --bench usage`

use aispend_plugin::usage::{detect, inspect_request, ResponseMeter, UsageOptions};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const EVENTS: usize = 1000;

fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-C5x1Jd9qv3sV7fXh2KpQeLw0aZ8rT\",\"object\":\"chat.completion.chunk\",\"created\":1755177000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null,\"obfuscation\":\"x9Qk\"}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"chatcmpl-C5x1Jd9qv3sV7fXh2KpQeLw0aZ8rT\",\"object\":\"chat.completion.chunk\",\"created\":1755177000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":1000,\"total_tokens\":1012,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n");
    for i in 0..EVENTS {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{i}\"}}}}\n\n"));
    }
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1000}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn gemini_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        s.push_str(&format!("data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \" word{i}\"}}],\"role\": \"model\"}},\"index\": 0}}],\"usageMetadata\": {{\"promptTokenCount\": 8,\"totalTokenCount\": 8,\"promptTokensDetails\": [{{\"modality\": \"TEXT\",\"tokenCount\": 8}}]}},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"mOyhaJmBNJDo_uMP5NvUsQg\"}}\r\n\r\n"));
    }
    s.into_bytes()
}

/// Cut a stream into pieces of about `size` bytes (not aligned to events).
fn pieces(stream: &[u8], size: usize) -> Vec<&[u8]> {
    stream.chunks(size).collect()
}

fn run(path: &str, req: &[u8], ct: &str, chunks: &[&[u8]]) -> u64 {
    let route = detect(path).unwrap_or_else(|| panic!("{path}"));
    let info = inspect_request(&route, req, &UsageOptions::default());
    let mut meter = ResponseMeter::new(&route, &info, 200, Some(ct));
    for c in chunks {
        black_box(meter.feed(c));
    }
    meter.finish(true).output_tokens
}

fn sse(c: &mut Criterion) {
    let streams = [
        ("openai_chat", "/v1/chat/completions", openai_stream()),
        ("anthropic", "/v1/messages", anthropic_stream()),
        (
            "gemini",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            gemini_stream(),
        ),
    ];
    let req = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let mut per_event = c.benchmark_group("sse_per_event");
    for (name, path, stream) in &streams {
        // One event per read (how providers flush) and 1 KiB reads that split events.
        let by_event: Vec<&[u8]> = split_events(stream);
        per_event.throughput(Throughput::Elements(by_event.len() as u64));
        per_event.bench_with_input(
            BenchmarkId::new(*name, "event_chunks"),
            &by_event,
            |b, ch| b.iter(|| run(path, req, "text/event-stream", ch)),
        );
        let kb = pieces(stream, 1024);
        per_event.bench_with_input(BenchmarkId::new(*name, "1k_chunks"), &kb, |b, ch| {
            b.iter(|| run(path, req, "text/event-stream", ch))
        });
    }
    per_event.finish();
    let mut per_mb = c.benchmark_group("sse_bytes");
    for (name, path, stream) in &streams {
        per_mb.throughput(Throughput::Bytes(stream.len() as u64));
        let kb = pieces(stream, 16 * 1024);
        per_mb.bench_with_input(BenchmarkId::new(*name, "16k_chunks"), &kb, |b, ch| {
            b.iter(|| run(path, req, "text/event-stream", ch))
        });
    }
    per_mb.finish();
}

fn split_events(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < stream.len() {
        let sep = if stream[i..].starts_with(b"\r\n\r\n") {
            4
        } else if stream[i..].starts_with(b"\n\n") {
            2
        } else {
            0
        };
        if sep > 0 {
            out.push(&stream[start..i + sep]);
            start = i + sep;
            i += sep;
        } else {
            i += 1;
        }
    }
    if start < stream.len() {
        out.push(&stream[start..]);
    }
    out
}

fn embeddings_body(target: usize) -> Vec<u8> {
    let mut s = String::from("{\n  \"object\": \"list\",\n  \"data\": [\n");
    let mut i = 0;
    while s.len() < target {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!("    {{\n      \"object\": \"embedding\",\n      \"index\": {i},\n      \"embedding\": [\n"));
        for d in 0..1536 {
            let v = ((d * 7919 + i * 104729) % 20000) as f64 / 1_000_000.0 - 0.01;
            s.push_str(&format!(
                "        {v:.9}{}\n",
                if d < 1535 { "," } else { "" }
            ));
        }
        s.push_str("      ]\n    }");
        i += 1;
    }
    s.push_str("\n  ],\n  \"model\": \"text-embedding-3-small\",\n  \"usage\": {\n    \"prompt_tokens\": 8,\n    \"total_tokens\": 8\n  }\n}\n");
    s.into_bytes()
}

fn chat_body(target: usize) -> Vec<u8> {
    let text = "All work and no play makes Jack a dull boy. \\\"Quoted\\\" and \\n escaped. "
        .repeat(target / 70);
    format!("{{\n  \"id\": \"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\n  \"object\": \"chat.completion\",\n  \"created\": 1741569952,\n  \"model\": \"gpt-4o-mini-2024-07-18\",\n  \"choices\": [\n    {{\n      \"index\": 0,\n      \"message\": {{\n        \"role\": \"assistant\",\n        \"content\": \"{text}\",\n        \"refusal\": null,\n        \"annotations\": []\n      }},\n      \"logprobs\": null,\n      \"finish_reason\": \"stop\"\n    }}\n  ],\n  \"usage\": {{\n    \"prompt_tokens\": 19,\n    \"completion_tokens\": 10,\n    \"total_tokens\": 29\n  }}\n}}\n").into_bytes()
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_bytes");
    let req = br#"{"model":"m"}"#;
    for (name, path, body) in [
        ("embeddings", "/v1/embeddings", embeddings_body(1 << 20)),
        ("chat_long_text", "/v1/chat/completions", chat_body(1 << 20)),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        let chunks = pieces(&body, 16 * 1024);
        assert!(run(path, req, "application/json", &chunks) == 10 || name == "embeddings");
        group.bench_with_input(BenchmarkId::new(name, "16k_chunks"), &chunks, |b, ch| {
            b.iter(|| run(path, req, "application/json", ch))
        });
    }
    group.finish();
}

criterion_group!(benches, sse, json);
criterion_main!(benches);
