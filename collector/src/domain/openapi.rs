//! The collector's OpenAPI 3 document, generated from THE route table
//! (`domain::access::ROUTES`) plus one `Op` per route below, served at
//! `GET /openapi.json`. Every row of `ROUTES` must have an `Op` and every
//! `Op` a row (the tests fail otherwise), so the document cannot drift from
//! the routes the collector serves.

use serde_json::{json, Map, Value};

use super::access::{Access, ROUTES};

/// What a route answers on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// A JSON object or array (list routes that wrap or not by query).
    Json,
    /// Prometheus text.
    Text,
    /// CSV (or JSON, by `format`).
    Export,
    /// No body.
    Empty,
    /// A static asset of the dashboard, of this media type.
    Asset(&'static str),
}

/// Per-route schema information the route table does not carry.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Query parameters (all optional strings unless listed in `required`).
    pub query: &'static [&'static str],
    pub required: &'static [&'static str],
    /// Whether the route takes a JSON request body.
    pub json_body: bool,
    pub ok: u16,
    pub body: Body,
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    ok: u16,
    body: Body,
) -> Op {
    Op {
        method,
        path,
        summary,
        query: &[],
        required: &[],
        json_body: false,
        ok,
        body,
    }
}

const fn with_body(mut o: Op) -> Op {
    o.json_body = true;
    o
}

const fn with_query(
    mut o: Op,
    query: &'static [&'static str],
    required: &'static [&'static str],
) -> Op {
    o.query = query;
    o.required = required;
    o
}

use Body::{Array, Asset, Empty, Export, Json, Object, Text};

const USAGE_QUERY: &[&str] = &[
    "from",
    "to",
    "group_by",
    "provider",
    "model",
    "operation",
    "team",
    "project",
    "org",
    "cost_center",
    "environment",
    "key_id",
    "feature",
];

/// One entry per row of `ROUTES` (same method and path).
pub const OPS: &[Op] = &[
    op("GET", "/healthz", "Liveness and store health", 200, Object),
    op("GET", "/metrics", "Prometheus metrics", 200, Text),
    op("GET", "/openapi.json", "This OpenAPI document", 200, Object),
    op(
        "GET",
        "/ui",
        "The dashboard's page",
        200,
        Asset("text/html"),
    ),
    op(
        "GET",
        "/ui/",
        "The dashboard's page",
        200,
        Asset("text/html"),
    ),
    op(
        "GET",
        "/ui/app.js",
        "The dashboard's script",
        200,
        Asset("text/javascript"),
    ),
    op(
        "GET",
        "/ui/app.css",
        "The dashboard's style sheet",
        200,
        Asset("text/css"),
    ),
    op(
        "GET",
        "/v1/whoami",
        "The caller: role, scope, callable routes",
        200,
        Object,
    ),
    with_body(op(
        "POST",
        "/v1/records",
        "Ingest a batch of usage records (gateway)",
        200,
        Object,
    )),
    with_query(
        op(
            "GET",
            "/v1/usage",
            "Usage and cost, grouped and filtered",
            200,
            Object,
        ),
        USAGE_QUERY,
        &["from", "to"],
    ),
    op(
        "GET",
        "/v1/caps",
        "Budget caps the gateways enforce",
        200,
        Json,
    ),
    op("GET", "/v1/budgets", "List budgets", 200, Json),
    with_body(op("POST", "/v1/budgets", "Create a budget", 201, Object)),
    op("GET", "/v1/budgets/{id}", "One budget", 200, Object),
    with_body(op(
        "PUT",
        "/v1/budgets/{id}",
        "Replace a budget",
        200,
        Object,
    )),
    op("DELETE", "/v1/budgets/{id}", "Delete a budget", 204, Empty),
    op(
        "GET",
        "/v1/budgets/{id}/leases",
        "Where a strict budget's cap is held: each gateway host's lease",
        200,
        Object,
    ),
    with_body(op(
        "POST",
        "/v1/tokens",
        "Issue an API token (secret shown once)",
        201,
        Object,
    )),
    op(
        "GET",
        "/v1/tokens",
        "List API tokens (no secrets)",
        200,
        Json,
    ),
    op(
        "DELETE",
        "/v1/tokens/{id}",
        "Revoke an API token",
        204,
        Empty,
    ),
    op("GET", "/v1/audit", "The audit log", 200, Json),
    with_body(op(
        "POST",
        "/v1/overrides",
        "Request a budget override",
        201,
        Object,
    )),
    op("GET", "/v1/overrides", "List overrides", 200, Json),
    op(
        "POST",
        "/v1/overrides/{id}/approve",
        "Approve an override",
        200,
        Object,
    ),
    with_body(op(
        "POST",
        "/v1/keys",
        "Issue a virtual key (secret shown once)",
        201,
        Object,
    )),
    with_body(op(
        "POST",
        "/v1/keys/revoke",
        "Revoke the keys matching tags",
        200,
        Object,
    )),
    op("GET", "/v1/keys", "List virtual keys", 200, Json),
    op(
        "GET",
        "/v1/keys/registry",
        "The key registry the gateways poll",
        200,
        Object,
    ),
    op("GET", "/v1/keys/{key_id}", "One virtual key", 200, Object),
    with_body(op(
        "PATCH",
        "/v1/keys/{key_id}",
        "Change a virtual key",
        200,
        Object,
    )),
    op(
        "POST",
        "/v1/keys/{key_id}/rotate",
        "Rotate a virtual key",
        200,
        Object,
    ),
    op(
        "DELETE",
        "/v1/keys/{key_id}",
        "Revoke a virtual key",
        200,
        Object,
    ),
    op(
        "GET",
        "/v1/gl-accounts",
        "GL accounts by cost center",
        200,
        Json,
    ),
    with_body(op(
        "PUT",
        "/v1/gl-accounts/{cost_center}",
        "Set a cost center's GL account",
        200,
        Object,
    )),
    op("GET", "/v1/closed-months", "Closed months", 200, Json),
    with_body(op(
        "POST",
        "/v1/closed-months",
        "Close a month",
        200,
        Object,
    )),
    with_query(
        op(
            "GET",
            "/v1/export/chargeback",
            "Chargeback export",
            200,
            Export,
        ),
        &["month", "format"],
        &[],
    ),
    with_query(
        op("GET", "/v1/export/focus", "FOCUS export", 200, Export),
        &["from", "to", "format"],
        &[],
    ),
    with_query(
        op(
            "GET",
            "/v1/reports/showback",
            "Showback report",
            200,
            Object,
        ),
        &["month", "group_by"],
        &[],
    ),
    with_query(
        op(
            "GET",
            "/v1/reports/unattributed",
            "Unattributed spend",
            200,
            Object,
        ),
        &["from", "to"],
        &[],
    ),
    with_query(
        op("GET", "/v1/prices", "Prices in time", 200, Object),
        &["provider", "model", "at"],
        &[],
    ),
    with_body(op(
        "POST",
        "/v1/prices",
        "Add price changes and discounts",
        201,
        Object,
    )),
    with_query(
        op(
            "POST",
            "/v1/prices/recompute",
            "Reprice a range of records",
            200,
            Object,
        ),
        &["from", "to"],
        &["from", "to"],
    ),
    with_query(
        with_body(op(
            "POST",
            "/v1/provider-usage",
            "Import a provider's usage or cost export",
            200,
            Object,
        )),
        &["provider"],
        &["provider"],
    ),
    with_query(
        op(
            "GET",
            "/v1/reconciliation",
            "Gateway-measured vs provider-billed, per provider, model and day",
            200,
            Object,
        ),
        &["month"],
        &["month"],
    ),
    op(
        "GET",
        "/v1/forecast",
        "Spend forecast per budget",
        200,
        Json,
    ),
    op("GET", "/v1/alerts", "Budget alerts", 200, Json),
    op(
        "POST",
        "/v1/alerts/{id}/ack",
        "Acknowledge an alert",
        200,
        Object,
    ),
    with_body(op(
        "POST",
        "/v1/webhooks",
        "Register a webhook (secret shown once)",
        201,
        Object,
    )),
    op("GET", "/v1/webhooks", "List webhooks", 200, Json),
    op(
        "DELETE",
        "/v1/webhooks/{id}",
        "Delete a webhook",
        204,
        Empty,
    ),
    op(
        "GET",
        "/v1/webhooks/{id}/deliveries",
        "A webhook's deliveries",
        200,
        Json,
    ),
];

/// The `Op` of a route, if described.
pub fn op_for(method: &str, path: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.method == method && o.path == path)
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}
    })
}

fn success(o: &Op) -> Value {
    let json_of = |schema: Value| json!({"description": o.summary, "content": {"application/json": {"schema": schema}}});
    match o.body {
        Object => json_of(json!({"type": "object"})),
        Array => json_of(json!({"type": "array"})),
        Json => json_of(json!({"type": ["object", "array"]})),
        Text => {
            json!({"description": o.summary, "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        Export => json!({"description": o.summary, "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": ["object", "array"]}}}}),
        Empty => json!({"description": o.summary}),
        Asset(media) => {
            json!({"description": o.summary, "content": {media: {"schema": {"type": "string"}}}})
        }
    }
}

fn operation(rule_public: bool, o: &Op) -> Value {
    let mut params: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    params.extend(o.query.iter().map(|q| {
        json!({"name": q, "in": "query", "required": o.required.contains(q), "schema": {"type": "string"}})
    }));
    let mut responses = Map::new();
    responses.insert(o.ok.to_string(), success(o));
    responses.insert(
        "default".into(),
        json!({"description": "An error", "content": {"application/json": {"schema": error_schema()}}}),
    );
    if o.path == "/healthz" {
        responses.insert(
            "503".into(),
            json!({"description": "The store does not answer", "content": {"application/json": {"schema": {"type": "object"}}}}),
        );
    }
    let mut out = json!({
        "operationId": format!("{} {}", o.method, o.path),
        "summary": o.summary,
        "parameters": params,
        "responses": responses,
    });
    if o.json_body {
        out["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    }
    if rule_public {
        out["security"] = json!([]);
    }
    out
}

/// The document: one operation per row of `ROUTES` this build serves
/// (`served` says which), described by its `Op`. A row without an `Op` is
/// still listed (summary "undocumented"), so the document never omits a route.
pub fn document(served: &dyn Fn(&str, &str) -> bool) -> Value {
    let mut paths = Map::new();
    for rule in ROUTES.iter().filter(|r| served(r.method, r.path)) {
        let fallback = op(rule.method, rule.path, "undocumented", 200, Json);
        let o = op_for(rule.method, rule.path).copied().unwrap_or(fallback);
        let entry = paths
            .entry(rule.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(map) = entry.as_object_mut() {
            map.insert(
                rule.method.to_ascii_lowercase(),
                operation(matches!(rule.access, Access::Public), &o),
            );
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "aispend collector", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn all(_: &str, _: &str) -> bool {
        true
    }

    #[test]
    fn every_route_has_an_op_and_every_op_a_route() {
        let routes: BTreeSet<_> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
        let ops: BTreeSet<_> = OPS.iter().map(|o| (o.method, o.path)).collect();
        assert_eq!(OPS.len(), ops.len(), "an Op is listed twice");
        let missing: Vec<_> = routes.difference(&ops).collect();
        let stale: Vec<_> = ops.difference(&routes).collect();
        assert!(missing.is_empty(), "ROUTES rows without an Op: {missing:?}");
        assert!(stale.is_empty(), "Ops without a ROUTES row: {stale:?}");
    }

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = document(&all);
        let mut listed = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                listed.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let routes: BTreeSet<_> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(listed, routes);
    }

    #[test]
    fn path_parameters_public_routes_and_bodies_are_described() {
        let doc = document(&all);
        let rotate = &doc["paths"]["/v1/keys/{key_id}/rotate"]["post"];
        assert_eq!(rotate["parameters"][0]["name"], "key_id");
        assert_eq!(rotate["parameters"][0]["in"], "path");
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        let page = &doc["paths"]["/ui/"]["get"]["responses"]["200"]["content"];
        assert!(page.get("text/html").is_some(), "{page}");
        assert_eq!(doc["paths"]["/ui/app.js"]["get"]["security"], json!([]));
        assert!(
            doc["paths"]["/v1/usage"]["get"].get("security").is_none(),
            "protected by the global bearer"
        );
        assert!(doc["paths"]["/v1/budgets"]["post"]["requestBody"].is_object());
        assert_eq!(
            doc["paths"]["/v1/usage"]["get"]["parameters"][0]["required"],
            true
        );
        let unserved = document(&|_, p| p != "/v1/usage");
        assert!(unserved["paths"].get("/v1/usage").is_none());
    }
}
