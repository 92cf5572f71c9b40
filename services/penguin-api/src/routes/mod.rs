//! Every route, and the OpenAPI document generated from their annotations.

pub mod agents;
pub mod chat;
pub mod conversations;
pub mod github_webhook;
pub mod health;
pub mod session;
pub mod system;
pub mod tasks;
pub mod upload;

use crate::state::AppState;
use axum::{extract::DefaultBodyLimit, routing::get, Router};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

/// Multipart framing allowed on top of the upload limit.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Penguin API", description = "The Penguin web API: chat, conversations and their history, agents, checkpoints, models, tasks, uploads."),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&SecurityAddon),
    security(("api_key" = []), ("bearer" = [])),
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes and their OpenAPI document.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let upload_limit = state.settings.max_upload_bytes + MULTIPART_OVERHEAD;
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(session::create, session::delete))
        .routes(routes!(chat::message))
        .routes(routes!(chat::stream))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::get))
        .routes(routes!(conversations::create))
        .routes(routes!(conversations::history))
        .routes(routes!(agents::list))
        .routes(routes!(agents::get))
        .routes(routes!(conversations::create_checkpoint))
        .routes(routes!(conversations::list_checkpoints))
        .routes(routes!(conversations::rollback))
        .routes(routes!(conversations::branch))
        .routes(routes!(system::capabilities))
        .routes(routes!(system::status))
        .routes(routes!(system::info))
        .routes(routes!(system::models))
        .routes(routes!(system::current_model))
        .routes(routes!(system::switch_model))
        .routes(routes!(tasks::execute_sync))
        .routes(routes!(tasks::execute))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::stream))
        .split_for_parts();
    let router = router
        .route(
            "/api/v1/upload",
            axum::routing::post(upload::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/v1/integrations/github/webhook",
            axum::routing::post(github_webhook::receive)
                .layer(DefaultBodyLimit::max(penguin_bot::ingress::MAX_BODY)),
        )
        .route("/metrics", get(metrics))
        // Liveness: 200 while the process serves, even when degraded (a
        // restart would not bring the storage or the tokenator back).
        .route("/healthz", get(|| async { "ok\n" }));
    let mut openapi = openapi;
    // The upload and webhook routes carry their own body limits, so they are
    // added outside the OpenApiRouter; their path items are merged by hand.
    let upload_doc = OpenApiRouter::<AppState>::new()
        .routes(routes!(upload::upload))
        .split_for_parts()
        .1;
    openapi.merge(upload_doc);
    (router, openapi)
}

/// `GET /metrics`: the bot's Prometheus metrics.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.bot.metrics.encode(),
    )
}

/// `/api/openapi.json` and the docs UI at `/api/docs` (assets embedded at build time).
pub fn docs(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::from(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
}

/// A WebSocket frame as the chat and task streams send them: `{event, data}`.
pub(crate) fn frame(event: &str, data: serde_json::Value) -> axum::extract::ws::Message {
    axum::extract::ws::Message::Text(
        serde_json::json!({ "event": event, "data": data })
            .to_string()
            .into(),
    )
}

/// A boolean query parameter as Penguin's clients send them: true/false,
/// 1/0, yes/no, on/off (any case); anything else is a 400 naming it.
pub(crate) fn query_bool(name: &str, value: &str) -> Result<bool, crate::error::ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(crate::error::ApiError::bad_request(format!(
            "{name} must be true or false, not {value:?}"
        ))
        .with_details(serde_json::json!({ "parameter": name }))),
    }
}
