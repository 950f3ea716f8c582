//! What comes back from the collector: caps answers and flag lines, the key
//! registry snapshot and its shared-data forms.
#![no_main]
use aispend_plugin::controls::caps;
use aispend_plugin::request::identity::TagSchema;
use aispend_plugin::request::key_registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = TagSchema::new(&["region".to_string()]);
    if let Ok((version, flags)) = caps::from_collector(data) {
        let encoded = caps::encode(1, &version, &flags);
        let (at, v, f) = caps::split(&encoded).expect("own encoding splits");
        assert_eq!((at, v), (1, version.as_str()));
        let _ = caps::decode_flags(f, &schema);
    }
    if let Some((_, _, flags)) = caps::split(data) {
        let _ = caps::decode_flags(flags, &schema);
    }
    if let Ok(snapshot) = key_registry::from_collector(data, 1 << 20) {
        let _ = format!("{snapshot:?}").len();
    }
    let _ = key_registry::split_meta(data);
    let _ = key_registry::split_data(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = key_registry::parse_rfc3339_ms(text);
    }
});
