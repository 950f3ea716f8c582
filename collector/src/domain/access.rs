//! Who may do what (CONTRACTS §9): the roles, THE table of every route and
//! the roles that may call it, API tokens as stored, and what a scoped
//! viewer may see. Plain logic: `http::auth` applies the table to every
//! request, `service::access` finds the caller's token.

use serde::Serialize;
use serde_json::{Map, Value};

use super::budgets::{scope_field, Scope, KEY_ID};
use super::usage_query::Dim;

/// A caller's role. `admin` may do everything; `finance` budgets, overrides,
/// the audit log and every read; `viewer` reads (possibly scoped to tag
/// values); `gateway` ingests and polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Finance,
    Viewer,
    Gateway,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Finance, Role::Viewer, Role::Gateway];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Viewer => "viewer",
            Role::Gateway => "gateway",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (liveness, metrics).
    Public,
    /// A token of one of these roles.
    Roles(&'static [Role]),
}

/// One row of the table: method, axum path pattern, who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn rule(method: &'static str, path: &'static str, roles: &'static [Role]) -> RouteRule {
    RouteRule {
        method,
        path,
        access: Access::Roles(roles),
    }
}

use Role::{Admin, Finance, Gateway, Viewer};
const EVERY_ROLE: &[Role] = &[Admin, Finance, Viewer, Gateway];
const READERS: &[Role] = &[Admin, Finance, Viewer];
const FINANCE: &[Role] = &[Admin, Finance];
const ADMIN: &[Role] = &[Admin];
const INGEST: &[Role] = &[Admin, Gateway];

/// THE table: every route of the collector and who may call it. `lib.rs`
/// routes only what is listed here and `http::auth` refuses a matched route
/// that is missing (deny by default); the role × route matrix test
/// (`tests/access_matrix.rs`) walks it.
pub const ROUTES: &[RouteRule] = &[
    RouteRule {
        method: "GET",
        path: "/healthz",
        access: Access::Public,
    },
    RouteRule {
        method: "GET",
        path: "/metrics",
        access: Access::Public,
    },
    // The API contract (domain::openapi), generated from this table.
    RouteRule {
        method: "GET",
        path: "/openapi.json",
        access: Access::Public,
    },
    // §12 the dashboard: its static assets are public (they hold no data);
    // every number it shows comes from the API below, with the user's token.
    RouteRule {
        method: "GET",
        path: "/ui",
        access: Access::Public,
    },
    RouteRule {
        method: "GET",
        path: "/ui/",
        access: Access::Public,
    },
    RouteRule {
        method: "GET",
        path: "/ui/app.js",
        access: Access::Public,
    },
    RouteRule {
        method: "GET",
        path: "/ui/app.css",
        access: Access::Public,
    },
    // Who am I: the caller's role, scope and the routes it may call (the
    // dashboard hides what the token may not read).
    rule("GET", "/v1/whoami", EVERY_ROLE),
    // §4 ingest and reads.
    rule("POST", "/v1/records", INGEST),
    rule("GET", "/v1/usage", READERS),
    // Gateways poll caps with their ingest token; every role may read them.
    rule("GET", "/v1/caps", EVERY_ROLE),
    // §6 budgets.
    rule("GET", "/v1/budgets", READERS),
    rule("POST", "/v1/budgets", FINANCE),
    rule("GET", "/v1/budgets/{id}", READERS),
    rule("PUT", "/v1/budgets/{id}", FINANCE),
    rule("DELETE", "/v1/budgets/{id}", FINANCE),
    rule("GET", "/v1/budgets/{id}/leases", READERS),
    // §9 tokens, audit, overrides.
    rule("POST", "/v1/tokens", ADMIN),
    rule("GET", "/v1/tokens", ADMIN),
    rule("DELETE", "/v1/tokens/{id}", ADMIN),
    rule("GET", "/v1/audit", FINANCE),
    rule("POST", "/v1/overrides", FINANCE),
    rule("GET", "/v1/overrides", FINANCE),
    rule("POST", "/v1/overrides/{id}/approve", FINANCE),
    // §8 virtual keys.
    rule("POST", "/v1/keys", ADMIN),
    rule("POST", "/v1/keys/revoke", ADMIN),
    rule("GET", "/v1/keys", FINANCE),
    rule("GET", "/v1/keys/registry", EVERY_ROLE),
    rule("GET", "/v1/keys/{key_id}", FINANCE),
    rule("PATCH", "/v1/keys/{key_id}", ADMIN),
    rule("POST", "/v1/keys/{key_id}/rotate", ADMIN),
    rule("DELETE", "/v1/keys/{key_id}", ADMIN),
    // §11 showback, chargeback, FOCUS, coverage.
    rule("GET", "/v1/gl-accounts", FINANCE),
    rule("PUT", "/v1/gl-accounts/{cost_center}", FINANCE),
    rule("GET", "/v1/closed-months", FINANCE),
    rule("POST", "/v1/closed-months", FINANCE),
    rule("GET", "/v1/export/chargeback", FINANCE),
    rule("GET", "/v1/export/focus", FINANCE),
    rule("GET", "/v1/reports/showback", READERS),
    rule("GET", "/v1/reports/unattributed", READERS),
    // §13 prices in time, reconciliation.
    rule("GET", "/v1/prices", READERS),
    rule("POST", "/v1/prices", ADMIN),
    rule("POST", "/v1/prices/recompute", ADMIN),
    rule("POST", "/v1/provider-usage", FINANCE),
    rule("GET", "/v1/reconciliation", READERS),
    // §10 alerts, forecast, webhooks.
    rule("GET", "/v1/forecast", READERS),
    rule("GET", "/v1/alerts", READERS),
    rule("POST", "/v1/alerts/{id}/ack", FINANCE),
    rule("POST", "/v1/webhooks", ADMIN),
    rule("GET", "/v1/webhooks", ADMIN),
    rule("DELETE", "/v1/webhooks/{id}", ADMIN),
    rule("GET", "/v1/webhooks/{id}/deliveries", ADMIN),
];

/// Lowercase hex of `bytes` (token secrets and hashes).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The rule of a matched route, by method and axum path pattern.
pub fn rule_for(method: &str, path: &str) -> Option<&'static RouteRule> {
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
}

/// Reports over every team, refused (403 `out_of_scope`) to a scoped token
/// by `service::finops` whatever its role: a scoped viewer reads its scope
/// from `/v1/usage` instead.
pub const WHOLE_FLEET_ROUTES: &[&str] = &["/v1/reports/showback", "/v1/reports/unattributed"];

/// The routes (`"METHOD /path"`) of the table `principal` may call: what
/// `GET /v1/whoami` answers, so a client hides what it may not read without
/// repeating the table. Public routes are left out.
pub fn allowed_routes(principal: &Principal) -> Vec<String> {
    ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Roles(roles) if principal.may(roles)))
        .filter(|r| principal.scope.is_none() || !WHOLE_FLEET_ROUTES.contains(&r.path))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// What the audit log names: a token id (`tok_…`), `bootstrap:<role>`
    /// or `anonymous` (only with `--insecure-no-auth`). Never a secret.
    pub actor: String,
    /// One role for a token; the roles left open for `anonymous`.
    pub roles: Vec<Role>,
    /// A scoped viewer's scope: everything it reads is narrowed to it.
    pub scope: Option<Scope>,
}

impl Principal {
    pub fn may(&self, allowed: &[Role]) -> bool {
        self.roles.iter().any(|r| allowed.contains(r))
    }

    /// Whether an approval by this caller counts as this role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// An API token as stored: only the sha256 of its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiToken {
    pub id: String,
    #[serde(skip)]
    pub sha256: [u8; 32],
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    pub label: String,
    #[serde(serialize_with = "ser_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "ser_opt_ms")]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "ser_opt_ms")]
    pub revoked_at: Option<i64>,
    pub created_by: String,
}

fn ser_ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::time::format_rfc3339_ms(*ms))
}

fn ser_opt_ms<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => ser_ms(ms, s),
        None => s.serialize_none(),
    }
}

impl ApiToken {
    /// Usable now: not revoked, not expired.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now_ms < at)
    }

    pub fn principal(&self) -> Principal {
        Principal {
            actor: self.id.clone(),
            roles: vec![self.role],
            scope: self.scope.clone(),
        }
    }
}

/// A validated `POST /v1/tokens` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    pub role: Role,
    pub scope: Option<Scope>,
    pub label: String,
    pub expires_at: Option<i64>,
}

const MAX_LABEL_LEN: usize = 200;

/// Validates `{"role","scope"?,"label","expires_at"?}`; the message names the field.
pub fn validate_new_token(body: &Value, now_ms: i64) -> Result<NewToken, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| String::from("body must be a JSON object"))?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "role" | "scope" | "label" | "expires_at"))
    {
        return Err(format!(
            "unknown field {unknown:?}: use role, scope, label, expires_at"
        ));
    }
    let role = obj
        .get("role")
        .and_then(Value::as_str)
        .and_then(Role::parse)
        .ok_or_else(|| String::from("field `role`: expected admin, finance, viewer or gateway"))?;
    let scope = match obj.get("scope") {
        None | Some(Value::Null) => None,
        Some(_) if role != Role::Viewer => {
            return Err(String::from(
                "field `scope`: only a viewer token can be scoped",
            ))
        }
        Some(_) => Some(scope_field(obj)?),
    };
    let label = obj
        .get("label")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.len() <= MAX_LABEL_LEN)
        .ok_or_else(|| format!("field `label`: expected a string of 1 to {MAX_LABEL_LEN} bytes"))?
        .to_owned();
    let expires_at = future_time(obj, "expires_at", now_ms, false)?;
    Ok(NewToken {
        role,
        scope,
        label,
        expires_at,
    })
}

/// An RFC 3339 time field that must lie after `now_ms`.
pub fn future_time(
    obj: &Map<String, Value>,
    field: &str,
    now_ms: i64,
    required: bool,
) -> Result<Option<i64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(format!("field `{field}` is required (RFC 3339)")),
        Some(v) => {
            let ms = v
                .as_str()
                .and_then(super::time::parse_rfc3339_ms)
                .ok_or_else(|| format!("field `{field}`: expected an RFC 3339 time"))?;
            if ms <= now_ms {
                return Err(format!("field `{field}` must be in the future"));
            }
            Ok(Some(ms))
        }
    }
}

/// A scoped viewer asked for something outside its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfScope(pub String);

/// Whether a budget lies inside a viewer's scope: the budget is at least as
/// narrow (it pins every pair of the viewer's scope to the same value).
pub fn budget_in_scope(viewer: &Scope, budget: &Scope) -> bool {
    viewer.iter().all(|(k, v)| budget.get(k) == Some(v))
}

fn dim_of_scope_key(key: &str) -> Dim {
    if key == KEY_ID {
        Dim::KeyId
    } else {
        Dim::Tag(key.to_owned())
    }
}

/// Narrows usage filters to a scope: a filter on a scope key must name the
/// scope's value (else `OutOfScope`), and every scope pair the query does
/// not filter on is added, so an unfiltered query answers the scope only.
pub fn scope_filters(
    scope: &Scope,
    mut filters: Vec<(Dim, String)>,
) -> Result<Vec<(Dim, String)>, OutOfScope> {
    for (key, value) in scope {
        let dim = dim_of_scope_key(key);
        let mut seen = false;
        for (d, v) in &filters {
            if *d == dim {
                if v != value {
                    return Err(OutOfScope(format!(
                        "this token sees only {key}={value}; filter.{key}={v} is outside it"
                    )));
                }
                seen = true;
            }
        }
        if !seen {
            filters.push((dim, value.clone()));
        }
    }
    Ok(filters)
}

#[cfg(test)]
mod tests;
