//! The REST API. One module per resource, each with its `router()`, handlers, request and
//! response types and SQL together; auth and tenancy are extractors (`extract`).

pub mod admin;
pub mod admin_auth;
pub mod admin_numbers;
pub mod admin_providers;
pub mod agents;
pub mod auth;
pub mod calls;
pub mod error;
pub mod extract;
pub mod health;
pub mod json;
pub mod members;
pub mod openapi;
pub mod phone_numbers;
pub mod ratelimit;
pub mod rejection;
pub mod twilio_webhooks;
pub mod voice_providers;
pub mod widget;
pub mod workspaces;

use crate::metrics::HttpLabels;
use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use error::ApiError;
use std::time::Instant;

/// Every route of the control plane, with JSON errors for unknown paths and methods.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(auth::router())
        .merge(workspaces::router())
        .merge(members::router())
        .merge(agents::router())
        .merge(phone_numbers::router())
        .merge(calls::router())
        .merge(twilio_webhooks::router())
        .merge(widget::router())
        .merge(admin_auth::router())
        .merge(admin::router())
        .merge(admin_providers::router())
        .merge(admin_numbers::router())
        .merge(voice_providers::router())
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            let mut response = ApiError::BadRequest {
                code: "method_not_allowed",
                message: "this path does not accept that method".into(),
            }
            .into_response();
            *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
            response
        })
        .layer(middleware::from_fn(rejection::refuse_nul_in_uri))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

/// The method as a label from a fixed set: hyper accepts any token as a method, and each
/// new label value would be a series kept for the life of the process (M7).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
