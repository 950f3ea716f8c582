//! Per-request cost of the spending controls on the memory host: the caps
//! check (one shared get, no decode while the flags are unchanged) and a
//! rate-limited key's counter update (get + CAS set). Hostcall costs of a
//! real gateway come on top (see benches/gateway).

use std::cell::RefCell;
use std::fmt::Write;

use aispend_plugin::controls;
use aispend_plugin::controls::caps::{self, CapsView};
use aispend_plugin::filter::Filter;
use aispend_plugin::host::memory::MemoryHost;
use aispend_plugin::request::identity::{AuthKind, KeyLimits, Principal};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn filter() -> Filter {
    match Filter::from_json(br#"{"collector":{"cluster":"c","token":"t"}}"#) {
        Ok(f) => f,
        Err(e) => panic!("bench config: {e}"),
    }
}

/// Shared data holding `n` cap flags for other teams and one soft flag for ours.
fn host_with_caps(n: usize) -> MemoryHost {
    let mut json = String::from(r#"{"version":"v","caps":["#);
    for i in 0..n {
        let _ = write!(
            json,
            r#"{{"budget_id":"b{i}","scope":{{"team":"t{i}"}},"state":"hard"}},"#
        );
    }
    json.push_str(r#"{"budget_id":"mine","scope":{"team":"search"},"state":"soft"}]}"#);
    let (version, flags) = match caps::from_collector(json.as_bytes()) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let mut host = MemoryHost::with_request(&[]);
    let value = caps::encode(host.now_ms, &version, &flags);
    host.shared.insert(caps::SHARED_KEY.into(), (value, 1));
    host
}

fn principal(limits: Option<KeyLimits>) -> Principal {
    Principal {
        key_id: "demo-search".into(),
        auth: AuthKind::ApiKey,
        tags: std::rc::Rc::new(vec![(1, "search".into())]),
        limits,
    }
}

fn bench(c: &mut Criterion) {
    let f = filter();
    let view = RefCell::new(CapsView::new(0));
    let pending = RefCell::default();
    let mut host = host_with_caps(50);
    let plain = principal(None);
    // What the root tick does: take the shared flags into this VM's view.
    controls::sync_caps_view(&mut host, &f, &view);
    let now = host.now_ms;
    c.bench_function("controls: caps check, 51 flags, unchanged", |b| {
        b.iter(|| {
            black_box(controls::enforce(
                &mut host,
                &f,
                &view,
                &pending,
                black_box(&plain),
                now,
            ))
        })
    });
    let limited = principal(Some(KeyLimits {
        requests_per_minute: Some(u64::MAX),
        tokens_per_minute: Some(u64::MAX),
    }));
    c.bench_function("controls: caps + rate limit (get + CAS set)", |b| {
        b.iter(|| {
            black_box(controls::enforce(
                &mut host,
                &f,
                &view,
                &pending,
                black_box(&limited),
                now,
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
