//! Twilio's HTTP side: the signed voice webhook (protocols.md §1.5, §1.7) and call status
//! callbacks (§1.6), posted as `application/x-www-form-urlencoded`.

use super::signature::sign;
use super::twiml::Twiml;
use crate::fakes::random_hex;

/// The identity of one fake call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallParams {
    pub account_sid: String,
    pub call_sid: String,
    /// E.164 caller number.
    pub from: String,
    /// E.164 number dialled (the agent's number).
    pub to: String,
}

impl CallParams {
    /// Fresh `CA…` call sid under `account_sid`.
    pub fn new(account_sid: &str, from: &str, to: &str) -> Self {
        Self {
            account_sid: account_sid.to_owned(),
            call_sid: format!("CA{}", random_hex(32)),
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }

    fn base(&self, call_status: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", self.account_sid.as_str()),
            ("CallSid", self.call_sid.as_str()),
            ("From", self.from.as_str()),
            ("To", self.to.as_str()),
            ("Caller", self.from.as_str()),
            ("Called", self.to.as_str()),
            ("CallStatus", call_status),
            ("Direction", "inbound"),
            ("ApiVersion", "2010-04-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// What the gateway answered to a webhook.
#[derive(Debug, Clone)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
    pub twiml: Twiml,
}

/// A fresh `AC…` account sid.
pub fn account_sid() -> String {
    format!("AC{}", random_hex(32))
}

/// One HTTP client for every webhook: building one (its TLS roots) per request cost
/// milliseconds that the bench's setup time charged to the gateway. It keeps no idle
/// connections, as a pooled connection belongs to the tokio runtime that opened it and
/// tests run each on their own runtime.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default()
    })
}

/// POSTs `params` to `{gateway_base}{path}`, signed over `{public_url}{path}`: the
/// gateway is reached locally but believes it lives at its public URL, and Twilio signs
/// the URL it was configured with.
pub async fn post_signed(
    gateway_base: &str,
    public_url: &str,
    path: &str,
    auth_token: &str,
    params: &[(String, String)],
) -> Result<WebhookReply, reqwest::Error> {
    let signed_url = format!("{}{path}", public_url.trim_end_matches('/'));
    let signature = sign(&signed_url, params, auth_token);
    let response = client()
        .post(format!("{}{path}", gateway_base.trim_end_matches('/')))
        .header("X-Twilio-Signature", signature)
        .header("User-Agent", "TwilioProxy/1.1")
        .form(params)
        .send()
        .await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    Ok(WebhookReply {
        status,
        content_type,
        twiml: Twiml::parse(&body),
        body,
    })
}

/// The incoming-call webhook (`CallStatus=ringing`) to `/webhooks/calls/inbound`.
pub async fn voice_webhook(
    gateway_base: &str,
    public_url: &str,
    auth_token: &str,
    params: &CallParams,
) -> Result<WebhookReply, reqwest::Error> {
    let form = params.base("ringing");
    post_signed(
        gateway_base,
        public_url,
        "/webhooks/calls/inbound",
        auth_token,
        &form,
    )
    .await
}

/// A call status callback to `/webhooks/calls/status`, e.g. `completed` with its
/// duration. `sequence` is Twilio's `SequenceNumber` (lowest first).
pub async fn status_callback(
    gateway_base: &str,
    public_url: &str,
    auth_token: &str,
    params: &CallParams,
    call_status: &str,
    duration_s: Option<u32>,
    sequence: u32,
) -> Result<WebhookReply, reqwest::Error> {
    let mut form = params.base(call_status);
    form.push(("CallbackSource".into(), "call-progress-events".into()));
    form.push(("SequenceNumber".into(), sequence.to_string()));
    form.push(("Timestamp".into(), "Mon, 30 Nov 2026 23:59:59 +0000".into()));
    if let Some(seconds) = duration_s {
        form.push(("CallDuration".into(), seconds.to_string()));
    }
    post_signed(
        gateway_base,
        public_url,
        "/webhooks/calls/status",
        auth_token,
        &form,
    )
    .await
}
