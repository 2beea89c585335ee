//! Provider failover over real sockets: the phone driver (`/media/twilio`) with a
//! stand-in control plane handing out a chain of providers, the fake Twilio as the
//! caller and fake providers that refuse, stall or die mid-call.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use vocalized_bench::fakes::openai::{Failure, FakeOpenAi, OpenAiBehaviour};
use vocalized_media::io::twilio_call::APOLOGY_ULAW;
use vocalized_shared::events::{CallEventKind, EndReason};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusing_first_provider_costs_the_caller_no_more_than_the_second_ones_setup() {
    // Baseline: the healthy provider alone.
    let healthy = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let alone = ChainLink::new(vec![openai(&healthy, "sk-second")]);
    let addr = gateway(Arc::clone(&alone), Duration::from_secs(3)).await;
    let baseline = silence_before_first_audio(&call(addr, caller_turn(1_500)).await);

    // The same provider behind one that refuses the handshake, and one nobody runs.
    let refusing =
        FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::RefuseHandshake(503)))
            .await
            .unwrap();
    let chain = ChainLink::new(vec![
        openai(&refusing, "sk-first"),
        dead(),
        openai(&healthy, "sk-second"),
    ]);
    let addr = gateway(Arc::clone(&chain), Duration::from_secs(3)).await;
    let record = call(addr, caller_turn(1_500)).await;
    let waited = silence_before_first_audio(&record);
    assert!(
        waited <= baseline + Duration::from_secs(1),
        "the caller waited {waited:?} for the greeting; {baseline:?} with the healthy provider alone"
    );

    let kinds = chain.ended_kinds().await;
    let failovers: Vec<&str> = kinds
        .iter()
        .filter_map(|k| match k {
            CallEventKind::Failover { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        failovers,
        ["provider_connect_failed", "provider_connect_failed"],
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
    // The serving provider greeted and answered, with the second key.
    let served = healthy.sessions();
    let last = served.last().unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer sk-second"));
    assert!(last.responses_completed >= 2, "greeting and answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_provider_is_skipped_after_the_setup_timeout() {
    let stalled = FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::Stall))
        .await
        .unwrap();
    let healthy = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let chain = ChainLink::new(vec![openai(&stalled, "sk-a"), openai(&healthy, "sk-b")]);
    let addr = gateway(Arc::clone(&chain), Duration::from_millis(600)).await;
    let record = call(addr, caller_turn(1_000)).await;
    let waited = silence_before_first_audio(&record);
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_millis(2_500),
        "{waited:?}"
    );
    assert!(chain.ended_kinds().await.iter().any(|k| matches!(k,
        CallEventKind::Failover { reason, .. } if reason == "provider_timeout")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_dying_mid_call_hands_the_conversation_to_the_next() {
    // The first provider greets, then dies halfway through its answer to the caller.
    let dying = FakeOpenAi::start(
        OpenAiBehaviour::default().with_failure(Failure::DropAfter { responses: 1 }),
    )
    .await
    .unwrap();
    let next = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let chain = ChainLink::new(vec![openai(&dying, "sk-a"), openai(&next, "sk-b")]);
    let addr = gateway(Arc::clone(&chain), Duration::from_secs(3)).await;
    // The caller speaks, hears half an answer, then speaks again.
    let mut caller = caller_turn(3_000);
    caller.extend(caller_turn(3_000));
    let record = call(addr, caller).await;

    let kinds = chain.ended_kinds().await;
    assert!(
        kinds.iter().any(|k| matches!(k,
            CallEventKind::Failover { from, to, reason }
                if from == "openai" && to == "openai" && reason == "provider_closed")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup)),
        "the call went on to the caller's hang-up"
    );
    // The next provider was told the conversation so far (the greeting and the caller's
    // first line), did not greet again, and answered the caller's second line.
    let taken_over = next.sessions();
    assert_eq!(taken_over.len(), 1);
    let s = &taken_over[0];
    let seeded: Vec<String> = s
        .item_creates
        .iter()
        .map(|item| item["content"][0]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        seeded.iter().any(|t| t.contains("check my order")),
        "the caller's earlier turn was replayed: {seeded:?}"
    );
    assert!(
        s.session_updates[0]["instructions"]
            .as_str()
            .unwrap()
            .contains("front desk")
    );
    assert!(s.responses_completed >= 1, "the next provider answered");
    // Audio kept reaching the caller after the switch.
    let switched_at = record.started_at
        + Duration::from_millis(
            chain
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|e| matches!(e.kind, CallEventKind::Failover { .. }))
                .unwrap()
                .at_ms,
        );
    assert!(
        record
            .received
            .iter()
            .any(|r| r.at > switched_at && r.text.contains(r#""event":"media""#)),
        "no agent audio after the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_provider_fails_the_caller_hears_an_apology_and_the_call_ends() {
    let refusing =
        FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::RefuseHandshake(401)))
            .await
            .unwrap();
    let chain = ChainLink::new(vec![openai(&refusing, "sk-a"), dead()]);
    let addr = gateway(Arc::clone(&chain), Duration::from_secs(2)).await;
    let record = call(addr, caller_turn(3_000)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_openai_session_near_its_time_cap_rolls_over_to_a_reseeded_one() {
    let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let chain = ChainLink::new(vec![openai(&fake, "sk-a")]);
    // The 60-minute cap, shrunk: roll over 4 s into the call.
    let config = vocalized_media::io::twilio_call::TwilioCallConfig {
        openai_session_rollover: Duration::from_secs(4),
        ..Default::default()
    };
    let addr = gateway_with(chain.clone(), config).await;
    let mut caller = caller_turn(2_000);
    caller.extend(caller_turn(3_000));
    call(addr, caller).await;

    let kinds = chain.ended_kinds().await;
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Failover { from, to, reason }
            if from == "openai" && to == "openai" && reason == "session_rollover")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
    // A new session every 4 s of a ~12 s call, each one recorded.
    let sessions = fake.sessions();
    let rollovers = kinds
        .iter()
        .filter(|k| matches!(k, CallEventKind::Failover { .. }))
        .count();
    assert!(sessions.len() >= 2, "{}", sessions.len());
    assert_eq!(rollovers, sessions.len() - 1);
    // Each new session knows the conversation and none greets the caller again.
    let later = &sessions[1..];
    assert!(
        later
            .iter()
            .all(|s| s.responses_started <= s.speech_started),
        "a later session greeted the caller"
    );
    let seeded = serde_json::to_string(&later.last().unwrap().item_creates).unwrap();
    assert!(seeded.contains("check my order"), "{seeded}");
    assert!(
        later.iter().any(|s| s.responses_completed >= 1),
        "a later session answered the caller"
    );
}
