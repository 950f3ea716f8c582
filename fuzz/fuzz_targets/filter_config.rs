//! The filter's JSON config: parse, validate, compile (never panics; an
//! error names a field).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match aispend_plugin::filter::Filter::from_json(data) {
        Ok(f) => {
            let _ = f.warnings();
            let _ = f.shipper_settings();
        }
        Err(e) => assert!(!e.path.is_empty(), "error without a field: {e}"),
    }
});
