//! How a record id is stored, and how a filter-made id doubles as a time
//! index.
//!
//! The filter's ids are 32 lowercase hex digits whose first 48 bits are the
//! request's start in ms, i.e. the record's `ts_ms` (plugin/src/record.rs).
//! They are stored as a uuid; for those whose prefix is exactly `ts_ms`
//! (`ts_in_id`), an id range `[id_floor(from), id_floor(to))` selects the
//! same records as `ts_ms` in `[from, to)`, so the unique index on `id`
//! answers time ranges and no `ts_ms` index entry is needed for them.

use crate::store::hex16;

/// How a record id is stored: the filter's 32 lowercase hex digits as a uuid,
/// anything else as text in its own column. The derived order (every uuid
/// before every text, then by value) is the order rows are written in, the
/// same on every replica, so concurrent inserts of the same ids wait on each
/// other in one order and cannot deadlock.
/// (Text ids are rare, so owning them costs nothing in the common case.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoredId {
    Uuid([u8; 16]),
    Text(String),
}

impl StoredId {
    pub fn of(id: &str) -> Self {
        match hex16(id) {
            Some(bytes) => StoredId::Uuid(bytes),
            None => StoredId::Text(id.to_owned()),
        }
    }
}

/// Times whose 48-bit prefix can stand for them: `0 <= ms < TS_LIMIT`. The
/// last 48-bit value is left out so that `id_floor` of any time at or above
/// it is an upper bound of every id with its time inside.
const TS_LIMIT: i64 = (1 << 48) - 1;

/// Whether `id` starts with `ts_ms` (see the module comment).
pub fn ts_in_id(id: &StoredId, ts_ms: i64) -> bool {
    match id {
        StoredId::Uuid(bytes) => {
            (0..TS_LIMIT).contains(&ts_ms) && bytes[..6] == ts_ms.to_be_bytes()[2..]
        }
        StoredId::Text(_) => false,
    }
}

/// The smallest uuid (as text) whose time prefix is `ms`, clamped to
/// `[0, TS_LIMIT]`: for a `ts_in_id` record, `id_floor(a) <= id <
/// id_floor(b)` exactly when `a <= ts_ms < b`.
pub fn id_floor(ms: i64) -> String {
    format!("{:012x}00000000000000000000", ms.clamp(0, TS_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339_ms;

    #[test]
    fn only_32_lowercase_hex_digits_become_a_uuid() {
        let hex = "0123456789abcdef0011223344556677";
        let StoredId::Uuid(bytes) = StoredId::of(hex) else {
            panic!("expected a uuid for {hex}");
        };
        assert_eq!(bytes[0], 0x01);
        assert_eq!(bytes[15], 0x77);
        for other in [
            "0123456789ABCDEF0011223344556677",
            "0123456789abcdef001122334455667",
            "0123456789abcdef00112233445566778",
            "0123456789abcdeg0011223344556677",
            "rec-1",
        ] {
            assert_eq!(
                StoredId::of(other),
                StoredId::Text(other.to_owned()),
                "{other}"
            );
        }
    }

    #[test]
    fn uuids_sort_before_text_and_by_byte_value() {
        let mut ids = [
            StoredId::of("zzz"),
            StoredId::of("ff000000000000000000000000000000"),
            StoredId::of("aaa"),
            StoredId::of("00000000000000000000000000000001"),
        ];
        ids.sort();
        assert_eq!(ids[0], StoredId::of("00000000000000000000000000000001"));
        assert_eq!(ids[1], StoredId::of("ff000000000000000000000000000000"));
        assert_eq!(ids[2], StoredId::Text("aaa".to_owned()));
        assert_eq!(ids[3], StoredId::Text("zzz".to_owned()));
    }

    #[test]
    fn a_time_prefix_makes_the_id_a_time_index() {
        let ts = parse_rfc3339_ms("2026-11-24T06:50:00.123Z").unwrap_or(0);
        let id = format!("{:012x}abcdef0123456789abcd", ts);
        assert!(ts_in_id(&StoredId::of(&id), ts));
        assert!(!ts_in_id(&StoredId::of(&id), ts + 1));
        assert!(!ts_in_id(&StoredId::of(&id.to_uppercase()), ts));
        assert!(!ts_in_id(
            &StoredId::of("00000000000000000000000000000000"),
            -1
        ));
        // The id range of [ts, ts + 1) holds the id; those of the neighbours do not.
        let floor = id_floor;
        assert!(floor(ts) <= id && id < floor(ts + 1));
        assert!(!(floor(ts - 1) <= id && id < floor(ts)));
        assert_eq!(id_floor(-5), "00000000000000000000000000000000");
        assert_eq!(id_floor(i64::MAX), "ffffffffffff00000000000000000000");
    }
}
