//! `GET /openapi.json`: the API contract, generated from the route table
//! (`domain::openapi`), listing the routes this build serves.

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use crate::state::AppState;

pub async fn openapi(State(state): State<AppState>) -> Json<Value> {
    let served: Vec<(&str, &str)> = crate::served_routes(&state)
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    Json(crate::domain::openapi::document(&|m, p| {
        served.contains(&(m, p))
    }))
}
