//! Each provider adapter serves a whole phone call through the phone driver, over real
//! sockets to its fake: transcripts, usage, audio both ways; plus a failover between
//! providers of different formats and Gemini's session rollover.

mod support;

use std::time::Duration;
use support::*;
use vocalized_bench::fakes::deepgram::{DeepgramBehaviour, FakeDeepgram};
use vocalized_bench::fakes::elevenlabs::{ElevenLabsBehaviour, FakeElevenLabs};
use vocalized_bench::fakes::gemini::{self, FakeGemini, GeminiBehaviour};
use vocalized_bench::fakes::openai::{Failure, FakeOpenAi, OpenAiBehaviour};
use vocalized_shared::events::{CallEventKind, EndReason, Role};
use vocalized_shared::plan::{ProviderKind, ProviderTarget, Secret};

fn gemini_target(fake: &FakeGemini, key: &str) -> ProviderTarget {
    ProviderTarget {
        kind: ProviderKind::Gemini,
        url: fake.url(),
        api_key: Secret(key.into()),
        model: "gemini-2.5-flash-native-audio-preview".into(),
    }
}

fn elevenlabs_target(fake: &FakeElevenLabs, key: &str) -> ProviderTarget {
    ProviderTarget {
        kind: ProviderKind::Elevenlabs,
        url: fake.url(),
        api_key: Secret(key.into()),
        model: "agent_front_desk".into(),
    }
}

fn deepgram_target(fake: &FakeDeepgram, key: &str) -> ProviderTarget {
    ProviderTarget {
        kind: ProviderKind::Deepgram,
        url: fake.url(),
        api_key: Secret(key.into()),
        model: "open_ai/gpt-4o-mini".into(),
    }
}

/// The call's transcript turns, by role, and the providers its usage was billed to.
fn summary(kinds: &[CallEventKind]) -> (Vec<Role>, Vec<String>) {
    let roles = kinds
        .iter()
        .filter_map(|k| match k {
            CallEventKind::Transcript { role, .. } => Some(*role),
            _ => None,
        })
        .collect();
    let billed = kinds
        .iter()
        .filter_map(|k| match k {
            CallEventKind::Usage { provider, .. } => Some(provider.clone()),
            _ => None,
        })
        .collect();
    (roles, billed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gemini_live_serves_a_phone_call() {
    let fake = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let chain = ChainLink::new(vec![gemini_target(&fake, "AIza-test")]);
    let addr = gateway(chain.clone(), Duration::from_secs(3)).await;
    let record = call(addr, caller_turn(3_000)).await;

    let kinds = chain.ended_kinds().await;
    let (roles, billed) = summary(&kinds);
    assert!(
        roles.contains(&Role::User) && roles.contains(&Role::Assistant),
        "{kinds:?}"
    );
    assert!(
        billed.iter().all(|p| p == "gemini") && !billed.is_empty(),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
    // 24 kHz agent audio reached the caller as µ-law; 8 kHz caller audio went up as 16 kHz PCM.
    assert!(record.played_bytes() > 4_000, "{}", record.played_bytes());
    let s = &fake.sessions()[0];
    assert_eq!(s.key.as_deref(), Some("AIza-test"));
    assert!(
        s.audio_mime_types
            .iter()
            .all(|m| m == "audio/pcm;rate=16000")
    );
    assert!(s.audio_bytes_in > 32_000, "{}", s.audio_bytes_in);
    let setup = s.setup.as_ref().unwrap();
    assert!(setup.to_string().contains("front desk"), "{setup}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elevenlabs_serves_a_phone_call_in_ulaw_both_ways() {
    let fake = FakeElevenLabs::start(ElevenLabsBehaviour {
        ping_interval_ms: 300,
        ..ElevenLabsBehaviour::default()
    })
    .await
    .unwrap();
    let chain = ChainLink::new(vec![elevenlabs_target(&fake, "xi-test-key")]);
    let addr = gateway(chain.clone(), Duration::from_secs(3)).await;
    let record = call(addr, caller_turn(3_000)).await;

    let kinds = chain.ended_kinds().await;
    let (roles, billed) = summary(&kinds);
    assert!(
        roles.contains(&Role::User) && roles.contains(&Role::Assistant),
        "{kinds:?}"
    );
    assert!(
        billed.iter().all(|p| p == "elevenlabs") && !billed.is_empty(),
        "{kinds:?}"
    );
    assert!(record.played_bytes() > 4_000);
    let s = &fake.sessions()[0];
    assert_eq!(s.api_key.as_deref(), Some("xi-test-key"));
    assert_eq!(s.agent_id.as_deref(), Some("agent_front_desk"));
    // Phone audio passes straight through: as many bytes up as the caller sent.
    let sent = record.media_sent_at.len() * 160;
    assert!(
        s.audio_bytes_in as usize >= sent * 9 / 10,
        "{} of {sent}",
        s.audio_bytes_in
    );
    // Every ping was answered.
    assert!(!s.pings_sent.is_empty());
    assert!(
        s.pongs.len() + 1 >= s.pings_sent.len(),
        "{:?} {:?}",
        s.pings_sent,
        s.pongs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deepgram_serves_a_phone_call_with_binary_audio() {
    let fake = FakeDeepgram::start(DeepgramBehaviour::default())
        .await
        .unwrap();
    let chain = ChainLink::new(vec![deepgram_target(&fake, "dg-test-key")]);
    let addr = gateway(chain.clone(), Duration::from_secs(3)).await;
    let record = call(addr, caller_turn(3_000)).await;

    let kinds = chain.ended_kinds().await;
    let (roles, billed) = summary(&kinds);
    assert!(
        roles.contains(&Role::User) && roles.contains(&Role::Assistant),
        "{kinds:?}"
    );
    assert!(
        billed.iter().all(|p| p == "deepgram") && !billed.is_empty(),
        "{kinds:?}"
    );
    assert!(record.played_bytes() > 4_000);
    let s = &fake.sessions()[0];
    assert_eq!(s.authorization.as_deref(), Some("Token dg-test-key"));
    let settings = s.settings.as_ref().expect("Settings after Welcome");
    assert_eq!(settings["audio"]["input"]["encoding"], "mulaw");
    assert!(settings.to_string().contains("front desk"), "{settings}");
    // µ-law passes straight through in binary frames.
    let sent = record.media_sent_at.len() * 160;
    assert!(
        s.audio_bytes_in as usize >= sent * 9 / 10,
        "{} of {sent}",
        s.audio_bytes_in
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_dying_mid_call_fails_over_to_gemini_with_the_conversation() {
    let dying = FakeOpenAi::start(
        OpenAiBehaviour::default().with_failure(Failure::DropAfter { responses: 1 }),
    )
    .await
    .unwrap();
    let next = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let chain = ChainLink::new(vec![openai(&dying, "sk-a"), gemini_target(&next, "AIza-b")]);
    let addr = gateway(chain.clone(), Duration::from_secs(3)).await;
    let mut caller = caller_turn(3_000);
    caller.extend(caller_turn(3_000));
    let record = call(addr, caller).await;

    let kinds = chain.ended_kinds().await;
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Failover { from, to, .. }
            if from == "openai" && to == "gemini")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
    let s = &next.sessions()[0];
    let seeded = serde_json::to_string(&s.client_turns).unwrap();
    assert!(
        seeded.contains("check my order"),
        "earlier turns replayed: {seeded}"
    );
    assert!(
        s.turns_completed >= 1,
        "Gemini answered the caller's next line"
    );
    assert!(record.played_bytes() > 8_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gemini_go_away_rolls_the_session_over_with_its_resumption_handle() {
    let fake = FakeGemini::start(GeminiBehaviour::default().with_failure(
        gemini::Failure::GoAwayAfterMs {
            after_ms: 2_500,
            time_left_ms: 1_000,
        },
    ))
    .await
    .unwrap();
    let chain = ChainLink::new(vec![gemini_target(&fake, "AIza-test")]);
    let addr = gateway(chain.clone(), Duration::from_secs(3)).await;
    let mut caller = caller_turn(2_500);
    caller.extend(caller_turn(2_500));
    call(addr, caller).await;

    let sessions = fake.sessions();
    assert!(sessions.len() >= 2, "a second session was opened");
    let handle = sessions[1].resumed_from.clone().expect("resumed");
    assert!(sessions[0].handles_issued.contains(&handle), "{handle}");
    let kinds = chain.ended_kinds().await;
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Failover { reason, .. }
            if reason == "session_rollover")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
}
