//! Provider WebSocket clients: connect with a bounded handshake time and the provider's
//! auth header. TLS (wss) uses rustls with the webpki roots.

use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type ProviderSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of every media WebSocket (Twilio's and the providers'). tungstenite's
/// default is 128 KiB, and it zeroes the unused part on every read: with a 200-byte
/// frame every 20 ms that memset was a fifth of the gateway's CPU, and the touched pages
/// most of its memory per call. A larger frame still arrives whole: the buffer grows to
/// fit it and it takes a few reads.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("provider URL is invalid: {0}")]
    BadUrl(String),
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("provider refused the connection: {0}")]
    Refused(String),
}

impl ConnectError {
    /// The call's `error_code` for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::BadUrl(_) => "provider_misconfigured",
            ConnectError::Timeout(_) => "provider_timeout",
            ConnectError::Refused(_) => "provider_connect_failed",
        }
    }
}

/// Makes ring rustls's process-wide crypto provider (once; later calls are no-ops), so
/// wss:// works whichever crate first builds a TLS config (crates.md "Cautions").
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Opens `url` with extra request headers (the provider's auth: `authorization`,
/// `xi-api-key`, ...), giving up after `timeout`.
pub async fn connect(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<ProviderSocket, ConnectError> {
    install_crypto_provider();
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl(e.to_string()))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| ConnectError::BadUrl(format!("the {name} header is not a valid value")))?;
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConnectError::BadUrl(format!("{name} is not a header name")))?;
        request.headers_mut().insert(name, value);
    }
    match tokio::time::timeout(
        timeout, // Nagle off: 20 ms audio frames must not wait for the previous one's ACK.
        tokio_tungstenite::connect_async_with_config(
            request,
            Some(WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)),
            true,
        ),
    )
    .await
    {
        Err(_) => Err(ConnectError::Timeout(timeout)),
        Ok(Err(e)) => Err(ConnectError::Refused(e.to_string())),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wss_has_a_crypto_provider_and_failures_have_codes() {
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        // Nothing listens on port 9: refused quickly, with a code for the call record.
        let e = connect(
            "ws://127.0.0.1:9/v1/realtime",
            &[("authorization", "Bearer sk")],
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "provider_connect_failed");
        // A TLS handshake is attempted (and fails) rather than panicking for want of a provider.
        let e = connect("wss://127.0.0.1:9/v1/realtime", &[], Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "provider_connect_failed");
        let e = connect("not a url", &[], Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "provider_misconfigured");
    }
}
