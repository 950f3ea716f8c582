//! Per-request logic cost: identity lookup + tag computation + record
//! build/serialize, through the same `RequestFlow` the glue drives, against
//! the in-memory host. `cargo bench -p aispend-plugin --bench request`.

use std::cell::RefCell;
use std::rc::Rc;

use aispend_plugin::controls::caps::CapsView;
use aispend_plugin::filter::Filter;
use aispend_plugin::host::memory::MemoryHost;
use aispend_plugin::jobs::shipper::Shipper;
use aispend_plugin::request::flow::RequestFlow;
use aispend_plugin::request::record::IdGen;
use aispend_plugin::vm::Shared;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn filter_with_keys(n: usize) -> Filter {
    use std::fmt::Write;
    let mut keys = String::new();
    for i in 0..n {
        let _ = write!(
            keys,
            r#"{{"key_id":"k{i}","sha256":"{:064x}","tags":{{"team":"t{i}"}}}},"#,
            i + 1
        );
    }
    let plain = "sk-aispend-demo-search";
    let sha = sha256_hex(plain);
    let json = format!(
        r#"{{"identity":{{"keys":[{keys}{{"key_id":"demo-search","sha256":"{sha}","tags":{{"org":"acme","team":"search","project":"ranking","cost_center":"CC-1001","environment":"prod"}}}}]}},
            "tags":{{"labels":{{"allow":["x-aispend-label-feature"]}}}},
            "providers":{{"openai":{{"credential":{{"header":"authorization","value":"Bearer sk-real"}}}}}},
            "collector":{{"cluster":"c","token":"t","max_buffer":1000000,"max_batch":500}}}}"#
    );
    match Filter::from_json(json.as_bytes()) {
        Ok(f) => f,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn request_flow(c: &mut Criterion) {
    let filter = Rc::new(filter_with_keys(1000));
    let shipper = Rc::new(RefCell::new(Shipper::new(filter.shipper_settings())));
    let shared = Shared {
        filter: filter.clone(),
        shipper: shipper.clone(),
        ids: Rc::new(RefCell::new(IdGen::new([7; 16]))),
        caps: Rc::new(RefCell::new(CapsView::new(0))),
        registry: Rc::default(),
        requests: Rc::default(),
        limit_counts: Rc::default(),
    };
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;
    let req_body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;

    c.bench_function("decide (identity + tags) with 1000 keys", |b| {
        let flow = RequestFlow::new(&shared);
        let headers: Vec<(&str, &str)> = [
            (":path", "/v1/chat/completions"),
            ("authorization", "Bearer sk-aispend-demo-search"),
            ("x-aispend-team", "spoofed"),
            ("x-aispend-label-feature", "summarize"),
            ("content-type", "application/json"),
        ]
        .to_vec();
        struct NoClaims;
        impl aispend_plugin::request::identity::ClaimSource for NoClaims {
            fn claim(&mut self, _: &str) -> Option<String> {
                None
            }
        }
        b.iter(|| black_box(flow.decide(black_box(&headers), &mut NoClaims)))
    });

    c.bench_function("full request flow (headers, body, response, record)", |b| {
        b.iter(|| {
            let mut host = MemoryHost::with_request(&[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "gw"),
                ("authorization", "Bearer sk-aispend-demo-search"),
                ("x-aispend-label-feature", "summarize"),
                ("content-type", "application/json"),
                ("content-length", "70"),
            ]);
            host.request_body = req_body.to_vec();
            let mut flow = RequestFlow::new(&shared);
            flow.on_request_headers(&mut host, false);
            flow.on_request_body(&mut host, req_body.len(), true);
            host.response_headers = vec![
                (":status".into(), "200".into()),
                ("content-type".into(), "application/json".into()),
            ];
            flow.on_response_headers(&mut host);
            host.response_chunk = body.to_vec();
            flow.on_response_body(&mut host, body.len(), true);
            flow.on_log(&mut host);
            black_box(&host);
        });
        // Keep memory flat across iterations.
        let mut s = shipper.borrow_mut();
        while let Some(batch) = s.poll(u64::MAX) {
            black_box(batch.body);
            s.on_result(
                u64::MAX,
                aispend_plugin::jobs::shipper::Outcome::Acked { rejected: 0 },
            );
        }
    });
}

criterion_group!(benches, request_flow);
criterion_main!(benches);
