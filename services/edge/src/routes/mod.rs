//! HTTP resources, one module each, merged in one place.

pub mod events;
pub mod health;

use std::sync::Arc;

use axum::Router;

use crate::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().merge(events::router()).merge(health::router()).with_state(state)
}
