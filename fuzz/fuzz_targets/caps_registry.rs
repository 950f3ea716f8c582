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
        // A validated snapshot decodes, and each of its secrets is found.
        let reg = key_registry::KeyRegistry::decode(&snapshot.lines, &schema, &|_, _| false);
        assert!(
            reg.len() <= snapshot.keys,
            "{} > {}",
            reg.len(),
            snapshot.keys
        );
        lookup_every_line(&reg, &snapshot.lines, true);
    }
    // Shared data is written by another worker (maybe another version of
    // the filter): any text decodes without a panic.
    if let Ok(text) = std::str::from_utf8(data) {
        let reg = key_registry::KeyRegistry::decode(text, &schema, &|_, _| false);
        lookup_every_line(&reg, text, false);
    }
    let _ = key_registry::split_meta(data);
    let _ = key_registry::split_data(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = key_registry::parse_rfc3339_ms(text);
    }
});

/// Look every line's leading hex digest up (the lazy decode of its entry).
fn lookup_every_line(reg: &key_registry::KeyRegistry, lines: &str, must_find: bool) {
    for line in lines.lines() {
        let hex = line.get(..64).unwrap_or("");
        if let Some(digest) = aispend_plugin::config::parse_sha256_hex(hex) {
            match reg.get(&digest) {
                Some(entry) => drop(entry.admit(1_764_800_000_000)),
                None => assert!(!must_find, "a validated secret is missing: {line}"),
            }
        }
    }
}
