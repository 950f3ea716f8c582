//! How store failures reach clients: a transient one (database unreachable,
//! pool timeout, SQLITE_BUSY) is 503 so the gateway filter keeps the batch
//! and retries it; any other is 500. Uses a store that always fails.

mod common;

use std::sync::Arc;

use aispend_collector::domain::access::ApiToken;
use aispend_collector::domain::aggregate::UsageReport;
use aispend_collector::domain::alerts::Alert;
use aispend_collector::domain::audit::{AuditEntry, AuditQuery};
use aispend_collector::domain::budgets::Budget;
use aispend_collector::domain::finops::chargeback::{ChargebackLine, ClosedMonth, GlAccount};
use aispend_collector::domain::keys::Key;
use aispend_collector::domain::leases::{HostLease, Lease, LeaseRequest};
use aispend_collector::domain::overrides::{Approval, Override};
use aispend_collector::domain::pricing::book::PriceChanges;
use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::reconcile::import::{Import, ProviderLine};
use aispend_collector::domain::record::PricedRecord;
use aispend_collector::domain::usage_query::UsageQuery;
use aispend_collector::domain::webhooks::{Attempt, Delivery, Webhook};
use aispend_collector::store::{
    BatchOutcome, KeyWrite, Pricer, PricesAdded, Purged, Repriced, SaveKeys, Store, StoreError,
    StoreFuture,
};
use aispend_collector::{app, AppState, Tokens};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

/// Every call fails with the same error.
struct FailingStore(StoreError);

impl FailingStore {
    fn fail<T: Send + 'static>(&self) -> StoreFuture<'_, T> {
        let error = self.0.clone();
        Box::pin(async move { Err(error) })
    }
}

impl Store for FailingStore {
    fn insert_batch(&self, _: Vec<PricedRecord>) -> StoreFuture<'_, BatchOutcome> {
        self.fail()
    }
    fn usage(&self, _: UsageQuery) -> StoreFuture<'_, UsageReport> {
        self.fail()
    }
    fn tag_keys(&self) -> StoreFuture<'_, Vec<String>> {
        self.fail()
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.fail()
    }
    fn close(&self) -> StoreFuture<'_, ()> {
        self.fail()
    }
    fn create_budget(&self, _: Budget) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn get_budget(&self, _: String) -> StoreFuture<'_, Option<Budget>> {
        self.fail()
    }
    fn list_budgets(&self) -> StoreFuture<'_, Vec<Budget>> {
        self.fail()
    }
    fn replace_budget(&self, _: Budget) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn delete_budget(&self, _: String) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn create_token(&self, _: ApiToken) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        self.fail()
    }
    fn revoke_token(&self, _: String, _: i64) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn append_audit(&self, _: AuditEntry) -> StoreFuture<'_, ()> {
        self.fail()
    }
    fn list_audit(&self, _: AuditQuery) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.fail()
    }
    fn create_override(&self, _: Override) -> StoreFuture<'_, ()> {
        self.fail()
    }
    fn list_overrides(&self) -> StoreFuture<'_, Vec<Override>> {
        self.fail()
    }
    fn add_override_approval(&self, _: String, _: Approval) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn save_keys(&self, _: Vec<KeyWrite>) -> StoreFuture<'_, SaveKeys> {
        self.fail()
    }
    fn get_key(&self, _: String) -> StoreFuture<'_, Option<Key>> {
        self.fail()
    }
    fn list_keys(&self) -> StoreFuture<'_, Vec<Key>> {
        self.fail()
    }
    fn keys_revision(&self) -> StoreFuture<'_, i64> {
        self.fail()
    }
    fn purge_records(&self, _: i64, _: u32) -> StoreFuture<'_, Purged> {
        self.fail()
    }
    fn retention_horizon(&self) -> StoreFuture<'_, Option<i64>> {
        self.fail()
    }
    fn replace_provider_usage(&self, _: Import) -> StoreFuture<'_, (u64, u64)> {
        self.fail()
    }
    fn provider_usage(&self, _: i64, _: i64) -> StoreFuture<'_, Vec<ProviderLine>> {
        self.fail()
    }
    fn add_prices(&self, _: PriceChanges, _: i64) -> StoreFuture<'_, PricesAdded> {
        self.fail()
    }
    fn price_history(&self) -> StoreFuture<'_, PriceChanges> {
        self.fail()
    }
    fn reprice(&self, _: i64, _: i64, _: Pricer, _: String) -> StoreFuture<'_, Repriced> {
        self.fail()
    }
    fn put_gl_account(&self, _: GlAccount) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn gl_accounts(&self) -> StoreFuture<'_, Vec<GlAccount>> {
        self.fail()
    }
    fn close_month(&self, _: ClosedMonth, _: Vec<ChargebackLine>) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn closed_months(&self) -> StoreFuture<'_, Vec<ClosedMonth>> {
        self.fail()
    }
    fn booked_lines(&self) -> StoreFuture<'_, Vec<ChargebackLine>> {
        self.fail()
    }
    fn insert_alert(&self, _: Alert, _: String) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn escalate_alert(&self, _: String, _: String, _: String, _: i64) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn get_alert(&self, _: String) -> StoreFuture<'_, Option<Alert>> {
        self.fail()
    }
    fn list_alerts(&self) -> StoreFuture<'_, Vec<Alert>> {
        self.fail()
    }
    fn ack_alert(&self, _: String, _: String, _: i64) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn create_webhook(&self, _: Webhook) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn list_webhooks(&self) -> StoreFuture<'_, Vec<Webhook>> {
        self.fail()
    }
    fn delete_webhook(&self, _: String) -> StoreFuture<'_, bool> {
        self.fail()
    }
    fn claim_deliveries(&self, _: i64, _: i64, _: i64) -> StoreFuture<'_, Vec<Delivery>> {
        self.fail()
    }
    fn finish_delivery(&self, _: i64, _: Attempt, _: Option<i64>) -> StoreFuture<'_, ()> {
        self.fail()
    }
    fn list_deliveries(&self, _: String, _: i64) -> StoreFuture<'_, Vec<Delivery>> {
        self.fail()
    }
    fn outbox_depth(&self) -> StoreFuture<'_, i64> {
        self.fail()
    }

    fn grant_lease(&self, _req: LeaseRequest) -> StoreFuture<'_, Lease> {
        self.fail()
    }

    fn lease_totals(
        &self,
        _budget_id: String,
        _period_start_ms: i64,
    ) -> StoreFuture<'_, (f64, f64)> {
        self.fail()
    }

    fn list_leases(
        &self,
        _budget_id: String,
        _period_start_ms: i64,
    ) -> StoreFuture<'_, Vec<HostLease>> {
        self.fail()
    }
}

fn state(error: StoreError) -> AppState {
    let tokens = Tokens {
        ingest: Some("it".into()),
        read: Some("rt".into()),
        admin: Some("at".into()),
    };
    AppState::new(
        Arc::new(FailingStore(error)),
        PriceTable::embedded().expect("prices"),
        tokens,
    )
}

async fn call(
    state: AppState,
    method: &str,
    uri: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let answer = common::send(&app(state), request).await;
    (answer.status, answer.header("retry-after"), answer.json)
}

fn batch() -> Value {
    json!({"records": [{"id": "r1", "ts": "2026-11-24T06:50:00Z", "gateway": "envoy",
        "key_id": "k", "provider": "openai", "operation": "chat", "model": "gpt-4o",
        "status": 200, "input_tokens": 1, "cached_input_tokens": 0,
        "cache_write_input_tokens": 0, "output_tokens": 1, "reasoning_tokens": 0,
        "tags": {"team": "search"}}]})
}

#[tokio::test]
async fn a_transient_store_error_is_503_on_ingest() {
    let unreachable = StoreError::transient("postgres: connection refused");
    let (status, retry_after, body) =
        call(state(unreachable), "POST", "/v1/records", "it", batch()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "store_unavailable");
    // The store's own message stays in the log.
    assert!(!body.to_string().contains("connection refused"), "{body}");
}

#[tokio::test]
async fn a_permanent_store_error_is_500_on_ingest() {
    let broken = StoreError::internal("no statement of chunk size #9");
    let (status, retry_after, body) =
        call(state(broken), "POST", "/v1/records", "it", batch()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(retry_after, None);
    assert_eq!(body["error"]["code"], "store_error");
}

#[tokio::test]
async fn reads_and_budgets_map_store_errors_the_same_way() {
    let busy = || StoreError::transient("database is locked");
    let month = "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";
    for (method, uri, token) in [
        ("GET", month, "rt"),
        ("GET", "/v1/caps", "rt"),
        ("GET", "/v1/budgets", "rt"),
        ("GET", "/v1/budgets/b1", "at"),
    ] {
        let (status, _, body) = call(state(busy()), method, uri, token, Value::Null).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
    }
    let (status, _, _) = call(state(busy()), "GET", "/healthz", "", Value::Null).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn keys_and_the_registry_map_store_errors_the_same_way() {
    let busy = || StoreError::transient("database is locked");
    let tags = json!({"tags": {"org": "a", "team": "b", "cost_center": "c", "environment": "d"}});
    for (method, uri, token, body) in [
        ("GET", "/v1/keys/registry", "it", Value::Null),
        ("GET", "/v1/keys", "at", Value::Null),
        ("GET", "/v1/keys/k1", "at", Value::Null),
        ("POST", "/v1/keys", "at", tags),
        ("DELETE", "/v1/keys/k1", "at", Value::Null),
        (
            "POST",
            "/v1/keys/revoke",
            "at",
            json!({"tags": {"team": "b"}}),
        ),
    ] {
        let (status, retry_after, body) = call(state(busy()), method, uri, token, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {body}"
        );
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    let (status, _, _) = call(
        state(StoreError::internal("bug")),
        "GET",
        "/v1/keys/registry",
        "it",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_rejected_record_needs_no_store() {
    // Nothing valid to insert: the failing store is never called.
    let (status, _, body) = call(
        state(StoreError::transient("down")),
        "POST",
        "/v1/records",
        "it",
        json!({"records": [{"id": "bad"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["rejected"][0]["index"], 0);
}

#[tokio::test]
async fn a_query_beyond_retention_is_400_saying_why() {
    let beyond = StoreError::beyond_retention(
        "this query needs raw records from 2026-11-01T05:30:00Z, but raw records before \
         2026-11-03T05:00:00Z have been deleted by retention",
    );
    let uri = "/v1/usage?from=2026-11-01T05:30:00Z&to=2026-12-01T00:00:00Z";
    let (status, retry_after, body) = call(state(beyond), "GET", uri, "rt", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(retry_after, None);
    assert_eq!(body["error"]["code"], "beyond_retention");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deleted by retention")),
        "{body}"
    );
}
