//! The `webrtc` scenario: browser callers over real WebRTC (ICE, DTLS-SRTP, RTP with Opus
//! on 127.0.0.1, webrtc-rs like the gateway) against the fake OpenAI Realtime.
//!
//! Each caller does what the widget does (media/src/io/webrtc/routes.rs): posts its offer
//! with every candidate to `POST /media/webrtc/{widget key}`, takes the `201` answer,
//! and `DELETE`s the `Location` to hang up. Once connected it sends one 20 ms Opus frame
//! every 20 ms, speech or silence, for the whole call, and decodes what it hears. It
//! talks like a polite person: it waits for the agent to finish (greeting first), pauses,
//! says its line, and waits again, so it never barges in and every reply plays out whole.
//!
//! Opus keeps no byte intact, so frames are timed by **position** instead of stamps:
//! - Caller → provider: the caller logs each frame's send time by index; the fake
//!   ([`ProbeMode::Positions`]) logs each append's arrival with the caller audio received
//!   so far. The gateway forwards all of it in order, so frame k (caller audio
//!   [20k, 20k+20) ms) reached the provider with the first append whose running total
//!   covers the end of frame k.
//! - Provider → caller: the fake's replies are tones with no silence inside, and the
//!   gateway fills the gaps between replies with digital silence, so the caller finds
//!   reply r as the r-th run of non-silent frames; a frame's place in its run comes from
//!   its RTP sequence number (a lost packet leaves a hole, not a shift). Frame j of reply r
//!   was due when the fake sent the audio at 20j ms of that reply: the send time of the
//!   delta holding it plus its offset inside the delta.
//!
//! Both are sample counts, so they measure how long the gateway held audio, not the
//! signal delay of its filters: the resamplers (48 ↔ 24 kHz) and the Opus encoder add a
//! fixed delay on top that no clock sees; [`signal_delay`] works it out and the report
//! prints it beside the latency.
//!
//! Nothing in the audio says which call a provider session belongs to, so sessions are
//! paired with callers by timing ([`pair`]): audio cannot arrive before it was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use vocalized_media::core::opus::{
    OPUS_FRAME_SAMPLES, OPUS_MAX_PACKET_BYTES, OPUS_MAX_PACKET_SAMPLES, OpusDecoder, OpusEncoder,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
};

use super::caller::{CallOutcome, Progress};
use super::provider::ProviderLog;
use super::report::{FrameCounts, IN_FLIGHT_GRACE, JoinedFigures};
use super::stats::{Direction, Drift, Percentiles, merge, new_histogram};
use crate::fakes::openai::OpenAiBehaviour;

/// The fake's audio on a web call: PCM16 LE at 24 kHz (the gateway asks OpenAI for
/// `audio/pcm` when the caller is a browser), so 48 bytes per ms.
pub const PROVIDER_BYTES_PER_MS: u64 = 48;
/// 20 ms of provider audio: one caller frame's worth, and one frame of the gateway's
/// 20 ms output.
pub const PROVIDER_FRAME_BYTES: u64 = 20 * PROVIDER_BYTES_PER_MS;
/// Length of every agent reply on a web call.
pub const WEB_REPLY_MS: u32 = 1_500;
/// A decoded frame quieter than this (RMS, dBFS) is silence. The replies are -20 dBFS
/// tones and the gateway's comfort silence is digital zero.
pub const SILENT_DBFS: f64 = -50.0;
/// How long the caller waits after the agent stops before it speaks.
const PAUSE_AFTER_REPLY: Duration = Duration::from_millis(400);
/// The caller speaks anyway if no reply has come and gone this long after its line.
const MAX_WAIT_FOR_REPLY: Duration = Duration::from_secs(6);
/// The caller keeps listening this long after its last frame before it hangs up, so that
/// its last frames reach the provider before the call ends.
const TAIL: Duration = Duration::from_millis(300);
/// Opus's payload type in the offer (webrtc-rs's default codecs, as in browsers).
const OPUS_PAYLOAD_TYPE: u8 = 111;

/// The fake OpenAI for web calls: replies of [`WEB_REPLY_MS`] of PCM16 24 kHz tone,
/// paced in real time in 100 ms deltas, starting `delay_ms` plus 0–20 ms (uniform) after
/// the response begins. The callers' turns, and so the fake's replies, keep step with the
/// callers' 20 ms clocks; the spread makes replies meet the gateway's 20 ms playout ticks
/// at every phase, as a real provider's do, instead of one fixed phase.
pub fn provider_behaviour(delay_ms: u64) -> OpenAiBehaviour {
    OpenAiBehaviour {
        agent_audio: reply_tone(WEB_REPLY_MS).into(),
        response_delay_ms: delay_ms,
        response_jitter_ms: 20,
        delta_bytes: 100 * PROVIDER_BYTES_PER_MS as usize,
        delta_interval_ms: 100,
        ..OpenAiBehaviour::default()
    }
}

/// `ms` of PCM16 LE 24 kHz: a -20 dBFS tone stepping through three pitches every 100 ms,
/// phase-continuous, so that no 20 ms of it is quiet.
pub fn reply_tone(ms: u32) -> Vec<u8> {
    let n = ms as usize * 24;
    let peak = 32767.0 * 10f64.powf(-20.0 / 20.0);
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let freq = [392.0, 494.0, 587.0][(i / 2400) % 3];
        phase += std::f64::consts::TAU * freq / 24_000.0;
        let sample = (peak * phase.sin()).round() as i16;
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// The caller's line at 48 kHz: the µ-law fixture speech (about 2 s, then 1 s of
/// silence) decoded and upsampled by linear interpolation, as a microphone would give it.
pub fn caller_line() -> Vec<i16> {
    let mut pcm8k = Vec::new();
    vocalized_media::core::g711::ulaw_to_pcm(&crate::audio::caller_hello(), &mut pcm8k);
    let mut out = Vec::with_capacity(pcm8k.len() * 6);
    for (i, &s) in pcm8k.iter().enumerate() {
        let next = pcm8k.get(i + 1).copied().unwrap_or(s);
        for k in 0..6 {
            let v = f64::from(s) + (f64::from(next) - f64::from(s)) * k as f64 / 6.0;
            out.push(v.round() as i16);
        }
    }
    out
}

/// One 20 ms frame of agent audio heard, inside a run of non-silent frames.
#[derive(Debug, Clone, Copy)]
pub struct HeardFrame {
    /// Which run (reply) it belongs to, from 0.
    pub run: u32,
    /// Its place in the run, in 20 ms frames, by RTP sequence number.
    pub pos: u32,
    pub at: Instant,
}

/// Everything one browser caller measured.
#[derive(Debug)]
pub struct WebCallerLog {
    pub index: u16,
    pub offer_sent_at: Instant,
    /// When the `201` with the answer arrived.
    pub answered_at: Option<Instant>,
    pub connected_at: Option<Instant>,
    /// When the first frame was sent.
    pub started_at: Option<Instant>,
    /// When the first agent audio (non-silent frame) arrived.
    pub first_audio_at: Option<Instant>,
    pub ended_at: Option<Instant>,
    pub outcome: CallOutcome,
    /// Send time of every frame, by index.
    pub sent_at: Vec<Instant>,
    pub heard: Vec<HeardFrame>,
    pub packets_received: u64,
    /// Sequence numbers skipped in the gateway's RTP.
    pub packets_missing: u64,
    pub packets_undecodable: u64,
}

impl WebCallerLog {
    pub fn new(index: u16) -> Self {
        Self {
            index,
            offer_sent_at: Instant::now(),
            answered_at: None,
            connected_at: None,
            started_at: None,
            first_audio_at: None,
            ended_at: None,
            outcome: CallOutcome::Failed("never started".into()),
            sent_at: Vec::new(),
            heard: Vec::new(),
            packets_received: 0,
            packets_missing: 0,
            packets_undecodable: 0,
        }
    }

    /// Offer sent → first agent audio heard.
    pub fn setup(&self) -> Option<Duration> {
        self.first_audio_at
            .map(|at| at.saturating_duration_since(self.offer_sent_at))
    }
}

/// What the listening half of a caller shares with the speaking half.
#[derive(Debug, Default)]
struct Ears {
    heard: Vec<HeardFrame>,
    first_audio_at: Option<Instant>,
    /// The run being heard: its number and the extended sequence number of its start.
    open: Option<(u32, u64)>,
    runs_started: u32,
    runs_done: u32,
    last_run_end: Option<Instant>,
    /// Last (extended, wire) sequence number.
    last_seq: Option<(u64, u16)>,
    packets: u64,
    missing: u64,
    undecodable: u64,
}

impl Ears {
    /// One RTP packet: its sequence number, and the RMS of what it decoded to (`None`
    /// when it did not decode).
    fn hear(&mut self, seq: u16, dbfs: Option<f64>, at: Instant) {
        self.packets += 1;
        let ext = match self.last_seq {
            None => u64::from(seq),
            Some((ext, wire)) => {
                let step = seq.wrapping_sub(wire) as i16;
                if step <= 0 {
                    // A duplicate or a late packet: its slot has been judged already.
                    return;
                }
                self.missing += step as u64 - 1;
                ext + step as u64
            }
        };
        self.last_seq = Some((ext, seq));
        let Some(dbfs) = dbfs else {
            self.undecodable += 1;
            return;
        };
        if dbfs >= SILENT_DBFS {
            let (run, base) = *self.open.get_or_insert_with(|| {
                self.runs_started += 1;
                (self.runs_started - 1, ext)
            });
            self.first_audio_at.get_or_insert(at);
            self.heard.push(HeardFrame {
                run,
                pos: (ext - base) as u32,
                at,
            });
        } else if self.open.take().is_some() {
            self.runs_done += 1;
            self.last_run_end = Some(at);
        }
    }
}

/// RMS of `pcm` in dBFS (i16 full scale); -120 for digital silence.
fn rms_dbfs(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return -120.0;
    }
    let mean = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
    if mean <= 0.0 {
        -120.0
    } else {
        (10.0 * mean.log10() - 20.0 * 32768f64.log10()).max(-120.0)
    }
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A documentation-range address per caller (RFC 5737's 198.51.100.0/24 and
/// 203.0.113.0/24, then RFC 1918's 10/8), sent as `X-Forwarded-For`: the gateway allows
/// only a few browser calls per address and every bench caller is on 127.0.0.1.
pub fn caller_address(index: u16) -> String {
    format!("10.77.{}.{}", index / 250, index % 250 + 1)
}

/// Places one browser call with the agent's `key` at `base` (`http://ADDR` of the
/// gateway), sends `frames` frames of talk and silence (`line` is what it says each
/// turn), listens, and hangs up.
pub async fn run_web_call(
    index: u16,
    base: String,
    key: Arc<str>,
    frames: u32,
    line: Arc<[i16]>,
    http: reqwest::Client,
    progress: Arc<Progress>,
) -> WebCallerLog {
    use std::sync::atomic::Ordering;
    let mut log = WebCallerLog::new(index);
    progress.placed.fetch_add(1, Ordering::Relaxed);
    progress.active.fetch_add(1, Ordering::Relaxed);
    let ears = Arc::new(Mutex::new(Ears::default()));
    let result = call(&mut log, &base, &key, frames, &line, &http, &ears).await;
    log.ended_at.get_or_insert_with(Instant::now);
    log.outcome = match result {
        Ok(outcome) => outcome,
        Err(why) => CallOutcome::Failed(why),
    };
    let ears = std::mem::take(&mut *ears.lock().unwrap_or_else(|p| p.into_inner()));
    log.heard = ears.heard;
    log.first_audio_at = ears.first_audio_at;
    log.packets_received = ears.packets;
    log.packets_missing = ears.missing;
    log.packets_undecodable = ears.undecodable;
    progress.active.fetch_sub(1, Ordering::Relaxed);
    if matches!(log.outcome, CallOutcome::Failed(_)) {
        progress.failed.fetch_add(1, Ordering::Relaxed);
    } else {
        progress.finished.fetch_add(1, Ordering::Relaxed);
    }
    log
}

/// Whose turn it is.
enum Turn {
    /// Silent until a reply that started after `runs_before` runs has ended (or
    /// [`MAX_WAIT_FOR_REPLY`] after `since`).
    Listening { runs_before: u32, since: Instant },
    /// Saying the line, at frame `at` of it; `runs_before` runs had started when it began.
    Speaking { at: usize, runs_before: u32 },
}

async fn call(
    log: &mut WebCallerLog,
    base: &str,
    key: &str,
    frames: u32,
    line: &[i16],
    http: &reqwest::Client,
    ears: &Arc<Mutex<Ears>>,
) -> Result<CallOutcome, String> {
    let mut media = MediaEngine::default();
    media
        .register_default_codecs()
        .map_err(|e| format!("codecs: {e}"))?;
    let (gathered_tx, mut gathered) = watch::channel(false);
    let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
    let (tracks_tx, mut tracks) = mpsc::unbounded_channel();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_handler(Arc::new(Handler {
                gathered: gathered_tx,
                state: state_tx,
                tracks: tracks_tx,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .map_err(|e| format!("peer: {e}"))?,
    );
    let result = talk(
        log,
        base,
        key,
        frames,
        line,
        http,
        ears,
        &pc,
        &mut gathered,
        &mut state,
        &mut tracks,
    )
    .await;
    let _ = pc.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn talk(
    log: &mut WebCallerLog,
    base: &str,
    key: &str,
    frames: u32,
    line: &[i16],
    http: &reqwest::Client,
    ears: &Arc<Mutex<Ears>>,
    pc: &Arc<dyn PeerConnection>,
    gathered: &mut watch::Receiver<bool>,
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    tracks: &mut mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
) -> Result<CallOutcome, String> {
    let ssrc = 0x5EED_0000 | u32::from(log.index);
    let track = Arc::new(
        TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                "mic".into(),
                "mic".into(),
                "mic".into(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            ),
        )
        .map_err(|e| format!("track: {e}"))?,
    );
    pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| format!("add_track: {e}"))?;
    let offer = pc
        .create_offer(None)
        .await
        .map_err(|e| format!("offer: {e}"))?;
    pc.set_local_description(offer)
        .await
        .map_err(|e| format!("offer: {e}"))?;
    tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g))
        .await
        .map_err(|_| "ICE gathering took over 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let sdp = pc
        .local_description()
        .await
        .ok_or("no local description")?
        .sdp;

    log.offer_sent_at = Instant::now();
    let response = http
        .post(format!("{base}/media/webrtc/{key}"))
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .header("x-forwarded-for", caller_address(log.index))
        .body(sdp)
        .send()
        .await
        .map_err(|e| format!("offer POST: {e}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = response.text().await.map_err(|e| format!("answer: {e}"))?;
    log.answered_at = Some(Instant::now());
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("offer answered {status}: {answer}"));
    }
    let location = location.ok_or("no Location in the answer")?;
    let hang_up_url = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let answer = RTCSessionDescription::answer(answer).map_err(|e| format!("answer: {e}"))?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| format!("answer: {e}"))?;

    // The listening half: decode every packet the gateway sends.
    let listener = {
        let ears = Arc::clone(ears);
        let mut tracks = std::mem::replace(tracks, mpsc::unbounded_channel().1);
        tokio::spawn(async move {
            let Some(track) = tracks.recv().await else {
                return;
            };
            let Ok(mut decoder) = OpusDecoder::new() else {
                return;
            };
            let mut pcm = vec![0i16; OPUS_MAX_PACKET_SAMPLES];
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let at = Instant::now();
                    let dbfs = decoder
                        .decode(&packet.payload, &mut pcm)
                        .ok()
                        .map(|n| rms_dbfs(&pcm[..n]));
                    ears.lock().unwrap_or_else(|p| p.into_inner()).hear(
                        packet.header.sequence_number,
                        dbfs,
                        at,
                    );
                }
            }
        })
    };
    let outcome = speak(log, frames, line, ears, &track, ssrc, state).await;
    if matches!(outcome, Ok(CallOutcome::HungUp)) {
        tokio::time::sleep(TAIL).await;
        log.ended_at = Some(Instant::now());
        let _ = http.delete(&hang_up_url).send().await;
    }
    listener.abort();
    outcome
}

/// Connects, then sends `frames` frames at real-time pace, taking turns with the agent.
async fn speak(
    log: &mut WebCallerLog,
    frames: u32,
    line: &[i16],
    ears: &Arc<Mutex<Ears>>,
    track: &TrackLocalStaticSample,
    ssrc: u32,
    state: &mut watch::Receiver<RTCPeerConnectionState>,
) -> Result<CallOutcome, String> {
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .map_err(|_| "not connected within 10 s".to_owned())?
    .map_err(|e| e.to_string())?
    .to_owned();
    if connected != RTCPeerConnectionState::Connected {
        return Err(format!("the connection went {connected}"));
    }
    log.connected_at = Some(Instant::now());

    let mut encoder = OpusEncoder::new().map_err(|e| format!("Opus: {e}"))?;
    // A browser on a clean link spends no bits on FEC, and the bench shares the cores.
    encoder
        .set_expected_loss_percent(0)
        .map_err(|e| format!("Opus: {e}"))?;
    let mut encoded = vec![0u8; OPUS_MAX_PACKET_BYTES];
    let mut frame = vec![0i16; OPUS_FRAME_SAMPLES];
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    // A microphone's clock does not skip: if the bench falls behind it catches up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut turn = Turn::Listening {
        runs_before: 0,
        since: Instant::now(),
    };
    log.sent_at.reserve(frames as usize);
    while log.sent_at.len() < frames as usize {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = state.changed() => {
                let now_state = *state.borrow();
                if changed.is_err() || matches!(now_state,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                    | RTCPeerConnectionState::Disconnected) {
                    log.ended_at = Some(Instant::now());
                    return Ok(CallOutcome::GatewayClosed);
                }
                continue;
            }
        }
        let now = Instant::now();
        if let Turn::Listening { runs_before, since } = turn {
            let e = ears.lock().unwrap_or_else(|p| p.into_inner());
            let replied = e.runs_done > runs_before
                && e.open.is_none()
                && e.last_run_end
                    .is_some_and(|end| now.saturating_duration_since(end) >= PAUSE_AFTER_REPLY);
            if replied || now.saturating_duration_since(since) > MAX_WAIT_FOR_REPLY {
                turn = Turn::Speaking {
                    at: 0,
                    runs_before: e.runs_started,
                };
            }
        }
        frame.fill(0);
        if let Turn::Speaking { at, runs_before } = &mut turn {
            let start = *at * OPUS_FRAME_SAMPLES;
            let end = (start + OPUS_FRAME_SAMPLES).min(line.len());
            if start < end {
                frame[..end - start].copy_from_slice(&line[start..end]);
            }
            *at += 1;
            if end >= line.len() {
                turn = Turn::Listening {
                    runs_before: *runs_before,
                    since: now,
                };
            }
        }
        let len = encoder
            .encode(&frame, &mut encoded)
            .map_err(|e| format!("Opus: {e}"))?;
        let sample = Sample {
            data: bytes::Bytes::copy_from_slice(&encoded[..len]),
            duration: Duration::from_millis(20),
            ..Sample::new(now)
        };
        log.started_at.get_or_insert(now);
        log.sent_at.push(now);
        track
            .sample_writer(ssrc, OPUS_PAYLOAD_TYPE)
            .write_sample(&sample)
            .await
            .map_err(|e| format!("RTP send: {e}"))?;
    }
    Ok(CallOutcome::HungUp)
}

/// The fixed signal delay the gateway's filters add, which position counting does not
/// see (it counts samples, and a filter delays the sound, not the count).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SignalDelay {
    /// Caller → provider: the 48 → 24 kHz resampler.
    pub caller_to_provider_ms: f64,
    /// Provider → caller: the 24 → 48 kHz resampler plus the Opus encoder's lookahead.
    pub provider_to_caller_ms: f64,
}

/// Works out [`SignalDelay`] from the same resampler and Opus settings the gateway uses.
pub fn signal_delay() -> SignalDelay {
    use vocalized_media::core::resample::StreamResampler;
    let resampler_ms = |from: u32, to: u32| {
        StreamResampler::new(from, to)
            .map_or(0.0, |r| r.delay_samples() as f64 * 1000.0 / f64::from(to))
    };
    let lookahead_ms = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .and_then(|mut e| e.get_lookahead())
        .map_or(0.0, |samples| f64::from(samples) / 48.0);
    SignalDelay {
        caller_to_provider_ms: resampler_ms(48_000, 24_000),
        provider_to_caller_ms: resampler_ms(24_000, 48_000) + lookahead_ms,
    }
}

/// Caller audio bytes at the provider up to the end of caller frame `k`.
fn frame_end_bytes(k: usize) -> u64 {
    (k as u64 + 1) * PROVIDER_FRAME_BYTES
}

/// Most frames [`align`] considers missing from the start of a call.
const MAX_SHIFT: usize = 250;

/// How `provider`'s appends line up with `caller`'s frames: `(shift, median latency µs)`
/// of a sample of frames, or `None` if no alignment keeps every frame arriving after it
/// was sent, or the provider got more audio than the caller sent.
///
/// Shift `s` supposes the first `s` frames never reached the provider (a gateway that
/// drops audio before the call is answered), so that the audio it did get starts at
/// frame `s`. Each extra frame of shift takes 20 ms off every latency, so the largest
/// shift that keeps them all non-negative is the one consistent with causality; the
/// audio missing at the end (in flight at hang-up) is the rest.
fn align(caller: &WebCallerLog, provider: &ProviderLog) -> Option<(usize, u64)> {
    let (_, total) = provider.appends.last()?;
    let received = (*total / PROVIDER_FRAME_BYTES) as usize;
    let missing = caller.sent_at.len().checked_sub(received)?;
    let step = (provider.appends.len() / 200).max(1);
    let latencies = |shift: usize| -> Option<Vec<u64>> {
        let mut out = Vec::with_capacity(provider.appends.len() / step + 1);
        for (at, total) in provider.appends.iter().step_by(step) {
            let complete = (*total / PROVIDER_FRAME_BYTES) as usize;
            if complete == 0 {
                continue;
            }
            let sent = *caller.sent_at.get(complete - 1 + shift)?;
            out.push(at.checked_duration_since(sent)?.as_micros() as u64);
        }
        Some(out)
    };
    let mut best = None;
    for shift in 0..=missing.min(MAX_SHIFT) {
        match latencies(shift) {
            Some(l) => best = Some((shift, l)),
            None => break,
        }
    }
    let (shift, mut l) = best?;
    l.sort_unstable();
    Some((shift, l.get(l.len() / 2).copied().unwrap_or(0)))
}

/// Pairs provider sessions with the callers they served: for each session, the caller
/// whose frames fit its appends with the lowest median latency and none negative (a
/// caller that started later would have frames arrive before they were sent; one that
/// started earlier fits only with more latency). Greedy, best fit first, one to one.
/// Returns `(session index, caller index)` pairs.
pub fn pair(callers: &[WebCallerLog], providers: &[ProviderLog]) -> Vec<(usize, usize)> {
    let mut fits = Vec::new();
    for (p, provider) in providers.iter().enumerate() {
        for (c, caller) in callers.iter().enumerate() {
            if let Some((_, score)) = align(caller, provider) {
                fits.push((score, p, c));
            }
        }
    }
    super::stats::pair_best_first(fits, providers.len(), callers.len())
}

/// Joins browser callers with the provider sessions (logged in
/// [`super::provider::ProbeMode::Positions`]) into the level's figures; records drift
/// against `epoch`. Sets each paired session's `call`.
pub fn join(
    callers: &[WebCallerLog],
    providers: &mut [ProviderLog],
    drift: &Drift,
    epoch: Instant,
) -> (JoinedFigures, FrameCounts) {
    let pairs = pair(callers, providers);
    let mut f = JoinedFigures::default();
    let mut counts = FrameCounts::default();
    let mut setup = new_histogram();
    let mut setup_gateway = new_histogram();
    let mut signalling = new_histogram();
    let mut connect = new_histogram();
    let mut c2p = new_histogram();
    let mut c2p_setup = new_histogram();
    let mut p2c = new_histogram();
    let mut jitter = new_histogram();
    let session_of: HashMap<usize, usize> = pairs.iter().map(|&(p, c)| (c, p)).collect();
    for (p, c) in &pairs {
        providers[*p].call = Some(callers[*c].index);
    }
    for (c, caller) in callers.iter().enumerate() {
        counts.caller_sent += caller.sent_at.len() as u64;
        let provider = session_of.get(&c).map(|&p| &providers[p]);
        if let Some(answered) = caller.answered_at {
            let offer = answered.saturating_duration_since(caller.offer_sent_at);
            signalling.saturating_record(offer.as_micros() as u64);
            if let Some(connected) = caller.connected_at {
                let ice = connected.saturating_duration_since(answered);
                connect.saturating_record(ice.as_micros() as u64);
            }
        }
        if let Some(total) = caller.setup() {
            setup.saturating_record(total.as_micros() as u64);
            if let Some(own) = provider.and_then(ProviderLog::own_setup) {
                setup_gateway.saturating_record(total.saturating_sub(own).as_micros() as u64);
            }
        }
        let Some(provider) = provider else {
            counts.caller_lost += caller.sent_at.len() as u64;
            continue;
        };
        let shift = align(caller, provider).map_or(0, |(s, _)| s);
        let received = caller_to_provider(
            caller,
            provider,
            shift,
            &mut c2p,
            &mut c2p_setup,
            drift,
            epoch,
        );
        counts.caller_received += received;
        counts.caller_lost += caller.sent_at.len() as u64 - received;
        counts.caller_lost_first += shift as u64;
        let mut heard = new_histogram();
        provider_to_caller(
            caller,
            provider,
            &mut counts,
            &mut heard,
            &mut jitter,
            drift,
            epoch,
        );
        merge(&mut p2c, &heard);
    }
    for (p, provider) in providers.iter().enumerate() {
        counts.responses_cancelled += provider.cancelled.len() as u64;
        if !pairs.iter().any(|&(q, _)| q == p) {
            // Audio no caller could have sent (or a session the bench cannot place).
            counts.cross_wired +=
                provider.appends.last().map_or(0, |(_, n)| *n) / PROVIDER_FRAME_BYTES;
        }
    }
    f.setup = Percentiles::of(&setup);
    f.setup_gateway = Percentiles::of(&setup_gateway);
    f.setup_signalling = Percentiles::of(&signalling);
    f.setup_connect = Percentiles::of(&connect);
    f.caller_to_provider = Percentiles::of(&c2p);
    f.caller_to_provider_during_setup = Percentiles::of(&c2p_setup);
    f.provider_to_caller = Percentiles::of(&p2c);
    f.jitter = Percentiles::of(&jitter);
    (f, counts)
}

/// Times every caller frame that reached `provider` (by position, see the module doc;
/// the first `shift` frames never did, see [`align`]); returns how many did.
fn caller_to_provider(
    caller: &WebCallerLog,
    provider: &ProviderLog,
    shift: usize,
    steady: &mut Histogram<u64>,
    during_setup: &mut Histogram<u64>,
    drift: &Drift,
    epoch: Instant,
) -> u64 {
    let mut k = 0;
    for (at, total) in &provider.appends {
        while k + shift < caller.sent_at.len() && frame_end_bytes(k) <= *total {
            let sent = caller.sent_at[k + shift];
            let us = at.saturating_duration_since(sent).as_micros() as u64;
            if provider.upgraded_at.is_some_and(|up| sent >= up) {
                steady.saturating_record(us);
                drift.record(
                    at.saturating_duration_since(epoch),
                    Direction::CallerToProvider,
                    us,
                );
            } else {
                during_setup.saturating_record(us);
            }
            k += 1;
        }
    }
    k as u64
}

/// Times every agent frame the caller heard against when the fake sent that audio, and
/// counts what should have been heard and was not.
fn provider_to_caller(
    caller: &WebCallerLog,
    provider: &ProviderLog,
    counts: &mut FrameCounts,
    latency: &mut Histogram<u64>,
    jitter: &mut Histogram<u64>,
    drift: &Drift,
    epoch: Instant,
) {
    // Heard frames by run, each run by position.
    let mut runs: Vec<HashMap<u32, Instant>> = Vec::new();
    let mut run_starts: Vec<Instant> = Vec::new();
    for h in &caller.heard {
        if runs.len() <= h.run as usize {
            runs.resize_with(h.run as usize + 1, HashMap::new);
            run_starts.resize(h.run as usize + 1, h.at);
        }
        runs[h.run as usize].insert(h.pos, h.at);
    }
    // Each run belongs to the last reply whose first delta left before the run began. A
    // reply normally plays as one run; a playout underrun (the gateway's pacer ran dry,
    // e.g. starved of CPU) splits it, and its later runs are the rest of that reply,
    // heard late. Their positions restart, so they are counted, not timed.
    let first_delta: Vec<Option<Instant>> = (0..provider.responses.len())
        .map(|r| {
            provider
                .deltas
                .iter()
                .find(|d| d.response as usize == r)
                .map(|d| d.at)
        })
        .collect();
    let mut runs_of: Vec<Vec<usize>> = vec![Vec::new(); provider.responses.len()];
    for (run, start) in run_starts.iter().enumerate() {
        match first_delta
            .iter()
            .rposition(|at| at.is_some_and(|at| at <= *start))
        {
            Some(r) => runs_of[r].push(run),
            // Audio before any reply: nothing the fake sent.
            None => counts.provider_unstamped += 1,
        }
    }
    let hung_up = caller.ended_at;
    for (r, _) in provider.responses.iter().enumerate() {
        let deltas: Vec<_> = provider
            .deltas
            .iter()
            .filter(|d| d.response as usize == r)
            .collect();
        let total: u64 = deltas.iter().map(|d| u64::from(d.bytes)).sum();
        let expected = total.div_ceil(PROVIDER_FRAME_BYTES);
        let cancelled = provider.cancelled.contains(&(r as u32));
        let run = runs_of[r].first().and_then(|&i| runs.get(i));
        let mut lost = 0u64;
        let mut transits: Vec<(u32, u64)> = Vec::new();
        for j in 0..expected {
            let offset = j * PROVIDER_FRAME_BYTES;
            let Some(delta) = deltas
                .iter()
                .find(|d| d.start <= offset && offset < d.start + u64::from(d.bytes))
            else {
                continue;
            };
            let due = delta.at
                + Duration::from_micros((offset - delta.start) * 1000 / PROVIDER_BYTES_PER_MS);
            counts.provider_sent += 1;
            let near_hang_up = hung_up.is_none_or(|end| due + IN_FLIGHT_GRACE >= end);
            let near_barge_in = provider
                .speech_started
                .iter()
                .any(|ss| delta.at <= *ss && *ss - delta.at <= IN_FLIGHT_GRACE);
            match run.and_then(|frames| frames.get(&(j as u32))) {
                Some(at) => {
                    counts.provider_received += 1;
                    let us = at.saturating_duration_since(due).as_micros() as u64;
                    latency.saturating_record(us);
                    drift.record(
                        at.saturating_duration_since(epoch),
                        Direction::ProviderToCaller,
                        us,
                    );
                    transits.push((j as u32, us));
                }
                None if cancelled || near_hang_up || near_barge_in => counts.provider_exempt += 1,
                None => lost += 1,
            }
        }
        // The rest of a split reply: heard, late.
        let split: u64 = runs_of[r]
            .iter()
            .skip(1)
            .map(|&i| runs[i].len() as u64)
            .sum();
        let late_after_split = split.min(lost);
        counts.provider_received += late_after_split;
        counts.provider_late += late_after_split;
        counts.provider_lost += lost - late_after_split;
        // RFC 3550 D(i-1, i) between consecutive frames; late: more than one frame behind
        // the run's best-case schedule.
        let best = transits.iter().map(|(_, us)| *us).min().unwrap_or(0);
        for pair in transits.windows(2) {
            let ((a, ta), (b, tb)) = (pair[0], pair[1]);
            if b == a + 1 {
                jitter.saturating_record(ta.abs_diff(tb));
            }
        }
        counts.provider_late += transits.iter().filter(|(_, us)| us - best > 20_000).count() as u64;
        counts.provider_split_runs += runs_of[r].len().saturating_sub(1) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::provider::SentDelta;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn runs_are_cut_by_silence_and_positions_follow_sequence_numbers() {
        let t0 = Instant::now();
        let mut ears = Ears::default();
        // Silence, a run of three with seq 6 lost, silence, a run across the wrap.
        ears.hear(3, Some(-120.0), t0);
        ears.hear(4, Some(-20.0), t0 + ms(20));
        ears.hear(5, Some(-20.0), t0 + ms(40));
        ears.hear(7, Some(-20.0), t0 + ms(80));
        ears.hear(7, Some(-20.0), t0 + ms(81));
        ears.hear(8, Some(-90.0), t0 + ms(100));
        assert_eq!((ears.runs_started, ears.runs_done, ears.missing), (1, 1, 1));
        let positions: Vec<(u32, u32)> = ears.heard.iter().map(|h| (h.run, h.pos)).collect();
        assert_eq!(positions, vec![(0, 0), (0, 1), (0, 3)]);
        let mut ears = Ears::default();
        ears.hear(65_535, Some(-20.0), t0);
        ears.hear(0, Some(-20.0), t0 + ms(20));
        assert_eq!(ears.heard[1].pos, 1);
        assert_eq!(ears.first_audio_at, Some(t0));
    }

    #[test]
    fn the_reply_tone_is_never_silent_and_the_line_is_upsampled() {
        let tone = reply_tone(200);
        assert_eq!(tone.len(), 200 * 48);
        let pcm: Vec<i16> = tone
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        for frame in pcm.chunks(480) {
            let dbfs = rms_dbfs(frame);
            assert!((dbfs + 23.0).abs() < 1.0, "{dbfs}");
        }
        assert_eq!(caller_line().len(), crate::audio::caller_hello().len() * 6);
        assert_eq!(rms_dbfs(&[0; 960]), -120.0);
    }

    /// A caller who sent 10 frames from `t0`, every 20 ms.
    fn caller(index: u16, t0: Instant) -> WebCallerLog {
        let mut c = WebCallerLog::new(index);
        c.offer_sent_at = t0 - ms(100);
        c.sent_at = (0..10).map(|k| t0 + ms(20 * k)).collect();
        c.ended_at = Some(t0 + ms(10_000));
        c.outcome = CallOutcome::HungUp;
        c
    }

    /// A session that got each frame `lag_ms` after `t0 + 20k`, all ten.
    fn provider(t0: Instant, lag_ms: u64) -> ProviderLog {
        let mut p = ProviderLog::new(0x8000, t0 - ms(50));
        p.upgraded_at = Some(t0 - ms(40));
        p.appends = (0..10)
            .map(|k| (t0 + ms(20 * k + lag_ms), (k + 1) * PROVIDER_FRAME_BYTES))
            .collect();
        p
    }

    #[test]
    fn sessions_pair_with_the_caller_whose_frames_they_could_have_received() {
        let t0 = Instant::now();
        // Callers started 0, 3 and 60 ms apart; the sessions got their audio 2 ms late.
        let callers = vec![caller(0, t0), caller(1, t0 + ms(3)), caller(2, t0 + ms(60))];
        let providers = vec![
            provider(t0 + ms(60), 2),
            provider(t0, 2),
            provider(t0 + ms(3), 2),
        ];
        let mut pairs = pair(&callers, &providers);
        pairs.sort_unstable();
        assert_eq!(pairs, vec![(0, 2), (1, 0), (2, 1)]);
    }

    #[test]
    fn a_first_frame_the_gateway_dropped_is_lost_and_does_not_shift_the_rest() {
        let t0 = Instant::now();
        let c = caller(3, t0);
        let mut p = provider(t0, 2);
        // Frames 1..9 arrived 2 ms after they were sent; frame 0 never did.
        p.appends = (1..10)
            .map(|k| (t0 + ms(20 * k + 2), k * PROVIDER_FRAME_BYTES))
            .collect();
        let (f, counts) = join(&[c], &mut [p], &Drift::default(), t0);
        assert_eq!(
            (
                counts.caller_received,
                counts.caller_lost,
                counts.caller_lost_first
            ),
            (9, 1, 1)
        );
        assert!(
            (f.caller_to_provider.max_ms - 2.0).abs() < 0.1,
            "{:?}",
            f.caller_to_provider
        );
        // The last frame lost instead (in flight at hang-up): no shift.
        let c = caller(3, t0);
        let mut p = provider(t0, 2);
        p.appends.pop();
        let (f, counts) = join(&[c], &mut [p], &Drift::default(), t0);
        assert_eq!((counts.caller_lost, counts.caller_lost_first), (1, 0));
        assert!((f.caller_to_provider.max_ms - 2.0).abs() < 0.1);
    }

    #[test]
    fn latency_loss_and_jitter_by_position() {
        let t0 = Instant::now();
        let mut c = caller(7, t0);
        let mut p = provider(t0, 4);
        // The provider got only the first 8 frames: 2 lost.
        p.appends.truncate(8);
        // One reply of 100 ms in two 50 ms deltas sent at 1 s and 1.05 s.
        p.responses.push("resp_a".into());
        for (i, at) in [1_000, 1_050].into_iter().enumerate() {
            p.deltas.push(SentDelta {
                at: t0 + ms(at),
                response: 0,
                start: i as u64 * 50 * PROVIDER_BYTES_PER_MS,
                bytes: 50 * PROVIDER_BYTES_PER_MS as u32,
            });
        }
        p.first_response_create_at = Some(t0 + ms(900));
        p.first_delta_at = Some(t0 + ms(1_000));
        // Heard 12 ms after due, frame 2 lost, frame 4 30 ms late; plus a spurious run.
        for (pos, lag) in [(0u32, 12u64), (1, 12), (3, 12), (4, 42)] {
            c.heard.push(HeardFrame {
                run: 0,
                pos,
                at: t0 + ms(1_000 + 20 * u64::from(pos) + lag),
            });
        }
        // A run before any reply (nothing the fake sent), and one split off reply 0.
        c.heard.insert(
            0,
            HeardFrame {
                run: 0,
                pos: 0,
                at: t0 + ms(500),
            },
        );
        for h in &mut c.heard[1..] {
            h.run = 1;
        }
        c.heard.push(HeardFrame {
            run: 2,
            pos: 0,
            at: t0 + ms(5_000),
        });
        c.first_audio_at = Some(t0 + ms(1_012));
        let drift = Drift::default();
        let (f, counts) = join(&[c], &mut [p], &drift, t0);
        assert_eq!(
            (
                counts.caller_sent,
                counts.caller_received,
                counts.caller_lost
            ),
            (10, 8, 2)
        );
        assert_eq!(f.caller_to_provider.count, 8);
        assert!(
            (f.caller_to_provider.p50_ms - 4.0).abs() < 0.1,
            "{:?}",
            f.caller_to_provider
        );
        assert_eq!(
            (
                counts.provider_sent,
                counts.provider_received,
                counts.provider_lost
            ),
            (5, 5, 0),
            "frame 2, missing from the reply's first run, was heard after the split"
        );
        assert_eq!(counts.provider_late, 2);
        assert_eq!(
            (counts.provider_unstamped, counts.provider_split_runs),
            (1, 1)
        );
        assert!(
            (f.provider_to_caller.p50_ms - 12.0).abs() < 0.2,
            "{:?}",
            f.provider_to_caller
        );
        // Jitter only between neighbours: (0,1) → 0 ms, (3,4) → 30 ms.
        assert_eq!(f.jitter.count, 2);
        assert!((f.jitter.max_ms - 30.0).abs() < 0.5, "{:?}", f.jitter);
        // Setup 1112 ms, of which the fake's own: 10 ms handshake + 100 ms to respond.
        assert!((f.setup.p50_ms - 1_112.0).abs() < 12.0, "{:?}", f.setup);
        assert!(
            (f.setup_gateway.p50_ms - 1_002.0).abs() < 12.0,
            "{:?}",
            f.setup_gateway
        );
    }
}
