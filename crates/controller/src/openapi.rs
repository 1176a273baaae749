//! The OpenAPI document of the API, served at the stable path `/openapi.json`.

use crate::handlers;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "berth API", description = "The controller's HTTPS API. Authenticate with `Authorization: Bearer <token>`."),
    paths(
        handlers::info::get,
        handlers::cluster::join_tokens,
        handlers::cluster::rotate_join_token,
        handlers::cluster::inspect,
        handlers::cluster::update,
        handlers::cluster::ca,
        handlers::cluster::rotate_ca,
        handlers::nodes::list,
        handlers::nodes::inspect,
        handlers::nodes::update,
        handlers::nodes::remove,
        handlers::services::list,
        handlers::services::create,
        handlers::services::inspect,
        handlers::services::update,
        handlers::services::rollback,
        handlers::services::remove,
        handlers::services::logs,
        handlers::tasks::list,
        handlers::tasks::inspect,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
