//! The agent's provider as a call driver sees it: connected, fed [`ProviderCommand`]s,
//! and woken when it has something for the session. One enum over the in-process echo
//! test provider and the WebSocket providers, so the phone and browser drivers share
//! one loop shape whatever answers the call.
//!
//! The driver `select!`s on [`Provider::wake`] (cancel-safe: it only reads one frame or
//! waits for a deadline), then hands what woke it to [`Provider::deliver`], which turns it
//! into [`ProviderEvent`]s for the session.

use super::provider_ws::{self, ProviderSocket};
use crate::core::echo::{self, EchoProvider};
use crate::core::session::{ProviderCommand, ProviderEvent};
use crate::core::wire::openai;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tracing::warn;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::plan::{CallPlan, ProviderKind, ProviderTarget};

/// PCM16 at 24 kHz: the echo provider's format, and OpenAI's for non-telephone callers.
const PCM24: AudioFormat = AudioFormat::Pcm16 {
    sample_rate_hz: echo::SAMPLE_RATE,
};

/// The formats a provider speaks for a caller leg: `(caller audio in, agent audio out)`.
/// `None` for a provider this build cannot connect.
pub fn formats(kind: ProviderKind, caller: AudioFormat) -> Option<(AudioFormat, AudioFormat)> {
    match kind {
        ProviderKind::Echo => Some((PCM24, PCM24)),
        ProviderKind::Openai => {
            let f = openai::provider_format(caller);
            Some((f, f))
        }
        ProviderKind::Gemini | ProviderKind::Elevenlabs | ProviderKind::Deepgram => None,
    }
}

/// What woke the driver.
pub enum Wake {
    /// A text or binary frame from a WebSocket provider.
    Frame(Message),
    /// The provider's connection is gone.
    Closed,
    /// The in-process provider has events due.
    Due,
}

/// A connected provider.
pub enum Provider {
    Echo(EchoProvider),
    OpenAi {
        socket: ProviderSocket,
        decoder: openai::OpenAiDecoder,
        /// Reused for every outgoing message.
        text: String,
    },
}

impl Provider {
    /// Connects the plan's first provider for a caller speaking `caller`, sends its
    /// session setup and greeting, and returns it. The error is the call's `error_code`.
    pub async fn connect(
        plan: &CallPlan,
        caller: AudioFormat,
        timeout: Duration,
    ) -> Result<Self, &'static str> {
        let target = plan.providers.first().ok_or("no_provider")?;
        match target.kind {
            ProviderKind::Echo => Ok(Provider::Echo(EchoProvider::new())),
            ProviderKind::Openai => connect_openai(plan, target, caller, timeout).await,
            _ => Err("provider_unavailable"),
        }
    }

    /// Sends one command; `false` when the provider is gone (its read side reports it).
    pub async fn send(&mut self, cmd: &ProviderCommand<'_>, now: Instant) -> bool {
        match self {
            Provider::Echo(echo) => {
                echo.handle_command(*cmd, now);
                true
            }
            Provider::OpenAi { socket, text, .. } => {
                if !openai::write_command(cmd, text) {
                    let _ = socket.close(None).await;
                    return false;
                }
                socket
                    .send(Message::Text(text.as_str().into()))
                    .await
                    .is_ok()
            }
        }
    }

    /// Waits until the provider has something for the session. Cancel-safe.
    pub async fn wake(&mut self) -> Wake {
        match self {
            Provider::Echo(echo) => {
                if echo.has_event_due(Instant::now()) {
                    return Wake::Due;
                }
                match echo.next_deadline() {
                    Some(due) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                        Wake::Due
                    }
                    None => std::future::pending().await,
                }
            }
            Provider::OpenAi { socket, .. } => loop {
                match socket.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Wake::Closed,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(m)) => return Wake::Frame(m),
                }
            },
        }
    }

    /// Turns what woke the driver into events for the session.
    pub fn deliver(&mut self, wake: Wake, now: Instant, mut emit: impl FnMut(ProviderEvent<'_>)) {
        match (self, wake) {
            (_, Wake::Closed) => emit(ProviderEvent::Closed),
            (Provider::Echo(echo), _) => {
                while let Some(event) = echo.poll_event(now) {
                    emit(event);
                }
            }
            (Provider::OpenAi { decoder, .. }, Wake::Frame(Message::Text(t))) => {
                decoder.handle_text(t.as_str(), emit);
            }
            (Provider::OpenAi { decoder, .. }, Wake::Frame(_)) => decoder.malformed += 1,
            (Provider::OpenAi { .. }, Wake::Due) => {}
        }
    }

    /// Frames the provider sent that could not be understood.
    pub fn malformed(&self) -> u64 {
        match self {
            Provider::Echo(_) => 0,
            Provider::OpenAi { decoder, .. } => decoder.malformed,
        }
    }

    /// Closes the connection (no-op for in-process providers).
    pub async fn close(&mut self) {
        if let Provider::OpenAi { socket, .. } = self {
            let _ = socket.close(None).await;
        }
    }
}

async fn connect_openai(
    plan: &CallPlan,
    target: &ProviderTarget,
    caller: AudioFormat,
    timeout: Duration,
) -> Result<Provider, &'static str> {
    let url = openai::connect_url(&target.url, &target.model);
    let mut socket = provider_ws::connect(&url, target.api_key.expose(), timeout)
        .await
        .map_err(|e| {
            warn!(error = %e, "provider connect failed");
            e.code()
        })?;
    let setup = openai::OpenAiSetup {
        model: target.model.clone(),
        instructions: plan.instructions.clone(),
        settings: plan.settings.clone(),
        tools: plan.tools.clone(),
        format: caller,
    };
    let mut first = vec![openai::session_update(&setup)];
    first.extend(openai::greeting(&plan.settings));
    for text in first {
        socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| "provider_closed")?;
    }
    Ok(Provider::OpenAi {
        socket,
        decoder: openai::OpenAiDecoder::new(target.model.clone()),
        text: String::with_capacity(2048),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_per_provider_and_caller() {
        let ulaw = AudioFormat::Mulaw8k;
        assert_eq!(formats(ProviderKind::Openai, ulaw), Some((ulaw, ulaw)));
        let web = crate::core::session::WEB_CALLER_FORMAT;
        assert_eq!(formats(ProviderKind::Openai, web), Some((PCM24, PCM24)));
        assert_eq!(formats(ProviderKind::Echo, ulaw), Some((PCM24, PCM24)));
        assert_eq!(formats(ProviderKind::Gemini, ulaw), None);
    }

    #[tokio::test]
    async fn the_echo_wakes_when_its_playback_is_due() {
        let mut p = Provider::Echo(EchoProvider::new());
        let mut seen = Vec::new();
        // `Connected` is due at once.
        let wake = p.wake().await;
        p.deliver(wake, Instant::now(), |e| seen.push(format!("{e:?}")));
        assert_eq!(seen, ["Connected"]);
        // 100 ms of loud 24 kHz audio: speech now, its echo half a second later.
        let loud: Vec<u8> = (0..2_400).flat_map(|_| 8_000i16.to_le_bytes()).collect();
        assert!(p.send(&ProviderCommand::Audio(&loud), Instant::now()).await);
        let started = Instant::now();
        let wake = p.wake().await;
        seen.clear();
        p.deliver(wake, Instant::now(), |e| seen.push(format!("{e:?}")));
        assert_eq!(seen, ["SpeechStarted"]);
        let wake = p.wake().await;
        assert!(
            started.elapsed() >= echo::ECHO_DELAY,
            "woke before the echo was due"
        );
        seen.clear();
        p.deliver(wake, Instant::now(), |e| seen.push(format!("{e:?}")));
        assert!(seen[0].starts_with("AudioDelta"), "{seen:?}");
    }
}
