use super::*;

fn settings() -> ShipperSettings {
    ShipperSettings {
        flush_interval_ms: 1000,
        max_batch: 3,
        max_buffer: 5,
        max_backoff_ms: 8000,
    }
}

fn rec(i: usize) -> Vec<u8> {
    format!(r#"{{"i":{i}}}"#).into_bytes()
}

fn ids(batch: &Batch) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
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
        s.push(rec(i));
    }
    let b = s.poll(0).unwrap();
    assert_eq!(ids(&b), vec![0, 1, 2]);
    assert_eq!(b.records, 3);
    assert!(s.poll(0).is_none(), "one send at a time");
    s.on_result(10, true);
    let b = s.poll(10).unwrap();
    assert_eq!(ids(&b), vec![3]);
    s.on_result(20, true);
    assert!(s.poll(20).is_none(), "empty buffer sends nothing");
    assert_eq!(s.counters().shipped, 4);
    assert_eq!(s.counters().emitted, 4);
}

#[test]
fn failures_back_off_doubling_up_to_the_cap() {
    let mut s = Shipper::new(settings());
    s.push(rec(0));
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let b = s.poll(now).expect("due");
        assert_eq!(ids(&b), vec![0], "the same record is retried");
        s.on_result(now, false);
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
    s.on_result(now, true);
    assert_eq!(s.backoff_ms(), 0, "success resets the backoff");
    assert_eq!(s.counters().shipped, 1);
}

#[test]
fn full_buffer_drops_oldest_and_counts() {
    let mut s = Shipper::new(settings());
    for i in 0..8 {
        s.push(rec(i));
    }
    assert_eq!(s.buffered(), 5);
    assert_eq!(s.counters().dropped, 3);
    assert_eq!(ids(&s.poll(0).unwrap()), vec![3, 4, 5]);
}

#[test]
fn dropping_during_a_send_settles_the_right_records() {
    let mut s = Shipper::new(settings());
    for i in 0..5 {
        s.push(rec(i));
    }
    assert_eq!(ids(&s.poll(0).unwrap()), vec![0, 1, 2]);
    // Two new records push out 0 and 1 while the batch is in flight.
    s.push(rec(5));
    s.push(rec(6));
    s.on_result(1, true);
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
        max_buffer: 10_000,
        max_backoff_ms: 30_000,
    });
    let outage = 10_000..70_000u64;
    let mut delivered = 0u64;
    let mut pushed = 0u64;
    let mut now = 0u64;
    while now < 200_000 {
        if now < 120_000 && now.is_multiple_of(20) {
            s.push(rec(pushed as usize));
            pushed += 1;
        }
        if now.is_multiple_of(1000) {
            if let Some(b) = s.poll(now) {
                let up = !outage.contains(&now);
                if up {
                    delivered += b.records as u64;
                }
                s.on_result(now, up);
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
    s.push(rec(0));
    s.on_result(0, true);
    assert_eq!(s.counters().shipped, 0);
    assert_eq!(s.buffered(), 1);
}

#[test]
fn shipped_buffers_come_back_empty_for_new_records() {
    let mut s = Shipper::new(settings());
    let fresh = s.take_buffer();
    assert!(fresh.is_empty() && fresh.capacity() >= 512);
    for i in 0..3 {
        let mut buf = s.take_buffer();
        buf.extend_from_slice(&rec(i));
        s.push(buf);
    }
    let batch = s.poll(0).unwrap();
    // Not recycled while the batch is in flight: a retry needs the records.
    s.on_result(0, false);
    assert_eq!(s.buffered(), 3);
    let retry = s.poll(u64::MAX).unwrap();
    assert_eq!(ids(&retry), ids(&batch));
    s.on_result(u64::MAX, true);
    // Shipped: the next records reuse those buffers, emptied.
    let reused = s.take_buffer();
    assert!(reused.is_empty() && reused.capacity() >= rec(0).len());
    let mut buf = reused;
    buf.extend_from_slice(&rec(9));
    s.push(buf);
    assert_eq!(ids(&s.poll(u64::MAX).unwrap()), [9]);
}
