//! The collector's record validation (POST /v1/records): a batch body, each
//! record validated; a valid record's fields stay within their bounds.
#![no_main]
use aispend_collector::domain::validate::{validate_record, MAX_TOKENS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
            assert!(rec.id.len() <= 128 && rec.key_id.len() <= 128, "{rec:?}");
        }
    }
});
