//! `Query`, `Form` and `Path` extractors whose rejections are `ApiError`s, like
//! [`super::json::Json`]: a query string, form or path segment that does not parse is a
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

pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| bad_request("invalid_path", rejection.body_text()))
    }
}

pub struct Form<T>(pub T);

impl<S, T> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::FormRejection;
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
