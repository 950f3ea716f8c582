//! The alert and webhook API (CONTRACTS §10) against `app()` over a real
//! SQLite file, with the clock injected: budget tiers fire once each, the
//! signed deliveries reach a local receiver, a receiver that answers 503 is
//! retried with backoff and gets everything when it is back, an
//! unacknowledged Warning escalates after 24 h with its own event id.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use aispend_collector::domain::time::{format_rfc3339_ms, parse_rfc3339_ms};
use aispend_collector::domain::webhooks::signature;
use aispend_collector::service::{alerts, webhooks};
use aispend_collector::AppState;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

mod common;

use common::{ADMIN_BEARER as ADMIN, INGEST_BEARER as INGEST, READ_BEARER as READ};

const SECRET: &str = "whsec-0123456789abcdef";

struct Collector {
    state: AppState,
    router: Router,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// A collector over a temp SQLite file whose clock starts at `now` and
    /// moves only when the test says so.
    fn start(now: i64) -> Self {
        let clock = Arc::new(AtomicI64::new(now));
        let c = Arc::clone(&clock);
        let common::Collector {
            router,
            state,
            _dir,
        } = common::start_with(|state| {
            state.with_clock(Arc::new(move || c.load(Ordering::SeqCst)))
        });
        Self {
            state,
            router,
            clock,
            _dir,
        }
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", token)
            .header("content-type", "application/json")
            .body(common::json_body(&body.unwrap_or(Value::Null)))
            .expect("request");
        let answer = common::send(&self.router, request).await;
        (answer.status, answer.json, answer.text)
    }

    /// `n` calls of gpt-4o-mini for team search, $0.045 each, at now.
    async fn spend(&self, first: usize, n: usize) {
        let records: Vec<Value> = (first..first + n)
            .map(|i| {
                json!({"id": format!("r{i}"), "ts": format_rfc3339_ms(self.now() - 1_000), "gateway": "envoy",
                    "key_id": "key-search", "auth": "api_key",
                    "tags": {"org": "acme", "team": "search"}, "labels": {}, "provider": "openai",
                    "operation": "chat", "model": "gpt-4o-mini", "status": 200,
                    "input_tokens": 100_000, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
                    "output_tokens": 50_000, "reasoning_tokens": 0})
            })
            .collect();
        let (status, answer, _) = self
            .call(
                "POST",
                "/v1/records",
                INGEST,
                Some(json!({"records": records})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    async fn levels(&self) -> Vec<String> {
        let (status, answer, _) = self.call("GET", "/v1/alerts", READ, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let mut levels: Vec<String> = answer["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["level"].as_str().expect("level").to_owned())
            .collect();
        levels.sort();
        levels
    }
}

/// A local webhook receiver that records every request, or answers 503.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let router = Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let me = me.clone();
                async move {
                    if me.down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    me.got.lock().expect("lock").push((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://127.0.0.1:{}/hook", addr.port())
    }

    /// Every event received so far, after checking its signature.
    fn events(&self) -> Vec<Value> {
        let got = self.got.lock().expect("lock");
        got.iter()
            .map(|(headers, body)| {
                let h = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .expect(name)
                        .to_owned()
                };
                let ts: i64 = h("x-aispend-timestamp").parse().expect("timestamp");
                assert_eq!(
                    h("x-aispend-signature"),
                    signature(SECRET, ts, body),
                    "valid signature"
                );
                let event: Value = serde_json::from_str(body).expect("json body");
                assert_eq!(event["id"].as_str(), Some(h("x-aispend-event-id").as_str()));
                event
            })
            .collect()
    }
}

#[tokio::test]
async fn tiers_fire_once_and_signed_deliveries_survive_a_receiver_outage() {
    // Four hours before the end of November: the forecast adds little.
    let c = Collector::start(parse_rfc3339_ms("2026-11-30T20:00:00Z").expect("ts"));
    let receiver = Receiver::default();
    let url = receiver.start().await;

    // Webhooks: validated, admin only, secret shown once.
    let bad = c
        .call(
            "POST",
            "/v1/webhooks",
            ADMIN,
            Some(json!({"url": "ftp://127.0.0.1/x", "secret": SECRET})),
        )
        .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.2);
    assert!(bad.2.contains("http"), "{}", bad.2);
    let far = c
        .call(
            "POST",
            "/v1/webhooks",
            ADMIN,
            Some(json!({"url": "http://hooks.example.com/x", "secret": SECRET})),
        )
        .await;
    assert_eq!(far.0, StatusCode::BAD_REQUEST, "{}", far.2);
    assert!(far.2.contains("AISPEND_WEBHOOK_ALLOWED_HOSTS"), "{}", far.2);
    let viewer = c
        .call(
            "POST",
            "/v1/webhooks",
            READ,
            Some(json!({"url": url, "secret": SECRET})),
        )
        .await;
    assert_eq!(viewer.0, StatusCode::FORBIDDEN);
    let (status, created, _) = c
        .call(
            "POST",
            "/v1/webhooks",
            ADMIN,
            Some(json!({"url": url, "secret": SECRET})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secret"], SECRET);
    let hook_id = created["id"].as_str().expect("id").to_owned();
    let (_, _, listed) = c.call("GET", "/v1/webhooks", ADMIN, None).await;
    assert!(
        listed.contains(&hook_id) && !listed.contains(SECRET),
        "{listed}"
    );

    // A $0.44 month budget: 5 calls = 51 %, 7 = 72 %, 9 = 92 %, 10 = 102 %.
    let (status, budget, _) = c
        .call("POST", "/v1/budgets", ADMIN, Some(json!({"id": "search", "scope": {"team": "search"}, "period": "month", "amount_usd": 0.44})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    assert_eq!(budget["forecast_usd"], 0.0);

    c.spend(0, 4).await;
    alerts::evaluate(&c.state).await.expect("evaluate");
    assert!(c.levels().await.is_empty(), "41 % fires nothing");
    c.spend(4, 1).await;
    alerts::evaluate(&c.state).await.expect("evaluate");
    assert_eq!(c.levels().await, ["info"]);
    c.spend(5, 4).await; // 92 %: warning and critical in one ingest
    alerts::evaluate(&c.state).await.expect("evaluate");
    alerts::evaluate(&c.state).await.expect("evaluate again");
    assert_eq!(c.levels().await, ["critical", "info", "warning"]);
    c.spend(9, 1).await;
    alerts::evaluate(&c.state).await.expect("evaluate");
    assert_eq!(c.levels().await, ["critical", "hard", "info", "warning"]);

    let (_, budget, _) = c.call("GET", "/v1/budgets/search", READ, None).await;
    let forecast = budget["forecast_usd"].as_f64().expect("forecast");
    assert!(
        forecast > 0.45 && forecast < 0.46,
        "0.45 + 0.45/14 × 1/6 day: {budget}"
    );
    let (status, f, _) = c
        .call("GET", "/v1/forecast?group_by=team", READ, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["rows"][0]["team"], "search", "{f}");
    assert!(
        (f["rows"][0]["spend_usd"].as_f64().expect("spend") - 0.45).abs() < 1e-9,
        "{f}"
    );
    assert!(
        (f["rows"][0]["forecast_usd"].as_f64().expect("f") - forecast).abs() < 1e-9,
        "{f}"
    );
    let (status, _, text) = c
        .call("GET", "/v1/forecast?group_by=team&x=1", READ, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");

    // The receiver is down: the first attempt fails and is kept.
    receiver.down.store(true, Ordering::SeqCst);
    assert_eq!(webhooks::deliver_due(&c.state).await.expect("deliver"), 4);
    assert!(receiver.events().is_empty());
    let (_, d, _) = c
        .call(
            "GET",
            &format!("/v1/webhooks/{hook_id}/deliveries"),
            ADMIN,
            None,
        )
        .await;
    let rows = d["deliveries"].as_array().expect("deliveries");
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|r| r["state"] == "pending" && r["attempts"] == 1 && r["last_status"] == 503),
        "{d}"
    );
    // Not before the backoff.
    assert_eq!(webhooks::deliver_due(&c.state).await.expect("deliver"), 0);
    // Back up, 5 s later: everything arrives, once, signed.
    receiver.down.store(false, Ordering::SeqCst);
    c.advance(5_000);
    assert_eq!(webhooks::deliver_due(&c.state).await.expect("deliver"), 4);
    let events = receiver.events();
    let mut levels: Vec<&str> = events
        .iter()
        .map(|e| e["level"].as_str().expect("level"))
        .collect();
    levels.sort_unstable();
    assert_eq!(levels, ["critical", "hard", "info", "warning"]);
    assert!(events.iter().all(|e| e["event"] == "spend.alert"
        && e["id"] == e["alert_id"]
        && e["budget_id"] == "search"));
    let (_, d, _) = c
        .call(
            "GET",
            &format!("/v1/webhooks/{hook_id}/deliveries"),
            ADMIN,
            None,
        )
        .await;
    assert!(
        d["deliveries"]
            .as_array()
            .expect("d")
            .iter()
            .all(|r| r["state"] == "delivered" && r["attempts"] == 2),
        "{d}"
    );
    let (_, _, metrics) = c.call("GET", "/metrics", READ, None).await;
    assert!(
        metrics.contains("aispend_alerts_total{level=\"warning\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aispend_webhook_outbox_depth 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aispend_webhook_delivery_failures_total 4\n"),
        "{metrics}"
    );

    // Acknowledge: finance/admin only, once; the audit log has it.
    let (_, list, _) = c.call("GET", "/v1/alerts?level=info", READ, None).await;
    let info_id = list["alerts"][0]["id"].as_str().expect("id").to_owned();
    let ack_path = format!("/v1/alerts/{info_id}/ack");
    let ack = |token| c.call("POST", &ack_path, token, None);
    assert_eq!(ack(READ).await.0, StatusCode::FORBIDDEN);
    let (status, acked, _) = ack(ADMIN).await;
    assert_eq!(
        (status, acked["state"].as_str()),
        (StatusCode::OK, Some("acked")),
        "{acked}"
    );
    assert_eq!(ack(ADMIN).await.0, StatusCode::CONFLICT);
    assert_eq!(
        c.call("POST", "/v1/alerts/alt_none/ack", ADMIN, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, open, _) = c.call("GET", "/v1/alerts?state=open", READ, None).await;
    assert_eq!(open["alerts"].as_array().expect("open").len(), 3);
    assert_eq!(
        c.call("GET", "/v1/alerts?state=closed", READ, None).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, audit, _) = c
        .call("GET", "/v1/audit?action=alert.ack", ADMIN, None)
        .await;
    assert!(audit.to_string().contains(&info_id), "{audit}");

    // 24 h later the unacknowledged Warning is delivered again, as an
    // escalation with its own event id; only once. It is December now, and
    // November's burn forecasts December over the amount: Critical, kind
    // forecast, for the new period.
    c.advance(24 * 3_600_000);
    assert_eq!(alerts::evaluate(&c.state).await.expect("evaluate"), 2);
    assert_eq!(alerts::evaluate(&c.state).await.expect("evaluate"), 0);
    assert_eq!(webhooks::deliver_due(&c.state).await.expect("deliver"), 2);
    let events = receiver.events();
    assert_eq!(events.len(), 6);
    let escalation = events
        .iter()
        .find(|e| e["escalation"] == true)
        .expect("escalation");
    assert_eq!(escalation["level"], "warning");
    assert_eq!(
        escalation["id"],
        format!(
            "{}.escalation",
            escalation["alert_id"].as_str().expect("id")
        )
    );
    let december = events
        .iter()
        .find(|e| e["period_start"] == "2026-12-01T00:00:00Z")
        .expect("december");
    assert_eq!(
        (december["level"].as_str(), december["kind"].as_str()),
        (Some("critical"), Some("forecast"))
    );
}

#[tokio::test]
async fn a_budgets_own_tiers_are_shown_validated_audited_and_evaluated() {
    let c = Collector::start(parse_rfc3339_ms("2026-11-30T20:00:00Z").expect("ts"));
    let body = |alerts: Value| {
        json!({"id": "tiers", "scope": {"team": "search"}, "period": "month",
               "amount_usd": 0.44, "alerts": alerts})
    };
    // Bad tiers: 400 naming the field.
    let (status, _, text) = c
        .call(
            "POST",
            "/v1/budgets",
            ADMIN,
            Some(body(json!({"info": 0.9}))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("info <= warning <= critical <= hard"),
        "{text}"
    );
    let (status, _, text) = c
        .call(
            "POST",
            "/v1/budgets",
            ADMIN,
            Some(body(json!({"page": 0.9}))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("unknown tier") && text.contains("page"),
        "{text}"
    );

    // Defaults shown when the field is left out.
    let (status, created, _) = c
        .call("POST", "/v1/budgets", ADMIN, Some(body(Value::Null)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["alerts"],
        json!({"info": 0.5, "warning": 0.7, "critical": 0.9, "hard": 1.0})
    );
    // Lower tiers: $0.135 of $0.44 is 31 %, past info 0.1 and warning 0.3.
    let custom = json!({"info": 0.1, "warning": 0.3, "critical": 0.95, "hard": 1.0});
    let (status, replaced, _) = c
        .call(
            "PUT",
            "/v1/budgets/tiers",
            ADMIN,
            Some(body(custom.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["alerts"], custom);
    let (_, got, _) = c.call("GET", "/v1/budgets/tiers", READ, None).await;
    assert_eq!(got["alerts"], custom, "stored and read back");
    let (_, audit, _) = c
        .call("GET", "/v1/audit?action=budget.replace", ADMIN, None)
        .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["after"]["alerts"], custom, "{audit}");
    assert_eq!(entry["before"]["alerts"]["info"], 0.5, "{audit}");

    c.spend(0, 3).await;
    alerts::evaluate(&c.state).await.expect("evaluate");
    let (_, listed, _) = c.call("GET", "/v1/alerts", READ, None).await;
    let mut got: Vec<(String, f64)> = listed["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["level"].as_str().expect("level").to_owned(),
                a["threshold"].as_f64().expect("t"),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, [("info".to_owned(), 0.1), ("warning".to_owned(), 0.3)]);
}

/// Records backfilled over the API after the evaluation read its anomaly
/// history are counted at the next pass (the ingest drops the cached days).
#[tokio::test]
async fn a_backfilled_history_is_seen_by_the_next_anomaly_pass() {
    let now = parse_rfc3339_ms("2026-11-20T12:00:00Z").expect("ts");
    let common::Collector {
        router,
        state,
        _dir,
    } = common::start_with(|state| {
        state
            .with_clock(Arc::new(move || now))
            .with_alerts(alerts::AlertSettings {
                anomaly_min_usd: 0.0,
                ..alerts::AlertSettings::default()
            })
    });
    let ingest = |records: Vec<Value>| {
        let router = router.clone();
        async move {
            let answer = common::call(
                &router,
                "POST",
                "/v1/records",
                Some(common::INGEST),
                json!({ "records": records }),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        }
    };
    // One call of gpt-4o-mini for team search: $0.045.
    let record = |id: String, ts: i64| {
        json!({"id": id, "ts": format_rfc3339_ms(ts), "gateway": "envoy",
            "key_id": "key-search", "tags": {"org": "acme", "team": "search"},
            "provider": "openai", "operation": "chat", "model": "gpt-4o-mini", "status": 200,
            "input_tokens": 100_000, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
            "output_tokens": 50_000, "reasoning_tokens": 0})
    };
    const DAY: i64 = 86_400_000;
    // Today: 10 calls ($0.45). Nothing before: no variation, no anomaly.
    ingest(
        (0..10)
            .map(|i| record(format!("today-{i}"), now - 1_000 - i))
            .collect(),
    )
    .await;
    assert_eq!(alerts::evaluate(&state).await.expect("evaluate"), 0);
    // 2 to 30 days ago, 1 or 2 calls a day (yesterday none).
    let history: Vec<Value> = (2..=30)
        .flat_map(|d| (0..1 + d % 2).map(move |i| (d, i)))
        .map(|(d, i)| record(format!("past-{d}-{i}"), now - d * DAY))
        .collect();
    ingest(history).await;
    assert_eq!(alerts::evaluate(&state).await.expect("evaluate"), 1);
    let (_, listed, _) = {
        let answer = common::call(
            &router,
            "GET",
            "/v1/alerts",
            Some(common::READ),
            Value::Null,
        )
        .await;
        (answer.status, answer.json, answer.text)
    };
    let a = &listed["alerts"][0];
    assert_eq!(a["kind"], "anomaly", "{listed}");
    assert!(a["z_score"].as_f64().expect("z") > 3.0, "{listed}");
    assert_eq!(
        a["scope"],
        json!({"team": "search", "model": "gpt-4o-mini"})
    );
}
