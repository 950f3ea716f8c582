//! The lease part of the store suite (SPEC §6, strict budgets): run on
//! every backend by `store_suite!`.

use std::sync::Arc;

use crate::domain::leases::{HostReport, LeasePolicy, LeaseRequest};
use crate::store::Store;

const NOW: i64 = 1_800_000_000_000;
const PERIOD: i64 = 1_799_000_000_000;

fn request(host: &str, report: HostReport, spend: f64, now: i64) -> LeaseRequest {
    LeaseRequest {
        budget_id: "b1".into(),
        period_start_ms: PERIOD,
        host: host.into(),
        spend_usd: spend,
        cap_usd: 10.0,
        report,
        now_ms: now,
        policy: LeasePolicy {
            ttl_ms: 5_000,
            floor_share: 0.5,
            burn_ttls: 2.0,
        },
    }
}

pub async fn leases_keep_base_plus_commitments_under_the_cap(store: &dyn Store) {
    assert_eq!(
        store
            .lease_totals("b1".into(), PERIOD)
            .await
            .expect("totals"),
        (0.0, 0.0)
    );
    // The first lease fixes the base at the spend recorded then (2 USD).
    let a = store
        .grant_lease(request("a", HostReport::default(), 2.0, NOW))
        .await
        .expect("grant a");
    assert_eq!(a.seq, 1);
    assert!((a.granted_usd - 4.0).abs() < 1e-9, "half of 10 - 2: {a:?}");
    // A later spend figure does not move the base of this period.
    let b = store
        .grant_lease(request("b", HostReport::default(), 9.0, NOW))
        .await
        .expect("grant b");
    assert!(
        (b.granted_usd - 2.0).abs() < 1e-9,
        "half of 10 - 2 - 4: {b:?}"
    );
    // Host a acknowledges, used 1 USD, and asks for more than there is.
    let asked = HostReport {
        seq: Some(1),
        used_usd: 1.0,
        demand_usd: 100.0,
    };
    let a2 = store
        .grant_lease(request("a", asked, 0.0, NOW + 1_000))
        .await
        .expect("renew a");
    assert_eq!(a2.seq, 2);
    assert!((a2.granted_usd - 6.0).abs() < 1e-9, "10 - 2 - 2: {a2:?}");
    assert_eq!(a2.expires_ms, NOW + 6_000);
    let (base, committed) = store
        .lease_totals("b1".into(), PERIOD)
        .await
        .expect("totals");
    assert_eq!(base, 2.0);
    assert!((committed - 8.0).abs() < 1e-9, "{committed}");
    // Another period starts from nothing.
    assert_eq!(
        store
            .lease_totals("b1".into(), PERIOD + 1)
            .await
            .expect("totals"),
        (0.0, 0.0)
    );
    // The period's leases, one per host, as granted last.
    let listed = store.list_leases("b1".into(), PERIOD).await.expect("list");
    let hosts: Vec<_> = listed.iter().map(|l| l.host.as_str()).collect();
    assert_eq!(hosts, ["a", "b"]);
    assert_eq!(listed[0].lease, a2);
    assert_eq!(listed[1].lease, b);
    assert!(store
        .list_leases("b1".into(), PERIOD + 1)
        .await
        .expect("list")
        .is_empty());
    assert!(store
        .list_leases("b2".into(), PERIOD)
        .await
        .expect("list")
        .is_empty());
}

/// Many hosts polling at once through one store (on PostgreSQL: several
/// pooled connections, like replicas) never commit more than the cap.
pub async fn concurrent_grants_never_over_grant(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for h in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut seq = None;
            for round in 0..5_i64 {
                let report = HostReport {
                    seq,
                    used_usd: 0.0,
                    demand_usd: 3.0,
                };
                let l = store
                    .grant_lease(request(&format!("h{h}"), report, 0.0, NOW + round * 100))
                    .await
                    .expect("grant");
                seq = Some(l.seq);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let (base, committed) = store
        .lease_totals("b1".into(), PERIOD)
        .await
        .expect("totals");
    assert_eq!(base, 0.0);
    assert!(committed <= 10.0 + 1e-9, "over-granted: {committed}");
    assert!(committed > 9.0, "the room was used: {committed}");
}
