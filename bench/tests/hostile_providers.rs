//! Providers that misbehave mid-call (issue 19), over real sockets: the phone driver with a
//! stand-in control plane, the fake Twilio as the caller, and a fake OpenAI that sends
//! garbage or wedges halfway through a frame.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use vocalized_bench::fakes::openai::{Failure, FakeOpenAi, OpenAiBehaviour};
use vocalized_media::io::twilio_call::{APOLOGY_ULAW, TwilioCallConfig};
use vocalized_shared::events::{CallEventKind, EndReason};

/// The gateway with a short stall timeout, so a wedged provider is given up on quickly.
async fn gateway_with_stall_timeout(link: Arc<ChainLink>, stall: Duration) -> std::net::SocketAddr {
    gateway_with(
        link,
        TwilioCallConfig {
            provider_connect_timeout: Duration::from_secs(3),
            provider_stall_timeout: stall,
            ..TwilioCallConfig::default()
        },
    )
    .await
}

/// The process-wide count of provider frames the gateway could not understand.
fn malformed_provider_frames() -> u64 {
    let text = vocalized_media::io::metrics::render();
    text.lines()
        .find_map(|l| l.strip_prefix("vocalized_media_malformed_frames_total{kind=\"provider\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_sending_garbage_is_skipped_and_the_call_goes_on() {
    let noisy = FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::Garbage))
        .await
        .unwrap();
    let chain = ChainLink::new(vec![openai(&noisy, "sk-a")]);
    let addr = gateway_with_stall_timeout(Arc::clone(&chain), Duration::from_secs(10)).await;
    let before = malformed_provider_frames();
    let record = call(addr, caller_turn(3_000)).await;

    let kinds = chain.ended_kinds().await;
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Failover { .. })),
        "garbage is skipped, not a failure: {kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup)),
        "the call went on to the caller's hang-up"
    );
    assert!(
        record.played_bytes() > 0,
        "the caller heard the agent between the garbage"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Usage { .. })),
        "usage still recorded: {kinds:?}"
    );
    let skipped = malformed_provider_frames() - before;
    assert!(skipped >= 2, "garbage frames counted: {skipped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_wedged_mid_frame_fails_over_after_the_stall_timeout() {
    // Greets, then wedges halfway through its answer to the caller's first turn.
    let wedged = FakeOpenAi::start(
        OpenAiBehaviour::default().with_failure(Failure::StallMidFrame { responses: 1 }),
    )
    .await
    .unwrap();
    let next = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let chain = ChainLink::new(vec![openai(&wedged, "sk-a"), openai(&next, "sk-b")]);
    let addr = gateway_with_stall_timeout(Arc::clone(&chain), Duration::from_secs(1)).await;
    let mut caller = caller_turn(3_000);
    caller.extend(caller_turn(3_000));
    call(addr, caller).await;

    let kinds = chain.ended_kinds().await;
    assert!(
        kinds.iter().any(|k| matches!(k,
            CallEventKind::Failover { from, to, reason }
                if from == "openai" && to == "openai" && reason == "provider_stalled")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup)),
        "the call went on with the next provider"
    );
    let taken_over = next.sessions();
    assert_eq!(taken_over.len(), 1);
    assert!(
        taken_over[0].responses_completed >= 1,
        "the next provider answered the caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_provider_wedged_mid_frame_ends_the_call_with_the_apology() {
    // Wedges halfway through its greeting, with nobody to take over.
    let wedged = FakeOpenAi::start(
        OpenAiBehaviour::default().with_failure(Failure::StallMidFrame { responses: 0 }),
    )
    .await
    .unwrap();
    let chain = ChainLink::new(vec![openai(&wedged, "sk-a")]);
    let addr = gateway_with_stall_timeout(Arc::clone(&chain), Duration::from_secs(1)).await;
    let record = call(addr, caller_turn(6_000)).await;
    assert!(
        record.played_bytes() >= APOLOGY_ULAW.len(),
        "the caller heard the apology"
    );
    assert_eq!(
        chain.ended_kinds().await.last(),
        Some(&CallEventKind::Ended(EndReason::ProviderError {
            code: "all_providers_failed".into()
        }))
    );
}
