use super::*;
use crate::host::memory::MemoryHost;
use crate::request::record::IdGen;

fn shared(gateway: &str, extra: &str) -> Shared {
    let cluster = if gateway == "kong" {
        "127.0.0.1:9"
    } else {
        "c"
    };
    let json = format!(
        r#"{{"gateway":"{gateway}","collector":{{"cluster":"{cluster}","token":"t","max_batch":2{extra}}},"caps":{{"token":"r"}}}}"#
    );
    Shared::new(
        Filter::from_json(json.as_bytes()).unwrap(),
        IdGen::new([3; 16]),
        0,
    )
}

fn push(shared: &Shared, n: usize) {
    for i in 0..n {
        shared
            .shipper
            .borrow_mut()
            .push(format!("{{\"i\":{i}}}").as_bytes());
    }
}

fn paths(host: &MemoryHost) -> Vec<String> {
    host.dispatched
        .iter()
        // The caps poll's query (strict leases: `?host=…`) is not the point here.
        .map(|(_, h, _)| {
            let path = &h.iter().find(|(n, _)| n == ":path").unwrap().1;
            path.split('?').next().unwrap_or_default().to_string()
        })
        .collect()
}

const ACK: Answer<'static> = Answer {
    status: Some(200),
    body: br#"{"accepted":2,"duplicates":0,"rejected":[]}"#,
};

#[test]
fn one_tick_period_serves_every_job() {
    let s = Scheduler::standard();
    let period = |flush: u64, poll: u64| {
        let f = Filter::from_json(
            format!(
                r#"{{"collector":{{"cluster":"c","token":"t","flush_interval_ms":{flush}}},"caps":{{"token":"r","poll_interval_ms":{poll}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        s.tick_period_ms(&f)
    };
    assert_eq!(period(200, 300), 100);
    assert_eq!(period(1000, 2000), 1000);
    assert_eq!(period(1000, 2001), 1000);
    assert_eq!(period(30, 20), 20);
    let no_caps = Filter::from_json(
        br#"{"collector":{"cluster":"c","token":"t","flush_interval_ms":700},"caps":{"enabled":false}}"#,
    )
    .unwrap();
    assert_eq!(
        s.tick_period_ms(&no_caps),
        700,
        "a job switched off does not count"
    );
}

#[test]
fn each_job_runs_at_its_own_period_and_answers_reach_their_job() {
    let sh = shared("envoy", r#","flush_interval_ms":1000"#);
    let mut host = MemoryHost::with_request(&[]);
    let mut s = Scheduler::standard();
    push(&sh, 1);
    s.on_tick(&mut host, &sh);
    assert_eq!(paths(&host), ["/v1/records", "/v1/caps"]);
    // Records answered; caps still out: the next tick sends neither early.
    s.on_answer(&mut host, &sh, 1, ACK);
    push(&sh, 1);
    host.now_ms += 500;
    s.on_tick(&mut host, &sh);
    assert_eq!(
        host.dispatched.len(),
        2,
        "the flush interval has not passed"
    );
    host.now_ms += 500;
    s.on_tick(&mut host, &sh);
    assert_eq!(paths(&host)[2], "/v1/records");
    assert_eq!(sh.shipper.borrow().counters().shipped, 1);
}

#[test]
fn a_backlog_drains_from_the_answer_on_envoy_and_from_the_next_tick_on_kong() {
    for gateway in ["envoy", "kong"] {
        let sh = shared(gateway, "");
        let mut host = MemoryHost::with_request(&[]);
        let mut s = Scheduler::new(vec![Box::new(ship::ShipJob::default())]);
        push(&sh, 5);
        s.on_tick(&mut host, &sh);
        assert_eq!(host.dispatched.len(), 1);
        s.on_answer(&mut host, &sh, 1, ACK);
        if gateway == "envoy" {
            assert_eq!(host.dispatched.len(), 2, "drained from inside the answer");
        } else {
            assert_eq!(
                host.dispatched.len(),
                1,
                "Kong: no dispatch from a call response"
            );
            host.now_ms += 1; // the very next tick, well before the flush interval
            s.on_tick(&mut host, &sh);
            assert_eq!(host.dispatched.len(), 2);
        }
    }
}

#[test]
fn shutdown_ships_everything_left_on_envoy_then_says_done() {
    let sh = shared(
        "envoy",
        r#","flush_interval_ms":60000,"max_backoff_ms":120000"#,
    );
    let mut host = MemoryHost::with_request(&[]);
    let mut s = Scheduler::new(vec![Box::new(ship::ShipJob::default())]);
    push(&sh, 3);
    // A failed send put the records in backoff; shutdown does not wait for it.
    s.on_tick(&mut host, &sh);
    s.on_answer(
        &mut host,
        &sh,
        1,
        Answer {
            status: Some(503),
            body: b"",
        },
    );
    assert_eq!(s.on_shutdown(&mut host, &sh), Shutdown::Waiting);
    assert_eq!(host.dispatched.len(), 2);
    assert_eq!(
        s.on_answer(&mut host, &sh, 2, ACK),
        Shutdown::Waiting,
        "one more batch"
    );
    assert_eq!(host.dispatched.len(), 3);
    assert_eq!(s.on_answer(&mut host, &sh, 3, ACK), Shutdown::Done);
    assert_eq!(sh.shipper.borrow().counters().shipped, 3);
    assert_eq!(sh.shipper.borrow().buffered(), 0);
    s.on_tick(&mut host, &sh);
    assert_eq!(host.dispatched.len(), 3, "no periodic work after shutdown");
}

#[test]
fn shutdown_gives_up_on_an_unreachable_collector_and_counts_the_loss() {
    let sh = shared("envoy", "");
    let mut host = MemoryHost::with_request(&[]);
    let mut s = Scheduler::new(vec![Box::new(ship::ShipJob::default())]);
    push(&sh, 3);
    assert_eq!(s.on_shutdown(&mut host, &sh), Shutdown::Waiting);
    let failed = Answer {
        status: None,
        body: b"",
    };
    assert_eq!(s.on_answer(&mut host, &sh, 1, failed), Shutdown::Done);
    assert_eq!(sh.shipper.borrow().counters().dropped, 3);
}

#[test]
fn kong_cannot_wait_at_shutdown() {
    let sh = shared("kong", "");
    let mut host = MemoryHost::with_request(&[]);
    let mut s = Scheduler::standard();
    push(&sh, 3);
    assert_eq!(s.on_shutdown(&mut host, &sh), Shutdown::Done);
    assert!(
        host.dispatched.is_empty(),
        "nothing can be sent once Kong stops the VM"
    );
}
