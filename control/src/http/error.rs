//! `ApiError`: every failure an API request can end in, as an HTTP outcome with the JSON
//! body `{"error":{"code","message","details"}}`. Internals are logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vocalized_shared::call_settings::FieldError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON, or a field has the wrong type.
    BadRequest { code: &'static str, message: String },
    /// 401: no credentials, or they are invalid or expired.
    Unauthorized(&'static str),
    /// 403: authenticated, but this role may not do this.
    Forbidden(&'static str),
    /// 404: no such resource (also what another tenant's resource looks like).
    NotFound(&'static str),
    /// 409: the request conflicts with current state (e.g. the email is taken).
    Conflict { code: &'static str, message: String },
    /// 422: well-formed but invalid; every bad field is listed.
    Validation(Vec<FieldError>),
    /// 429: rate limited; retry after this many seconds.
    TooManyRequests { retry_after_secs: u64 },
    /// 500: our fault. The cause is logged with a reference the user can quote.
    Internal(anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

/// True if `e` is a unique-constraint violation (the caller maps it to a 409 instead of
/// racing a pre-check).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn body(code: &str, message: &str, details: Value) -> Value {
    json!({ "error": { "code": code, "message": message, "details": details } })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, value) = match &self {
            ApiError::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, body(code, message, Value::Null))
            }
            ApiError::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                body("unauthorized", message, Value::Null),
            ),
            ApiError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                body("forbidden", message, Value::Null),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                body("not_found", &format!("{what} not found"), Value::Null),
            ),
            ApiError::Conflict { code, message } => {
                (StatusCode::CONFLICT, body(code, message, Value::Null))
            }
            ApiError::Validation(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                body(
                    "validation_failed",
                    "some fields are invalid",
                    json!({ "fields": fields }),
                ),
            ),
            ApiError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                body(
                    "rate_limited",
                    "too many requests; try again later",
                    json!({ "retry_after_secs": retry_after_secs }),
                ),
            ),
            ApiError::Internal(cause) => {
                let reference = crate::util::new_id("err");
                tracing::error!(reference, error = ?cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    body(
                        "internal",
                        "something went wrong on our side",
                        json!({ "reference": reference }),
                    ),
                )
            }
        };
        let mut response = (status, axum::Json(value)).into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
