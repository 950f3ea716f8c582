//! The audit log is append-only for the collector: it works under a
//! database role that has no UPDATE, DELETE or TRUNCATE on `audit_log`
//! (the grants the README's "Security" section gives).

use super::schema;
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::store::postgres::PostgresStore;
use crate::store::Store;

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn the_collector_works_without_update_or_delete_on_the_audit_log() {
    let schema = schema().await;
    let owner_url = schema.url();
    // The owner migrates, as a deployment's migration role would.
    PostgresStore::connect(&owner_url).await.expect("migrate");
    let role = format!("{}_app", schema.name);
    let s = &schema.name;
    let owner = client(&owner_url).await;
    owner
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT USAGE, CREATE ON SCHEMA {s} TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role};
             REVOKE UPDATE, DELETE, TRUNCATE ON {s}.audit_log FROM {role};"
        ))
        .await
        .expect("roles");
    let app_url = format!("{owner_url}&user={role}");
    let outcome = async {
        let store = PostgresStore::connect(&app_url)
            .await
            .expect("app role connects");
        let entry = AuditEntry {
            seq: 0,
            at: 1,
            actor: "bootstrap:admin".into(),
            action: "budget.create".into(),
            target: "budget:b1".into(),
            before: None,
            after: Some(serde_json::json!({"id": "b1"})),
            request_id: "req_1".into(),
        };
        store.append_audit(entry).await.expect("insert is granted");
        let listed = store
            .list_audit(AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .expect("select is granted");
        assert_eq!(listed.len(), 1);
        let app = client(&app_url).await;
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ] {
            let err = app.batch_execute(sql).await.expect_err(sql);
            assert!(
                err.to_string().contains("permission denied")
                    || format!("{err:?}").contains("InsufficientPrivilege")
                    || format!("{err:?}").contains("42501"),
                "{sql}: {err:?}"
            );
        }
        store.close().await.expect("close");
    }
    .await;
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await
        .expect("drop role");
    outcome
}
