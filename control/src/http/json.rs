//! A JSON body extractor whose rejections are `ApiError`s: a body that is not JSON, or
//! whose fields have the wrong types, is a 400 with serde's explanation, never axum's
//! plain-text default.

use super::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            // serde reads a struct from an array too (its fields in order): `[null]` was
            // taken for `{}`. Every body this API takes is an object.
            Ok(axum::Json(value)) if !value.is_object() => Err(ApiError::BadRequest {
                code: "invalid_body",
                message: "the body must be a JSON object".into(),
            }),
            Ok(axum::Json(value)) if super::rejection::has_nul(&value) => {
                Err(super::rejection::nul_in_body())
            }
            Ok(axum::Json(value)) => {
                serde_json::from_value::<T>(value)
                    .map(Json)
                    .map_err(|e| ApiError::BadRequest {
                        code: "invalid_body",
                        message: format!("the body has the wrong shape: {e}"),
                    })
            }
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest {
                    code: "unsupported_media_type",
                    message: "send the body as JSON with Content-Type: application/json".into(),
                },
                JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
                    code: "malformed_json",
                    message: format!("the body is not valid JSON: {}", inner_message(&e)),
                },
                JsonRejection::JsonDataError(e) => ApiError::BadRequest {
                    code: "invalid_body",
                    message: format!("the body has the wrong shape: {}", inner_message(&e)),
                },
                other => ApiError::bad_request(other.body_text()),
            }),
        }
    }
}

/// serde's own message, without axum's prefix.
fn inner_message(e: &dyn std::error::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
