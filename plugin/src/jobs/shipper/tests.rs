use super::*;

const OK: Outcome = Outcome::Acked { rejected: 0 };
const FAIL: Outcome = Outcome::Retry;

fn settings() -> ShipperSettings {
    ShipperSettings {
        flush_interval_ms: 1000,
        max_batch: 3,
        max_batch_bytes: 1 << 20,
        max_buffer: 5,
        max_backoff_ms: 8000,
    }
}

fn rec(i: usize) -> Vec<u8> {
    format!(r#"{{"i":{i}}}"#).into_bytes()
}

fn ids(batch: &Batch) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_slice(batch.body).unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["i"].as_u64().unwrap())
        .collect()
}

#[test]
fn batches_hold_at_most_max_batch_in_order() {
    let mut s = Shipper::new(settings());
    for i in 0..4 {
        s.push(&rec(i));
    }
    let b = s.poll(0).unwrap();
    assert_eq!(ids(&b), vec![0, 1, 2]);
    assert_eq!(b.records, 3);
    assert!(s.poll(0).is_none(), "one send at a time");
    s.on_result(10, OK);
    let b = s.poll(10).unwrap();
    assert_eq!(ids(&b), vec![3]);
    s.on_result(20, OK);
    assert!(s.poll(20).is_none(), "empty buffer sends nothing");
    assert_eq!(s.counters().shipped, 4);
    assert_eq!(s.counters().emitted, 4);
}

#[test]
fn failures_back_off_doubling_up_to_the_cap() {
    let mut s = Shipper::new(settings());
    s.push(&rec(0));
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let b = s.poll(now).expect("due");
        assert_eq!(ids(&b), vec![0], "the same record is retried");
        s.on_result(now, FAIL);
        waits.push(s.backoff_ms());
        assert!(
            s.poll(now + s.backoff_ms() - 1).is_none(),
            "not before the backoff"
        );
        now += s.backoff_ms();
    }
    assert_eq!(waits, vec![1000, 2000, 4000, 8000, 8000, 8000]);
    assert_eq!(s.counters().retried, 6);
    s.poll(now).unwrap();
    s.on_result(now, OK);
    assert_eq!(s.backoff_ms(), 0, "success resets the backoff");
    assert_eq!(s.counters().shipped, 1);
}

#[test]
fn full_buffer_drops_oldest_and_counts() {
    let mut s = Shipper::new(settings());
    for i in 0..8 {
        s.push(&rec(i));
    }
    assert_eq!(s.buffered(), 5);
    assert_eq!(s.counters().dropped, 3);
    assert_eq!(ids(&s.poll(0).unwrap()), vec![3, 4, 5]);
}

#[test]
fn dropping_during_a_send_settles_the_right_records() {
    let mut s = Shipper::new(settings());
    for i in 0..5 {
        s.push(&rec(i));
    }
    assert_eq!(ids(&s.poll(0).unwrap()), vec![0, 1, 2]);
    // Two new records push out 0 and 1 while the batch is in flight.
    s.push(&rec(5));
    s.push(&rec(6));
    s.on_result(1, OK);
    // Only record 2 of the batch was still buffered; 3..=6 remain.
    assert_eq!(s.buffered(), 4);
    assert_eq!(ids(&s.poll(1).unwrap()), vec![3, 4, 5]);
    let c = s.counters();
    assert_eq!((c.emitted, c.shipped, c.dropped), (7, 1, 2));
}

#[test]
fn minute_long_outage_at_demo_load_loses_nothing() {
    // Demo load: 50 records/s on one worker, default settings, the collector
    // down for 60 s, then back. Ticks every flush interval.
    let mut s = Shipper::new(ShipperSettings {
        flush_interval_ms: 1000,
        max_batch: 500,
        max_batch_bytes: 1 << 20,
        max_buffer: 10_000,
        max_backoff_ms: 30_000,
    });
    let outage = 10_000..70_000u64;
    let mut delivered = 0u64;
    let mut pushed = 0u64;
    let mut now = 0u64;
    while now < 200_000 {
        if now < 120_000 && now.is_multiple_of(20) {
            s.push(&rec(pushed as usize));
            pushed += 1;
        }
        if now.is_multiple_of(1000) {
            if let Some(b) = s.poll(now) {
                let up = !outage.contains(&now);
                if up {
                    delivered += b.records as u64;
                }
                s.on_result(now, if up { OK } else { FAIL });
            }
        }
        now += 10;
    }
    let c = s.counters();
    assert_eq!(pushed, 6000);
    assert_eq!(c.dropped, 0);
    assert_eq!(s.buffered(), 0);
    assert_eq!(delivered, pushed);
    assert_eq!(c.shipped, pushed);
    assert!(c.retried > 0);
}

#[test]
fn result_without_send_is_ignored() {
    let mut s = Shipper::new(settings());
    s.push(&rec(0));
    s.on_result(0, OK);
    assert_eq!(s.counters().shipped, 0);
    assert_eq!(s.buffered(), 1);
}

#[test]
fn records_are_written_in_place_and_kept_until_acknowledged() {
    let mut s = Shipper::new(settings());
    for i in 0..3 {
        let n = s.write(|out| {
            out.extend_from_slice(&rec(i));
            i * 10
        });
        assert_eq!(n, i * 10, "write answers what the writer answered");
    }
    let batch = s.poll(0).unwrap().body.to_vec();
    assert_eq!(batch, br#"{"records":[{"i":0},{"i":1},{"i":2}]}"#);
    // Written while the batch is in flight: kept behind it.
    s.push(&rec(3));
    // A retry sends the same records: their bytes stay until acknowledged.
    s.on_result(0, FAIL);
    assert_eq!(s.buffered(), 4);
    let retry = s.poll(u64::MAX).unwrap();
    assert_eq!(retry.body, batch);
    s.on_result(u64::MAX, OK);
    // The record behind the batch moved to the front, whole.
    assert_eq!(ids(&s.poll(u64::MAX).unwrap()), [3]);
    s.on_result(u64::MAX, OK);
    assert_eq!(s.buffered(), 0);
    s.push(&rec(9));
    assert_eq!(ids(&s.poll(u64::MAX).unwrap()), [9]);
}

/// Records pushed while batches come and go, the oldest dropped when the
/// buffer is full, retries and splits: every batch holds exactly the
/// records a plain list would, in order.
#[test]
fn the_record_buffer_matches_a_plain_list() {
    let mut s = Shipper::new(ShipperSettings {
        max_batch: 4,
        max_buffer: 7,
        max_batch_bytes: 60,
        ..settings()
    });
    // The model: records in order, the first `flight` of them sent.
    let mut model: std::collections::VecDeque<u64> = Default::default();
    let mut flight = 0usize;
    let mut x = 12345u64;
    let mut next = 0u64;
    for step in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 5 {
            0 | 1 => {
                // Records of different sizes (a long one now and then).
                let mut r = rec(next as usize);
                if x.is_multiple_of(7) {
                    r = format!(r#"{{"i":{next},"pad":"{}"}}"#, "p".repeat(70)).into_bytes();
                }
                s.push(&r);
                if model.len() == 7 {
                    model.pop_front();
                    flight = flight.saturating_sub(1);
                }
                model.push_back(next);
                next += 1;
            }
            2 => {
                if let Some(b) = s.poll(u64::MAX) {
                    let got = ids(&b);
                    assert_eq!(b.records, got.len());
                    let want: Vec<u64> = model.iter().take(got.len()).copied().collect();
                    assert_eq!(got, want, "step {step}");
                    flight = got.len();
                }
            }
            3 => {
                let outcome = if x.is_multiple_of(3) { FAIL } else { OK };
                let was_sending = s.is_sending();
                s.on_result(u64::MAX, outcome);
                if was_sending && outcome == OK {
                    for _ in 0..flight.min(model.len()) {
                        model.pop_front();
                    }
                }
                flight = 0;
            }
            _ => {}
        }
        assert_eq!(s.buffered(), model.len(), "step {step}");
    }
}

#[test]
fn batches_stay_under_max_batch_bytes_but_a_huge_record_still_goes() {
    let mut s = Shipper::new(ShipperSettings {
        max_batch_bytes: 40,
        ..settings()
    });
    for i in 0..3 {
        s.push(&rec(i)); // 7 bytes each
    }
    s.push(&[b'x'; 100]);
    let b = s.poll(0).unwrap();
    assert_eq!(ids(&b), vec![0, 1, 2]);
    assert!(b.body.len() <= 40, "{}", b.body.len());
    s.on_result(0, OK);
    let b = s.poll(0).unwrap();
    assert_eq!(b.records, 1, "one record over the limit goes alone");
}

/// A batch refused as a whole is split until every acceptable record is
/// shipped; the record refused alone is dropped and counted, never retried.
#[test]
fn a_refused_batch_is_split_around_the_poisoned_record() {
    let mut s = Shipper::new(ShipperSettings {
        max_batch: 8,
        max_buffer: 100,
        ..settings()
    });
    let poison = 5;
    for i in 0..12 {
        s.push(&rec(i));
    }
    let mut shipped = Vec::new();
    let mut sends = 0;
    while let Some(b) = s.poll(0) {
        sends += 1;
        assert!(sends < 40, "converges");
        let got = ids(&b);
        if got.contains(&poison) {
            s.on_result(0, Outcome::Refused);
        } else {
            shipped.extend(got);
            s.on_result(0, OK);
        }
    }
    let expected: Vec<u64> = (0..12).filter(|i| *i != poison).collect();
    assert_eq!(shipped, expected, "every ordinary record, in order");
    assert_eq!(s.counters().rejected, 1);
    assert_eq!(s.counters().shipped, 11);
    assert_eq!(s.counters().retried, 0, "a refusal is not a retry");
    assert_eq!(s.buffered(), 0);
}

#[test]
fn records_named_in_rejected_are_counted_not_shipped() {
    let mut s = Shipper::new(settings());
    for i in 0..3 {
        s.push(&rec(i));
    }
    s.poll(0).unwrap();
    s.on_result(0, Outcome::Acked { rejected: 1 });
    assert_eq!((s.counters().shipped, s.counters().rejected), (2, 1));
    assert_eq!(s.buffered(), 0, "rejected records are not retried");
}

/// Records written while batches come and go, the buffer never empty:
/// the live records move to the front when the buffer is full, so it stays
/// bounded, and every batch still holds the right records whole.
#[test]
fn a_buffer_that_never_empties_stays_bounded() {
    let mut s = Shipper::new(ShipperSettings {
        max_batch: 10,
        max_buffer: 10_000,
        ..settings()
    });
    let big = |i: usize| format!(r#"{{"i":{i},"pad":"{}"}}"#, "p".repeat(900)).into_bytes();
    let mut next = 0;
    let mut shipped = 0u64;
    for _ in 0..50 {
        s.push(&big(next));
        next += 1;
    }
    for round in 0..3000 {
        s.push(&big(next));
        next += 1;
        let b = s.poll(u64::MAX).unwrap();
        let got = ids(&b);
        assert_eq!(
            got,
            (shipped..shipped + got.len() as u64).collect::<Vec<_>>(),
            "round {round}"
        );
        let n = got.len() as u64;
        // Acknowledged one round in ten; otherwise retried (kept).
        if round % 10 == 0 {
            s.on_result(u64::MAX, OK);
            shipped += n;
        } else {
            s.on_result(u64::MAX, FAIL);
        }
    }
    assert!(s.buffered() >= 40, "the buffer never emptied");
    assert!(
        s.data.capacity() <= 8 * s.buffered() * 1024,
        "{} bytes of room for {} records",
        s.data.capacity(),
        s.buffered()
    );
}
