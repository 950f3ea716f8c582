//! `GET /v1/usage` query strings: dimensions, filters, times, format.
#![no_main]
use aispend_collector::domain::usage_query::{Dim, Format, UsageQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for now in [0i64, 1_764_800_000_000, i64::MAX / 2] {
        if let Ok(q) = UsageQuery::parse(Some(raw), now) {
            assert!(q.from_ms <= q.to_ms, "{raw}: from after to");
            let _ = q.dims().count();
            let _ = q.period_ms();
        }
    }
    let _ = Format::of_query(Some(raw));
    if let Some(d) = Dim::parse(raw) {
        assert_eq!(
            Dim::parse(&d.name()),
            Some(d.clone()),
            "{raw}: name does not parse back"
        );
    }
});
