//! `GET /metrics` in the Prometheus text exposition format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::service::finops::{coverage_metrics, spend_metrics};
use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (coverage, spend) = tokio::join!(coverage_metrics(&state), spend_metrics(&state));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render()
            + &state.caps.render_metrics()
            + &state.alerts.render_metrics()
            + &format!(
                "# HELP aispend_token_cache_loads_total Reads of the API token table \
                 (at most one per {} s, plus one after each local token change).\n\
                 # TYPE aispend_token_cache_loads_total counter\n\
                 aispend_token_cache_loads_total {}\n",
                crate::service::access::TOKEN_TTL.as_secs(),
                state.token_cache.loads()
            )
            + &coverage
            + &spend,
    )
}
