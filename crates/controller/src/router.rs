//! Every route of the API, in one place.

use crate::{auth, handlers, openapi, AppState};
use axum::routing::{get, post};
use axum::Router;

/// The whole application. `/healthz` and `/openapi.json` answer without a
/// credential; everything under `/api/v1` requires one.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/info", get(handlers::info::get))
        .route("/cluster/join-tokens", get(handlers::cluster::join_tokens))
        .route(
            "/cluster/join-tokens/rotate",
            post(handlers::cluster::rotate_join_token),
        )
        .route("/cluster", get(handlers::cluster::inspect))
        .route("/cluster/update", post(handlers::cluster::update))
        .route("/cluster/ca", get(handlers::cluster::ca))
        .route("/cluster/ca/rotate", post(handlers::cluster::rotate_ca))
        .route("/nodes", get(handlers::nodes::list))
        .route(
            "/nodes/{id}",
            get(handlers::nodes::inspect).delete(handlers::nodes::remove),
        )
        .route("/nodes/{id}/update", post(handlers::nodes::update))
        .route(
            "/services",
            get(handlers::services::list).post(handlers::services::create),
        )
        .route(
            "/services/{id}",
            get(handlers::services::inspect).delete(handlers::services::remove),
        )
        .route("/services/{id}/update", post(handlers::services::update))
        .route(
            "/services/{id}/rollback",
            post(handlers::services::rollback),
        )
        .route("/services/{id}/logs", get(handlers::services::logs))
        .route("/tasks", get(handlers::tasks::list))
        .route("/tasks/{id}", get(handlers::tasks::inspect))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::document))
        .nest("/api/v1", v1)
        .with_state(state)
}
