//! A fake Twilio (protocols.md §1).
//!
//! - `webhook.rs`: signed voice webhook and status callbacks, as Twilio posts them.
//! - `signature.rs`: `X-Twilio-Signature`, computed independently of the gateway.
//! - `twiml.rs`: reads the `<Connect><Stream>` answer.
//! - `playback.rs`: Twilio's playback buffer (marks, `clear`) as a sans-IO model.
//! - `call.rs`: the Media Streams client that plays a caller in real time.
//!
//! A whole inbound call:
//! ```ignore
//! let call = CallParams::new(&account_sid(), "+15550001111", "+15550002222");
//! let reply = FakeTwilio::voice_webhook(&gw, "https://gw.example.com", token, &call).await?;
//! let url = reply.twiml.stream_url.unwrap();
//! let token = reply.twiml.parameter("token").unwrap();
//! let opts = CallOptions { connect_to: Some(local_ws_url), ..Default::default() };
//! let record = FakeTwilio::connect(&url, token, &call.call_sid, audio::caller_hello(), opts)
//!     .await?
//!     .finish()
//!     .await;
//! ```

mod call;
mod playback;
pub mod signature;
mod twiml;
mod webhook;

pub use call::{CallEnd, CallOptions, Garbage, Received, TwilioCall, TwilioCallRecord};
pub use playback::{Playback, PlayedChunk};
pub use twiml::Twiml;
pub use webhook::{CallParams, WebhookReply, account_sid};

/// Entry points, named after what Twilio does.
pub struct FakeTwilio;

impl FakeTwilio {
    /// The incoming-call webhook, signed over `{public_url}/webhooks/calls/inbound`.
    pub async fn voice_webhook(
        gateway_base: &str,
        public_url: &str,
        auth_token: &str,
        params: &CallParams,
    ) -> Result<WebhookReply, reqwest::Error> {
        webhook::voice_webhook(gateway_base, public_url, auth_token, params).await
    }

    /// A call status callback (`completed`, `in-progress`, …).
    pub async fn status_callback(
        gateway_base: &str,
        public_url: &str,
        auth_token: &str,
        params: &CallParams,
        call_status: &str,
        duration_s: Option<u32>,
        sequence: u32,
    ) -> Result<WebhookReply, reqwest::Error> {
        webhook::status_callback(
            gateway_base,
            public_url,
            auth_token,
            params,
            call_status,
            duration_s,
            sequence,
        )
        .await
    }

    /// Opens the Media Streams socket and plays `caller_audio`; see [`TwilioCall`].
    pub async fn connect(
        stream_url: &str,
        token: &str,
        call_sid: &str,
        caller_audio: Vec<u8>,
        options: CallOptions,
    ) -> Result<TwilioCall, tokio_tungstenite::tungstenite::Error> {
        TwilioCall::connect(stream_url, token, call_sid, caller_audio, options).await
    }
}
