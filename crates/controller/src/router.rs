//! Every route of the API, in one place.

use crate::{authn, handlers, openapi, AppState};
use axum::routing::{delete, get, post};
use axum::Router;

/// The whole application. `/healthz`, `/openapi.json`, `/ca` and the login
/// answer without a credential; everything else under `/api/v1` requires one.
pub fn app(state: AppState) -> Router {
    use handlers::{access, identity, session};
    // Cluster-wide settings and secrets: admins only.
    let admin = Router::new()
        .route("/cluster/join-tokens", get(handlers::cluster::join_tokens))
        .route(
            "/cluster/join-tokens/rotate",
            post(handlers::cluster::rotate_join_token),
        )
        .route("/cluster", get(handlers::cluster::inspect))
        .route("/cluster/update", post(handlers::cluster::update))
        .route("/cluster/ca", get(handlers::cluster::ca))
        .route("/cluster/ca/rotate", post(handlers::cluster::rotate_ca))
        .route(
            "/auth/settings",
            get(handlers::cluster::auth_settings).post(handlers::cluster::set_auth_settings),
        )
        .route("/auth/ldap/sync", post(handlers::cluster::ldap_sync))
        .route("/auth/ldap/status", get(handlers::cluster::ldap_status))
        .route("/audit", get(handlers::audit::list))
        .route_layer(axum::middleware::from_fn(authn::admin_only));
    let v1 = Router::new()
        .route("/auth/logout", post(session::logout))
        .route("/auth/whoami", get(session::whoami))
        .route(
            "/tokens",
            get(session::list_tokens).post(session::create_token),
        )
        .route("/tokens/{name}", delete(session::remove_token))
        .route(
            "/bundles",
            get(handlers::bundles::list).post(handlers::bundles::create),
        )
        .route("/bundles/{label}", delete(handlers::bundles::remove))
        .route(
            "/users",
            get(identity::list_users).post(identity::create_user),
        )
        .route(
            "/users/{name}",
            get(identity::inspect_user).delete(identity::remove_user),
        )
        .route("/users/{name}/update", post(identity::update_user))
        .route("/users/{name}/password", post(identity::set_password))
        .route("/orgs", get(identity::list_orgs).post(identity::create_org))
        .route(
            "/orgs/{name}",
            get(identity::inspect_org).delete(identity::remove_org),
        )
        .route(
            "/teams/{org}",
            get(identity::list_teams).post(identity::create_team),
        )
        .route(
            "/teams/{org}/{team}",
            get(identity::inspect_team).delete(identity::remove_team),
        )
        .route("/teams/{org}/{team}/members", post(identity::add_member))
        .route(
            "/teams/{org}/{team}/members/{user}",
            delete(identity::remove_member),
        )
        .route(
            "/collections",
            get(access::list_collections).post(access::create_collection),
        )
        .route(
            "/collections/{*path}",
            get(access::inspect_collection).delete(access::remove_collection),
        )
        .route("/roles", get(access::list_roles).post(access::create_role))
        .route("/roles/operations", get(access::list_operations))
        .route("/roles/{name}", delete(access::remove_role))
        .route(
            "/grants",
            get(access::list_grants).post(access::create_grant),
        )
        .route("/grants/{id}", delete(access::remove_grant))
        .route("/info", get(handlers::info::get))
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
        .merge(admin)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ))
        .route("/auth/login", post(session::login))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            handlers::audit::record,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::document))
        .route("/ca", get(handlers::cluster::trust_pem))
        .nest("/api/v1", v1)
        .with_state(state)
}
