//! Fuzz targets of the control plane's pure parsers, as plain functions of a byte slice
//! (driven by `control/tests/fuzz.rs` with the engine in `vocalized_media::fuzzing`).
//! The API's JSON bodies are fuzzed through the real router in that test file instead,
//! since their validation lives in the handlers.
//!
//! Not part of the API: hidden from the docs, and free to change.

use crate::twilio::{signature, twiml};
use axum::body::Body;
use axum::extract::{Form, FromRequest};
use axum::http::Request;
use axum::response::IntoResponse;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits (an extractor over an in-memory body) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("an extractor over an in-memory body did not finish");
}

/// Where the webhook URL starts (the `public_url` the signature covers).
pub const PUBLIC_URL: &str = "https://gw.example.com";

/// A Twilio webhook request: line 1 is the path and query, line 2 the auth token, line 3
/// the `X-Twilio-Signature` header, the rest the form body. Checks that
/// - the body goes through axum's `Form` extractor (as the handlers take it) to
///   parameters or to a 4xx rejection;
/// - an arbitrary header never panics the verifier;
/// - the signature we compute verifies, in any parameter order, with or without the
///   default port and surrounding spaces, and stops verifying when a value or the token
///   changes;
/// - every parameter value, put in TwiML, is escaped and reads back unchanged.
pub fn webhook_form(data: &[u8]) {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let token = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();

    // The request URI's path and query always start with '/'.
    let path = format!("/{}", path.trim_start_matches('/'));
    let url = format!("{PUBLIC_URL}{path}");
    let request = Request::builder()
        .method("POST")
        .uri("/webhooks/calls/inbound")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("a request with a fixed URI");
    let params: Vec<(String, String)> =
        match ready(Form::<Vec<(String, String)>>::from_request(request, &())) {
            Ok(Form(params)) => params,
            Err(rejection) => {
                let status = rejection.into_response().status();
                assert!(status.is_client_error(), "form rejected with {status}");
                return;
            }
        };

    let _ = signature::is_valid(&url, &params, &token, &header);
    let signed = signature::compute(&url, &params, &token);
    assert!(
        signature::is_valid(&url, &params, &token, &signed),
        "our own signature does not verify: {url:?} {params:?}"
    );
    assert!(signature::is_valid(
        &url,
        &params,
        &token,
        &format!(" {signed}\n")
    ));
    let mut reversed = params.clone();
    reversed.reverse();
    assert!(signature::is_valid(&url, &reversed, &token, &signed));
    let with_port = url.replacen("://gw.example.com", "://gw.example.com:443", 1);
    assert!(
        signature::is_valid(
            &url,
            &params,
            &token,
            &signature::compute(&with_port, &params, &token)
        ),
        "signed with the default port but refused without it: {url:?}"
    );
    assert!(!signature::is_valid(
        &url,
        &params,
        &format!("{token}x"),
        &signed
    ));
    if let Some(i) = params.len().checked_sub(1).map(|n| data.len() % (n + 1)) {
        let mut tampered = params.clone();
        tampered[i].1.push('x');
        assert!(!signature::is_valid(&url, &tampered, &token, &signed));
    }

    for (_, value) in &params {
        let xml = twiml::say_and_hang_up(value);
        let inner = xml
            .split_once("<Say>")
            .and_then(|(_, rest)| rest.rsplit_once("</Say>"))
            .map(|(inner, _)| inner)
            .expect("a <Say> element");
        assert_eq!(unescape(inner), *value, "TwiML changed the text");
        let xml = twiml::connect_stream("wss://gw.example.com/media/twilio", value);
        let attr = xml
            .split_once("value=\"")
            .and_then(|(_, rest)| rest.rsplit_once("\"/>"))
            .map(|(inner, _)| inner)
            .expect("a value attribute");
        assert_eq!(unescape(attr), *value, "TwiML changed the token");
    }
}

/// Reverses the TwiML escaping, refusing any markup character left raw.
fn unescape(text: &str) -> String {
    assert!(
        !text.contains(['<', '>', '"', '\'']),
        "a markup character is not escaped: {text:?}"
    );
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (entity, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ]
        .into_iter()
        .find(|(e, _)| rest.starts_with(e))
        .unwrap_or_else(|| panic!("a raw '&' in {text:?}"));
        out.push(c);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    out
}

/// Seeds: the webhook parameters of protocols.md §1.5 and §1.6.
pub const WEBHOOK_SEEDS: &[&str] = &[
    "/webhooks/calls/inbound\nplatform-twilio-auth-token\n0/KCTR6DLpKmkAf8muzZqo1nDgQ=\nAccountSid=ACplatform0000000000000000000000&ApiVersion=2010-04-01&CallSid=CA1234567890ABCDE&CallStatus=ringing&Called=%2B18005551212&Caller=%2B12349013030&Direction=inbound&From=%2B12349013030&To=%2B18005551212&CallerName=Alice+%26+Bob",
    "/webhooks/calls/status?x=1&y=%20\ntok\n\nCallSid=CA1&CallStatus=completed&CallDuration=42&AccountSid=AC1&Timestamp=Mon%2C+07+Dec+2026+10%3A00%3A00+%2B0000&SequenceNumber=0",
    "/webhooks/calls/inbound\n\n\nDigits=1234&Digits=5678&=empty&novalue&%E2%82%AC=%FF%FE&a=%3Csay%3E",
];

pub const WEBHOOK_DICT: &[&str] = &[
    "AccountSid=",
    "CallSid=",
    "CallStatus=",
    "CallDuration=",
    "From=",
    "To=",
    "Caller=",
    "CallerName=",
    "&",
    "=",
    "%",
    "%2B",
    "%26",
    "%3D",
    "%00",
    "%FF",
    "+",
    "?",
    "#",
    ":443",
    ":80",
    "@",
    "//",
    "\n",
    "completed",
    "in-progress",
    "ringing",
];
