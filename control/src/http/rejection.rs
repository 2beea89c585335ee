//! `Query` and `Form` extractors whose rejections are `ApiError`s, like
//! [`super::json::Json`]: a query string or form that does not parse is a
//! 400 with the JSON error body the API documents, never axum's plain-text default.

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| bad_request("invalid_query", rejection.body_text()))
    }
}

pub struct Form<T>(pub T);

/// axum's default body limit.
const FORM_LIMIT_BYTES: usize = 2 * 1024 * 1024;

impl<S, T> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::FormRejection;
        // Forms are small (Twilio's callbacks): look for an encoded NUL before parsing.
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, FORM_LIMIT_BYTES)
            .await
            .map_err(|_| ApiError::bad_request("the form is too large or was cut off"))?;
        if bytes.windows(3).any(|w| w == b"%00") {
            return Err(ApiError::BadRequest {
                code: "nul_character",
                message: "the form contains a NUL character (%00)".into(),
            });
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::extract::Form::<T>::from_request(req, state).await {
            Ok(axum::extract::Form(value)) => Ok(Form(value)),
            Err(FormRejection::InvalidFormContentType(_)) => Err(ApiError::BadRequest {
                code: "unsupported_media_type",
                message: "send the body as Content-Type: application/x-www-form-urlencoded".into(),
            }),
            Err(rejection) => Err(bad_request("invalid_form", rejection.body_text())),
        }
    }
}

/// axum's own explanation (which names the field and what was wrong), as a JSON 400.
fn bad_request(code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest { code, message }
}

/// Postgres text cannot hold NUL, so a `\0` anywhere in a request would reach the database
/// as a 500 there and be stored on SQLite: it is refused up front, on both. The path and
/// query are checked here (a layer over every route), JSON bodies in [`super::json::Json`]
/// and forms in [`Form`].
pub async fn refuse_nul_in_uri(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = req.uri();
    let raw = uri.path_and_query().map(|p| p.as_str()).unwrap_or_default();
    if raw.contains("%00") {
        return ApiError::BadRequest {
            code: "nul_character",
            message: "the path or query contains a NUL character (%00)".into(),
        }
        .into_response();
    }
    next.run(req).await
}

/// True if any string (or object key) in `value` contains a NUL character.
pub fn has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

pub fn nul_in_body() -> ApiError {
    ApiError::BadRequest {
        code: "nul_character",
        message: "the body contains a NUL character (\\u0000), which no field accepts".into(),
    }
}
