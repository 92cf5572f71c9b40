//! The one error shape every endpoint answers with:
//! `{"detail":{"error":{"code","message","recoverable","suggested_action","details"?}}}`.

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use penguin_api_store::StoreError;
use penguin_llm::LlmError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// The error envelope, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `{"error": {code, message, recoverable, suggested_action, details?}}`.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`NOT_FOUND`, `MODEL_NOT_CONFIGURED`, …).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Whether retrying (or fixing the request) can succeed.
    pub recoverable: bool,
    /// What to do about it.
    pub suggested_action: Option<String>,
    /// Structured extra information.
    pub details: Option<Value>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            recoverable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            suggested_action: None,
            details: None,
            retry_after: None,
        }
    }

    /// Adds a suggested action.
    pub fn suggest(mut self, action: impl Into<String>) -> Self {
        self.suggested_action = Some(action.into());
        self
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with a reason.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
            .suggest("Fix the request and send it again.")
    }

    /// 422: well-formed but invalid.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            message,
        )
        .suggest("Check the request fields against /api/openapi.json.")
    }

    /// 404 for a kind of thing and its id.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} {id:?} not found"),
        )
        .suggest(format!(
            "List the existing {what}s and use one of their ids."
        ))
    }

    /// 401 for a missing or wrong key.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILED", message)
            .suggest("Send a valid key in X-API-Key or Authorization: Bearer <key>.");
        err.recoverable = false;
        err
    }

    /// 429 after too many failed key checks; retry in `retry_after`.
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let secs = secs.max(1);
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many failed key checks from this address; retry in {secs} s"),
        )
        .suggest("Wait for Retry-After seconds, then send a valid key.")
        .with_details(json!({ "retry_after_secs": secs }));
        err.retry_after = Some(secs);
        err
    }

    /// 503 because no model provider is configured.
    pub fn model_not_configured() -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "MODEL_NOT_CONFIGURED",
            "no model provider is configured",
        )
        .suggest("Set PENGUIN_LLM_BASE_URL and PENGUIN_LLM_API_KEY (or OPENAI_API_KEY / OPENROUTER_API_KEY) and PENGUIN_DEFAULT_MODEL, then restart.");
        err.recoverable = false;
        err
    }

    /// 500 without internals.
    pub fn internal(context: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("internal error while {context}"),
        )
        .suggest("Retry later; if it persists, check the server logs.")
    }
}

impl ApiError {
    /// The error object `{code, message, recoverable, suggested_action,
    /// details?}`: inside `{"detail":{"error":…}}` in HTTP answers, and the
    /// `data` of a WebSocket `error` frame.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "recoverable": self.recoverable,
            "suggested_action": self.suggested_action,
        });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.body();
        let mut response =
            (self.status, Json(json!({ "detail": { "error": error } }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what, id } => ApiError::not_found(what, &id),
            StoreError::Conflict { what, id } => ApiError::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!("{what} {id:?} already exists"),
            ),
            StoreError::Invalid(reason) => ApiError::validation(reason),
            other => {
                tracing::error!(error = %other, "storage failed");
                ApiError::internal("using storage")
            }
        }
    }
}

impl From<LlmError> for ApiError {
    fn from(err: LlmError) -> Self {
        let message = penguin_telemetry::redact(&err.to_string()).into_owned();
        match err {
            LlmError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "UPSTREAM_TIMEOUT", message)
                    .suggest("The model provider was too slow; retry, or use a faster model.")
            }
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "UPSTREAM_ERROR", message)
                .suggest("Check the model provider's status and the configured model."),
        }
    }
}

/// `Json` whose rejections use the common error shape: malformed JSON is a
/// 400 with the parser's reason, JSON of the wrong shape a 422 with serde's.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `Query` whose rejections use the common error shape: 400 with the parser's
/// reason.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "Invalid query string: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Parses an optional JSON body: an empty body means `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::validation(e.to_string())
        } else {
            ApiError::bad_request(format!("Malformed JSON: {e}"))
        }
    })
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::validation(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("Malformed JSON: {}", e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => ApiError::new(e.status(), "BAD_REQUEST", e.body_text()),
        other => ApiError::bad_request(other.body_text()),
    }
}

/// The fallback for unknown routes.
pub async fn not_found_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {}", uri.path()),
    )
    .suggest("See /api/openapi.json for the available endpoints.")
}

/// Turns axum's plain-text 405 (and other bodyless rejections) into the common shape.
pub async fn error_shape(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.headers().get(header::CONTENT_TYPE).is_none()
    {
        let (parts, _) = response.into_parts();
        let mut shaped = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "this method is not allowed on this path",
        )
        .into_response();
        if let Some(allow) = parts.headers.get(header::ALLOW) {
            shaped.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return shaped;
    }
    response
}
