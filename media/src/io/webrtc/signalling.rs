//! The HTTP decisions of WHIP-style signalling, kept pure so each refusal is tested
//! without a peer: which offers are acceptable and which status a refusal gets.

use axum::http::StatusCode;
use vocalized_shared::link::PlanError;

/// Why an offer or a call was refused: the HTTP status and the JSON error body's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// `{"error":{"code","message","details"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message, "details": {}}})
    }
}

/// The offer must be `application/sdp` (parameters such as charset are allowed).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), Refusal> {
    let essence = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if essence.eq_ignore_ascii_case("application/sdp") {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the offer must be sent as application/sdp",
        ))
    }
}

/// A cheap sanity check before a call is planned and a peer built: an SDP session
/// (`v=0`) with ICE credentials and a DTLS fingerprint (RFC 8829 §5.2.1: every WebRTC
/// offer has them), and an audio section offering Opus at 48 kHz. Returns Opus's payload
/// type.
pub fn check_offer(sdp: &str) -> Result<u8, Refusal> {
    let bad = |msg: &str| Refusal::new(StatusCode::BAD_REQUEST, "invalid_offer", msg);
    let mut lines = sdp.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(bad("the body is not an SDP offer (it must start with v=0)"));
    }
    let has = |prefix: &str| sdp.lines().any(|l| l.trim().starts_with(prefix));
    if !(has("a=ice-ufrag:") && has("a=ice-pwd:") && has("a=fingerprint:")) {
        return Err(bad(
            "the offer is not a WebRTC offer (it needs ice-ufrag, ice-pwd and fingerprint)",
        ));
    }
    let mut in_audio = false;
    let mut saw_audio = false;
    for line in lines {
        if let Some(media) = line.strip_prefix("m=") {
            in_audio = media.starts_with("audio ");
            saw_audio |= in_audio;
        } else if let (true, Some(map)) = (in_audio, line.strip_prefix("a=rtpmap:")) {
            // a=rtpmap:111 opus/48000/2
            let mut parts = map.splitn(2, ' ');
            let pt = parts.next().and_then(|p| p.parse::<u8>().ok());
            let codec = parts.next().unwrap_or("").to_ascii_lowercase();
            if let (Some(pt), true) = (pt, codec.starts_with("opus/48000")) {
                return Ok(pt);
            }
        }
    }
    Err(if saw_audio {
        bad("the offer's audio does not include Opus at 48 kHz")
    } else {
        bad("the offer has no audio section")
    })
}

/// The status a failed `plan_web_call` gets.
pub fn plan_refusal(err: &PlanError) -> Refusal {
    match err {
        PlanError::InvalidToken => {
            Refusal::new(StatusCode::NOT_FOUND, "not_found", "no widget has this key")
        }
        PlanError::Refused { code } if code == "too_many_calls" => Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            "too many calls from this address; try again later",
        ),
        PlanError::Refused { code } if code == "concurrency_limit" => Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            "this agent is taking as many calls as it can; try again later",
        ),
        PlanError::Refused { code } => Refusal::new(
            StatusCode::FORBIDDEN,
            code,
            format!("the call was refused: {code}"),
        ),
        // The reason (a database error, say) is for the logs, not for anonymous callers.
        PlanError::Unavailable(_) => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the call service is unavailable; try again shortly",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AB:CD\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn content_type_must_be_sdp() {
        assert!(check_content_type(Some("application/sdp")).is_ok());
        assert!(check_content_type(Some("Application/SDP; charset=utf-8")).is_ok());
        for bad in [None, Some("application/json"), Some("text/plain")] {
            assert_eq!(
                check_content_type(bad).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
    }

    #[test]
    fn offers_need_opus_audio() {
        assert_eq!(check_offer(OFFER), Ok(111));
        let no_opus = OFFER.replace("a=rtpmap:111 opus/48000/2\r\n", "");
        let video_only = OFFER.replace("m=audio", "m=video");
        let no_credentials = OFFER.replace("a=ice-pwd:p\r\n", "");
        let no_fingerprint = OFFER.replace("a=fingerprint:sha-256 AB:CD\r\n", "");
        for bad in [
            "",
            "hello",
            no_opus.as_str(),
            video_only.as_str(),
            no_credentials.as_str(),
            no_fingerprint.as_str(),
            "v=0\r\na=rtpmap:x opus/48000/2",
        ] {
            let err = check_offer(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(err.body()["error"]["code"], "invalid_offer");
        }
    }

    #[test]
    fn refusals_map_to_statuses() {
        let refused = |c: &str| plan_refusal(&PlanError::Refused { code: c.into() }).status;
        assert_eq!(
            plan_refusal(&PlanError::InvalidToken).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(refused("calling_disabled"), StatusCode::FORBIDDEN);
        assert_eq!(refused("balance_exhausted"), StatusCode::FORBIDDEN);
        assert_eq!(refused("too_many_calls"), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused("concurrency_limit"), StatusCode::TOO_MANY_REQUESTS);
        let down = plan_refusal(&PlanError::Unavailable("db".into()));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn an_unavailable_control_plane_does_not_leak_its_error_to_the_caller() {
        let inner =
            "error returned from database: (code: 5) database is locked at /var/lib/secret.db";
        let refusal = plan_refusal(&PlanError::Unavailable(inner.into()));
        assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
        let body = refusal.body().to_string();
        for leak in ["database", "secret", "locked", "code: 5"] {
            assert!(!body.contains(leak), "{leak:?} reached the caller: {body}");
        }
        assert_eq!(refusal.body()["error"]["code"], "unavailable");
    }
}
