//! The media plane's call metrics (Prometheus): setup time, provider time to first audio,
//! and the latency the gateway itself adds per direction — from a frame's arrival to the
//! moment the frames it produced were handed to the other socket (network time excluded).
//! Process-wide, so the per-call tasks need no handle; rendered by `/metrics` on both
//! single-process and media-node deployments.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;
use vocalized_shared::events::{CallEventKind, EndReason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `caller_to_provider` or `provider_to_caller`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

pub struct MediaMetrics {
    registry: Registry,
    pub setup: Histogram,
    pub time_to_first_audio: Histogram,
    pub added_latency: Family<Direction, Histogram, fn() -> Histogram>,
    pub malformed_frames: Family<Kind, Counter>,
    pub calls_ended: Family<Kind, Counter>,
    pub failovers: Family<Kind, Counter>,
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~160 ms
    Histogram::new(exponential_buckets(0.000_01, 2.0, 15))
}

static METRICS: LazyLock<MediaMetrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("vocalized_media");
    let setup = Histogram::new(exponential_buckets(0.005, 2.0, 12));
    let time_to_first_audio = Histogram::new(exponential_buckets(0.05, 2.0, 10));
    let added_latency =
        Family::<Direction, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
    let malformed_frames = Family::<Kind, Counter>::default();
    let calls_ended = Family::<Kind, Counter>::default();
    let failovers = Family::<Kind, Counter>::default();
    registry.register(
        "call_setup_seconds",
        "From the caller's stream start to the provider session being connected",
        setup.clone(),
    );
    registry.register(
        "provider_time_to_first_audio_seconds",
        "From answer to the provider's first audio",
        time_to_first_audio.clone(),
    );
    registry.register(
        "gateway_added_latency_seconds",
        "Time a frame spends inside the gateway, per direction",
        added_latency.clone(),
    );
    registry.register(
        "malformed_frames",
        "Frames skipped because they could not be parsed, by source",
        malformed_frames.clone(),
    );
    registry.register("calls_ended", "Calls ended, by how", calls_ended.clone());
    registry.register(
        "provider_failovers",
        "Moves to another provider (or a new session of the same one), by cause",
        failovers.clone(),
    );
    MediaMetrics {
        registry,
        setup,
        time_to_first_audio,
        added_latency,
        malformed_frames,
        calls_ended,
        failovers,
    }
});

pub fn get() -> &'static MediaMetrics {
    &METRICS
}

impl MediaMetrics {
    pub fn observe_added(&self, direction: &'static str, elapsed: Duration) {
        self.added_latency
            .get_or_create(&Direction { direction })
            .observe(elapsed.as_secs_f64());
    }
}

/// Counts what a call event says about the call: time to first audio, how calls end,
/// failovers. Both drivers call it for every event they pass on.
pub fn observe_event(kind: &CallEventKind) {
    let m = get();
    match kind {
        CallEventKind::ProviderAudioStarted { ttfa_ms } => {
            m.time_to_first_audio.observe(*ttfa_ms as f64 / 1000.0)
        }
        CallEventKind::Ended(reason) => {
            let kind = match reason {
                EndReason::CallerHangup => "caller_hangup",
                EndReason::ProviderError { .. } => "provider_error",
                EndReason::MaxDuration => "max_duration",
                EndReason::SilenceTimeout => "silence_timeout",
                EndReason::NotConnected => "not_connected",
                EndReason::EndCallPhrase | EndReason::AgentEndedCall => "agent_or_phrase",
                EndReason::UsageLimit => "usage_limit",
            };
            m.calls_ended.get_or_create(&Kind { kind }).inc();
        }
        CallEventKind::Failover { reason, .. } => {
            // Causes, not raw provider error codes: labels must stay a small set.
            let kind = match reason.as_str() {
                "session_rollover" => "rollover",
                "provider_timeout" => "timeout",
                "provider_connect_failed" | "provider_misconfigured" => "connect",
                "provider_closed" => "closed",
                _ => "error",
            };
            m.failovers.get_or_create(&Kind { kind }).inc();
        }
        _ => {}
    }
}

/// The Prometheus text exposition of the media metrics.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &METRICS.registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_show_up_in_the_exposition() {
        get().observe_added("caller_to_provider", Duration::from_micros(40));
        get()
            .malformed_frames
            .get_or_create(&Kind { kind: "twilio" })
            .inc();
        let text = render();
        assert!(text.contains("vocalized_media_gateway_added_latency_seconds_count{direction=\"caller_to_provider\"}"), "{text}");
        assert!(
            text.contains("vocalized_media_malformed_frames_total{kind=\"twilio\"}"),
            "{text}"
        );
        observe_event(&CallEventKind::Failover {
            from: "openai".into(),
            to: "gemini".into(),
            reason: "some_vendor_specific_code".into(),
        });
        let text = render();
        assert!(
            text.contains("vocalized_media_provider_failovers_total{kind=\"error\"}"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "rendered to be appended to another exposition"
        );
    }
}
