//! The collector's ingest path (POST /v1/records) without the store: the
//! batch envelope, each record validated and priced with the embedded price
//! table; a valid record stays within its bounds and costs a finite,
//! non-negative amount. The ingest path's own decoder (`validate_record_json`,
//! no `Value` tree) answers as `validate_record` on the text's `Value` does.
#![no_main]
use std::sync::OnceLock;

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::validate::{validate_record, validate_record_json, MAX_TOKENS};
use libfuzzer_sys::fuzz_target;

fn prices() -> &'static PriceTable {
    static TABLE: OnceLock<PriceTable> = OnceLock::new();
    TABLE.get_or_init(|| PriceTable::embedded().expect("embedded price table"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            assert_eq!(validate_record_json(text), validate_record(&value), "{text}");
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let records = match value.get("records").and_then(|r| r.as_array()) {
        Some(list) => list.clone(),
        None => vec![value],
    };
    for r in &records {
        if let Ok(rec) = validate_record(r) {
            let t = &rec.tokens;
            assert!(t.input <= MAX_TOKENS && t.output <= MAX_TOKENS, "{rec:?}");
            assert!(t.cached_input <= t.input, "{rec:?}");
            assert!(rec.id.len() <= 128 && rec.key_id.len() <= 128, "{rec:?}");
            if let Some(cost) = prices().cost_of(&rec) {
                assert!(cost.is_finite() && cost >= 0.0, "{cost} for {rec:?}");
            }
        }
    }
});
