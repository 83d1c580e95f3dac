//! HTTP API.
use axum::Router;

use crate::server::AppState;

pub fn router(state: AppState) -> Router {
    Router::new().with_state(state)
}
