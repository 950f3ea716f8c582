use serde_json::json;

use super::*;

fn who(actor: &str, roles: &[Role]) -> Principal {
    Principal {
        actor: actor.into(),
        roles: roles.to_vec(),
        scope: None,
    }
}

fn pending() -> Override {
    Override {
        id: "ovr_1".into(),
        budget_id: "b1".into(),
        amount_usd: 5.0,
        expires_at: 1_000,
        reason: "incident".into(),
        requested_by: "tok_req".into(),
        created_at: 0,
        approvals: Vec::new(),
    }
}

#[test]
fn active_after_finance_and_admin_other_than_the_requester() {
    let mut o = pending();
    assert_eq!(
        o.approval_by(&who("tok_req", &[Role::Finance]), 10),
        Err(Refusal::SelfApproval)
    );
    assert_eq!(
        o.approval_by(&who("tok_v", &[Role::Viewer]), 10),
        Err(Refusal::Role)
    );
    let first = o
        .approval_by(&who("tok_fin", &[Role::Finance]), 10)
        .expect("finance approves");
    assert_eq!(first.role, Role::Finance);
    o.approvals.push(first);
    assert_eq!(o.state(10), OverrideState::Pending);
    assert!(matches!(
        o.approval_by(&who("tok_fin", &[Role::Finance]), 11),
        Err(Refusal::Conflict(m)) if m.contains("already approved")
    ));
    assert!(matches!(
        o.approval_by(&who("tok_fin2", &[Role::Finance]), 11),
        Err(Refusal::Conflict(m)) if m.contains("admin")
    ));
    let second = o
        .approval_by(&who("bootstrap:admin", &[Role::Admin]), 12)
        .expect("admin approves");
    o.approvals.push(second);
    assert_eq!(o.state(12), OverrideState::Active);
    assert_eq!(active_extras(&[o.clone()], 999).get("b1"), Some(&5.0));
    assert_eq!(o.state(1_000), OverrideState::Expired);
    assert!(active_extras(&[o.clone()], 1_000).is_empty());
    assert!(matches!(
        o.approval_by(&who("tok_x", &[Role::Admin]), 1_000),
        Err(Refusal::Conflict(m)) if m.contains("expired")
    ));
}

#[test]
fn extras_add_up_per_budget_and_ignore_pending() {
    let mut a = pending();
    a.approvals = vec![
        Approval {
            actor: "f".into(),
            role: Role::Finance,
            at: 1,
        },
        Approval {
            actor: "a".into(),
            role: Role::Admin,
            at: 2,
        },
    ];
    let mut b = a.clone();
    b.id = "ovr_2".into();
    b.amount_usd = 2.5;
    let extras = active_extras(&[a, b, pending()], 5);
    assert_eq!(extras.get("b1"), Some(&7.5));
}

#[test]
fn override_bodies_are_validated() {
    let now = 0;
    let ok = validate_new_override(
        &json!({"budget_id": "b1", "amount_usd": 10, "expires_at": "2030-01-01T00:00:00Z",
                "reason": "launch"}),
        now,
    )
    .expect("valid");
    assert_eq!((ok.budget_id.as_str(), ok.amount_usd), ("b1", 10.0));
    let base = json!({"budget_id": "b1", "amount_usd": 10, "expires_at": "2030-01-01T00:00:00Z",
                      "reason": "launch"});
    for (field, bad) in [
        ("budget_id", json!("")),
        ("amount_usd", json!(0)),
        ("amount_usd", json!("10")),
        ("expires_at", json!("1969-01-01T00:00:00Z")),
        ("expires_at", json!(null)),
        ("reason", json!("  ")),
    ] {
        let mut body = base.clone();
        body[field] = bad;
        let err = validate_new_override(&body, now).expect_err(field);
        assert!(err.contains(field), "{field}: {err}");
    }
    let mut extra = base.clone();
    extra["approved"] = json!(true);
    assert!(validate_new_override(&extra, now).is_err());
}
