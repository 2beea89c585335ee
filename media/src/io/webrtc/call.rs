//! One browser call: the WebRTC peer bridged to the agent's provider through the
//! sans-IO [`CallSession`], the same shape as the phone driver (`twilio_call.rs`).
//!
//! One task owns the call and `select!`s over: the peer's state changes and the
//! browser's RTP (Opus → PCM 48 kHz → session), the provider, the pacer's next 20 ms tick
//! (session audio → pacer → Opus → RTP), the session's deadlines, the hang-up request
//! (`DELETE`), and the connect deadline that reaps a peer that never came up.
//!
//! Lost packets are recovered from the next packet's in-band FEC when exactly one is
//! missing, otherwise concealed (up to [`MAX_CONCEALED`] frames); undecodable packets are
//! counted and skipped.

use super::peer::{Peer, PeerEvent};
use crate::core::opus::{OPUS_FRAME_SAMPLES, OPUS_MAX_PACKET_BYTES, OPUS_MAX_PACKET_SAMPLES};
use crate::core::opus::{OpusDecoder, OpusEncoder};
use crate::core::pacer::{Pacer, PacerConfig};
use crate::core::session::{
    CallSession, CallerOutput, Input, Output, SessionConfig, WEB_CALLER_FORMAT,
};
use crate::io::metrics::{self, Kind};
use crate::io::provider::{Failure, ProviderChain};
use bytes::Bytes;
use rtc::media::Sample;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use vocalized_shared::events::{CallEventKind, EndReason};
use vocalized_shared::link::ControlLink;
use vocalized_shared::plan::CallPlan;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

/// Most missing frames filled by concealment after a gap; a longer gap is skipped.
pub const MAX_CONCEALED: u16 = 5;
/// Browser packets queued between the track reader and the call task.
const RTP_QUEUE: usize = 64;

/// What a call counted that a healthy call never sees, for metrics and the end log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebCallCounters {
    pub packets: u64,
    pub bad_packets: u64,
    pub lost_packets: u64,
    pub recovered_fec: u64,
    pub concealed: u64,
    pub dropped_queue_full: u64,
    pub encode_errors: u64,
}

/// An RTP packet's sequence number and Opus payload.
type Packet = (u16, Bytes);

/// Runs the call to its end. `hangup` fires on `DELETE`.
pub async fn run<L: ControlLink>(
    plan: CallPlan,
    mut peer: Peer,
    link: Arc<L>,
    hangup: oneshot::Receiver<()>,
    connect_timeout: Duration,
    provider_connect_timeout: Duration,
) {
    let call_id = plan.call_id.clone();
    let mut chain = ProviderChain::new(&plan, WEB_CALLER_FORMAT, provider_connect_timeout);
    let Some((input, output)) = chain.initial_formats() else {
        warn!("the call plan names no provider");
        fail_unconnected(&plan, link.as_ref(), "provider_unavailable");
        peer.close().await;
        return;
    };
    let mut session = match CallSession::new(SessionConfig::for_plan(&plan, input, output)) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot set up the call's audio path");
            fail_unconnected(&plan, link.as_ref(), "internal_error");
            peer.close().await;
            return;
        }
    };
    let (Ok(mut decoder), Ok(mut encoder)) = (OpusDecoder::new(), OpusEncoder::new()) else {
        warn!("cannot create the Opus codec");
        fail_unconnected(&plan, link.as_ref(), "internal_error");
        peer.close().await;
        return;
    };

    let mut pacer = Pacer::new(PacerConfig::webrtc());
    let mut pcm = vec![0i16; OPUS_MAX_PACKET_SAMPLES];
    let mut encoded = vec![0u8; OPUS_MAX_PACKET_BYTES];
    let mut silence = SilenceCache::default();
    let mut counters = WebCallCounters::default();
    let mut last_seq: Option<u16> = None;
    let (rtp_tx, mut rtp_rx) = mpsc::channel::<Packet>(RTP_QUEUE);
    let mut reader: Option<tokio::task::JoinHandle<u64>> = None;
    let mut hangup = hangup;
    let mut hangup_open = true;
    let connect_deadline = tokio::time::Instant::now() + connect_timeout;
    let mut connected = false;

    loop {
        let mut provider_lost = false;
        while let Some(out) = session.poll_output() {
            match out {
                Output::Caller(CallerOutput::WebAudio(samples)) => pacer.push(samples),
                Output::Caller(CallerOutput::WebFlush) => pacer.flush(),
                Output::Caller(CallerOutput::Hangup | CallerOutput::Twilio(_)) => {}
                Output::Provider(cmd) => {
                    if !chain.send(&cmd, Instant::now()).await {
                        provider_lost = true;
                    }
                }
                Output::Event(event) => {
                    metrics::observe_event(&event.kind);
                    chain.observe(&event);
                    link.emit(&call_id, event);
                }
            }
        }
        if provider_lost && !session.is_ended() {
            chain
                .recover(Failure::Failed("provider_closed".into()), &mut session)
                .await;
            continue;
        }
        if session.is_ended() {
            break;
        }
        let session_deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        let tick = if connected {
            pacer.next_deadline().map(tokio::time::Instant::from_std)
        } else {
            None
        };
        tokio::select! {
            event = peer.events.recv() => match event {
                Some(PeerEvent::State(RTCPeerConnectionState::Connected)) if !connected => {
                    connected = true;
                    session.handle_input(Input::WebAnswered, Instant::now());
                    let started = Instant::now();
                    if chain.start(&mut session).await {
                        metrics::get().setup.observe(started.elapsed().as_secs_f64());
                    }
                    // Start the outgoing clock: the browser hears comfort silence until the
                    // agent speaks, so its jitter buffer settles before the first word.
                    send_due_frames(&mut pacer, &mut encoder, &mut encoded, &mut silence, &peer, &mut counters).await;
                }
                Some(PeerEvent::State(
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
                    | RTCPeerConnectionState::Disconnected,
                )) => session.handle_input(Input::WebFailed, Instant::now()),
                Some(PeerEvent::State(_)) => {}
                Some(PeerEvent::Track(track)) => {
                    if reader.is_none() {
                        reader = Some(tokio::spawn(read_track(track, rtp_tx.clone())));
                    }
                }
                None => session.handle_input(Input::WebFailed, Instant::now()),
            },
            // Not before Connected: the browser may send its first packet before the peer
            // reports the state, and the session drops audio before the answer. Packets
            // wait in the queue meanwhile, so the call's first words are not lost.
            Some((seq, payload)) = rtp_rx.recv(), if connected => {
                counters.packets += 1;
                let now = Instant::now();
                receive(seq, &payload, &mut last_seq, &mut decoder, &mut pcm, &mut counters, |frame| {
                    session.handle_input(Input::WebAudio(frame), now);
                });
            }
            wake = chain.wake() => {
                let now = Instant::now();
                if let Some(failure) = chain.deliver(wake, now, &mut session)
                    && !session.is_ended()
                {
                    chain.recover(failure, &mut session).await;
                }
            }
            _ = sleep_until(tick) => {
                send_due_frames(&mut pacer, &mut encoder, &mut encoded, &mut silence, &peer, &mut counters).await;
                session.handle_input(Input::Timeout, Instant::now());
            }
            _ = sleep_until(session_deadline) => session.handle_input(Input::Timeout, Instant::now()),
            _ = &mut hangup, if hangup_open => {
                hangup_open = false;
                session.handle_input(Input::WebHangup, Instant::now());
            }
            _ = tokio::time::sleep_until(connect_deadline), if !connected => {
                debug!("the browser never connected: reaping the peer");
                session.handle_input(Input::WebFailed, Instant::now());
            }
        }
    }

    chain.close().await;
    peer.close().await;
    if let Some(reader) = reader {
        reader.abort();
    }
    let malformed = counters.bad_packets;
    metrics::get()
        .malformed_frames
        .get_or_create(&Kind { kind: "webrtc" })
        .inc_by(malformed);
    let stats = pacer.stats();
    info!(
        packets = counters.packets,
        lost = counters.lost_packets,
        recovered_fec = counters.recovered_fec,
        concealed = counters.concealed,
        bad_packets = counters.bad_packets,
        queue_drops = counters.dropped_queue_full,
        frames_played = stats.frames_played,
        underruns = stats.underruns,
        late_frames = stats.late_frames,
        silence_reused = silence.reused,
        "browser call finished"
    );
}

/// Ends a call that never got a session: its only events are `ended`.
fn fail_unconnected<L: ControlLink>(plan: &CallPlan, link: &L, code: &str) {
    link.emit(
        &plan.call_id,
        vocalized_shared::events::CallEvent {
            seq: 1,
            at_ms: 0,
            kind: CallEventKind::Ended(EndReason::ProviderError { code: code.into() }),
        },
    );
}

/// Decodes one packet, recovering or concealing what was lost before it, and hands each
/// 20 ms frame to `deliver` in order.
fn receive(
    seq: u16,
    payload: &[u8],
    last_seq: &mut Option<u16>,
    decoder: &mut OpusDecoder,
    pcm: &mut [i16],
    counters: &mut WebCallCounters,
    mut deliver: impl FnMut(&[i16]),
) {
    if let Some(last) = *last_seq {
        let gap = seq.wrapping_sub(last);
        if gap == 0 || gap > u16::MAX / 2 {
            // A duplicate or a late packet already concealed: playing it now would
            // shift the caller's audio in time.
            counters.bad_packets += 1;
            return;
        }
        let missing = gap - 1;
        counters.lost_packets += u64::from(missing);
        if missing == 1 {
            if let Ok(n) = decoder.decode_fec(payload, pcm) {
                counters.recovered_fec += 1;
                deliver(&pcm[..n]);
            }
        } else if (2..=MAX_CONCEALED).contains(&missing) {
            for _ in 0..missing {
                if let Ok(n) = decoder.conceal(&mut pcm[..OPUS_FRAME_SAMPLES]) {
                    counters.concealed += 1;
                    deliver(&pcm[..n]);
                }
            }
        }
    }
    *last_seq = Some(seq);
    match decoder.decode(payload, pcm) {
        Ok(n) if n > 0 => deliver(&pcm[..n]),
        Ok(_) => {}
        Err(error) => {
            counters.bad_packets += 1;
            debug!(%error, "undecodable Opus packet skipped");
        }
    }
}

/// Consecutive silent frames encoded before the silence packet is reused: by then the
/// encoder's lookahead and its FEC copy of the previous frame hold only silence.
const SILENCE_SETTLE_FRAMES: u32 = 3;

/// The encoded packet for digital silence, reused for the comfort silence between
/// replies. Encoding is most of a browser call's CPU (libopus with FEC), and the pacer
/// sends silence for every tick the agent is not speaking; a packet of silence decodes
/// the same whichever encoder state made it.
#[derive(Default)]
struct SilenceCache {
    /// Silent frames in a row, the current one included.
    run: u32,
    packet: Option<Bytes>,
    /// Frames sent from the cache instead of the encoder.
    reused: u64,
}

impl SilenceCache {
    /// The packet for `frame`: cached if it is settled silence, else encoded.
    fn packet(
        &mut self,
        frame: &[i16],
        encoder: &mut OpusEncoder,
        encoded: &mut [u8],
    ) -> Result<Bytes, crate::core::opus::OpusError> {
        let silent = frame.iter().all(|&s| s == 0);
        self.run = if silent {
            self.run.saturating_add(1)
        } else {
            0
        };
        if self.run > SILENCE_SETTLE_FRAMES
            && let Some(packet) = &self.packet
        {
            self.reused += 1;
            return Ok(packet.clone());
        }
        let len = encoder.encode(frame, encoded)?;
        let packet = Bytes::copy_from_slice(&encoded[..len]);
        if self.run == SILENCE_SETTLE_FRAMES {
            self.packet = Some(packet.clone());
        }
        Ok(packet)
    }
}

/// Encodes and sends every frame the pacer has due (agent audio or comfort silence).
async fn send_due_frames(
    pacer: &mut Pacer,
    encoder: &mut OpusEncoder,
    encoded: &mut [u8],
    silence: &mut SilenceCache,
    peer: &Peer,
    counters: &mut WebCallCounters,
) {
    loop {
        let now = Instant::now();
        let Some(frame) = pacer.poll(now) else {
            return;
        };
        let data = match silence.packet(frame, encoder, encoded) {
            Ok(data) => data,
            Err(error) => {
                counters.encode_errors += 1;
                debug!(%error, "Opus encode failed; frame skipped");
                continue;
            }
        };
        let sample = Sample {
            data,
            duration: crate::core::pacer::TICK,
            ..Sample::new(now)
        };
        if let Err(error) = peer
            .track
            .sample_writer(peer.ssrc, peer.payload_type)
            .write_sample(&sample)
            .await
        {
            debug!(%error, "RTP send failed");
        }
    }
}

/// Forwards the browser's RTP payloads to the call task; returns how many were dropped
/// because the call task had fallen behind.
async fn read_track(track: Arc<dyn TrackRemote>, tx: mpsc::Sender<Packet>) -> u64 {
    let mut dropped = 0;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let item = (packet.header.sequence_number, packet.payload);
                match tx.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    dropped
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_silence_is_sent_from_the_cache_and_speech_is_always_encoded() {
        let mut encoder = OpusEncoder::new().unwrap();
        let mut decoder = crate::core::opus::OpusDecoder::new().unwrap();
        let mut encoded = vec![0u8; OPUS_MAX_PACKET_BYTES];
        let mut cache = SilenceCache::default();
        let speech: Vec<i16> = (0..OPUS_FRAME_SAMPLES)
            .map(|s| ((s as f64 * 0.05).sin() * 8000.0) as i16)
            .collect();
        let silence = vec![0i16; OPUS_FRAME_SAMPLES];
        for _ in 0..5 {
            cache.packet(&speech, &mut encoder, &mut encoded).unwrap();
        }
        assert_eq!(cache.reused, 0);
        let mut sent = Vec::new();
        for _ in 0..10 {
            sent.push(cache.packet(&silence, &mut encoder, &mut encoded).unwrap());
        }
        // The first frames of silence are encoded (the encoder still carries speech in
        // its lookahead and FEC); the rest repeat the packet of the settled one.
        assert_eq!(cache.reused, 10 - u64::from(SILENCE_SETTLE_FRAMES));
        let settled = &sent[SILENCE_SETTLE_FRAMES as usize - 1];
        assert!(
            sent[SILENCE_SETTLE_FRAMES as usize..]
                .iter()
                .all(|p| p == settled)
        );
        let mut pcm = vec![0i16; crate::core::opus::OPUS_MAX_PACKET_SAMPLES];
        for packet in &sent[SILENCE_SETTLE_FRAMES as usize..] {
            let n = decoder.decode(packet, &mut pcm).unwrap();
            assert_eq!(n, OPUS_FRAME_SAMPLES);
            let peak = pcm[..n].iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(
                peak < 64,
                "a reused silence packet decodes to silence, peak {peak}"
            );
        }
        // Speech after it goes through the encoder again.
        let after = cache.packet(&speech, &mut encoder, &mut encoded).unwrap();
        assert_ne!(&after, settled);
        assert_eq!(cache.reused, 10 - u64::from(SILENCE_SETTLE_FRAMES));
    }

    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new().unwrap();
        let mut out = vec![0u8; OPUS_MAX_PACKET_BYTES];
        (0..n)
            .map(|i| {
                let frame: Vec<i16> = (0..OPUS_FRAME_SAMPLES)
                    .map(|s| (((s + i * 960) as f64 * 0.05).sin() * 8000.0) as i16)
                    .collect();
                let len = enc.encode(&frame, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect()
    }

    fn run_receive(seqs: &[(u16, usize)], payloads: &[Vec<u8>]) -> (usize, WebCallCounters) {
        let mut decoder = OpusDecoder::new().unwrap();
        let mut pcm = vec![0i16; OPUS_MAX_PACKET_SAMPLES];
        let mut counters = WebCallCounters::default();
        let mut last = None;
        let mut frames = 0;
        for &(seq, i) in seqs {
            receive(
                seq,
                &payloads[i],
                &mut last,
                &mut decoder,
                &mut pcm,
                &mut counters,
                |f| {
                    assert_eq!(f.len(), OPUS_FRAME_SAMPLES);
                    frames += 1;
                },
            );
        }
        (frames, counters)
    }

    #[test]
    fn one_lost_packet_is_recovered_from_fec_and_longer_gaps_are_concealed() {
        let p = packets(10);
        // In order, wrapping through 65535.
        let (frames, c) = run_receive(&[(65_534, 0), (65_535, 1), (0, 2)], &p);
        assert_eq!((frames, c.lost_packets), (3, 0));
        // One missing: FEC from the next packet fills it.
        let (frames, c) = run_receive(&[(10, 0), (12, 2)], &p);
        assert_eq!((frames, c.lost_packets, c.recovered_fec), (3, 1, 1));
        // Three missing: concealed, so the caller's audio keeps its timing.
        let (frames, c) = run_receive(&[(10, 0), (14, 4)], &p);
        assert_eq!((frames, c.concealed), (5, 3));
        // A gap too long to conceal is skipped, not filled with seconds of mush.
        let (frames, c) = run_receive(&[(10, 0), (100, 1)], &p);
        assert_eq!((frames, c.lost_packets, c.concealed), (2, 89, 0));
    }

    #[test]
    fn duplicates_late_packets_and_garbage_are_counted_and_skipped() {
        let mut p = packets(3);
        p.push(Vec::new());
        let (frames, c) = run_receive(&[(5, 0), (5, 0), (4, 1), (6, 3), (7, 2)], &p);
        assert_eq!(frames, 2, "only packets 5 and 7 play");
        assert_eq!(c.bad_packets, 3);
    }
}
