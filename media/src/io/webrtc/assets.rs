//! `GET /widget.js` and `GET /demo/{public_key}`, both compiled into the binary so a
//! node serves its own widget with no static-file setup.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const WIDGET_JS: &str = include_str!("../../../../web/widget.js");
const DEMO_HTML: &str = include_str!("../../../../web/demo.html");

/// The widget script and the demo page.
pub fn assets_router() -> Router {
    Router::new()
        .route("/widget.js", get(widget_js))
        .route("/demo/{public_key}", get(demo_page))
}

async fn widget_js() -> Response {
    let mut res = (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        WIDGET_JS,
    )
        .into_response();
    // Any site may embed the widget.
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

async fn demo_page(Path(public_key): Path<String>) -> Response {
    match demo_html(&public_key) {
        Some(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        None => (StatusCode::NOT_FOUND, "unknown widget key").into_response(),
    }
}

/// The demo page for `public_key`, or `None` when it is not shaped like a public key
/// (`pk_` then `[A-Za-z0-9_-]+`), so nothing else is ever written into the page.
pub fn demo_html(public_key: &str) -> Option<String> {
    let rest = public_key.strip_prefix("pk_")?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    // The charset already excludes HTML metacharacters; escaping anyway keeps the page
    // safe if the key shape is ever widened.
    valid.then(|| DEMO_HTML.replace("{{PUBLIC_KEY}}", &html_escape(public_key)))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_page_embeds_the_key() {
        let html = demo_html("pk_Ab9_-x").unwrap();
        assert!(html.contains(r#"<script src="/widget.js" data-key="pk_Ab9_-x"></script>"#));
        assert!(!html.contains("{{PUBLIC_KEY}}"));
    }

    #[test]
    fn demo_page_refuses_keys_that_are_not_public_keys() {
        for bad in ["", "pk_", "sk_abc", "pk_a\"><script>", "pk_a b", "pk_é"] {
            assert_eq!(demo_html(bad), None, "{bad:?}");
        }
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn widget_script_is_the_one_from_web() {
        assert!(WIDGET_JS.contains("window.vocalizedWidget"));
    }
}
