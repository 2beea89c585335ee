//! The server end of one browser call's WebRTC connection (webrtc-rs 0.21): built from
//! the browser's offer, answering with Opus only and every host candidate gathered (no
//! trickle: WHIP exchanges one offer and one answer), sending the agent through one
//! local Opus track and handing the browser's track and state changes to the call task.

use super::signalling::Refusal;
use crate::io::node::OpenPeer;
use axum::http::StatusCode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::debug;
use vocalized_shared::ice::IceServer;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateType, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

/// How browser calls connect.
#[derive(Clone, Debug)]
pub struct WebRtcConfig {
    /// The local address the media sockets bind to. `0.0.0.0` binds one socket per
    /// interface (loopback excluded); a concrete address binds that one.
    pub bind_ip: IpAddr,
    /// Announced instead of the bound address (`VOCALIZED_PUBLIC_IP`), for a server
    /// behind a 1:1 NAT such as a cloud VM with a public IP.
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN servers the peer uses too (the widget gets the same list).
    pub ice_servers: Vec<IceServer>,
    /// Longest wait for ICE gathering before answering with what was gathered.
    pub gather_timeout: Duration,
    /// A peer that has not connected this long after the answer is reaped.
    pub connect_timeout: Duration,
    /// Longest wait for the provider's WebSocket handshake.
    pub provider_connect_timeout: Duration,
    /// Take the caller's address from `X-Forwarded-For` (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Most browser calls being set up at once on this node (planned, then a peer built
    /// and answered: sockets, a DTLS certificate, up to `gather_timeout` of ICE and TURN).
    /// Offers beyond it are answered 503 with `Retry-After` before anything is built.
    pub max_peer_setups: usize,
}

/// Peers set up at once by default: a setup is mostly waiting (ICE gathering, at most
/// `gather_timeout`), so a 2-core node can have this many in flight, while a flood of
/// offers cannot pile up sockets and certificates without bound.
pub const DEFAULT_MAX_PEER_SETUPS: usize = 32;

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            public_ip: None,
            ice_servers: Vec::new(),
            gather_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(15),
            provider_connect_timeout: Duration::from_secs(3),
            trust_forwarded_for: false,
            max_peer_setups: DEFAULT_MAX_PEER_SETUPS,
        }
    }
}

/// What the connection reports to the call task.
pub enum PeerEvent {
    State(RTCPeerConnectionState),
    /// The browser's microphone track.
    Track(Arc<dyn TrackRemote>),
}

struct Handler {
    events: mpsc::UnboundedSender<PeerEvent>,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(%state, "peer connection state");
        let _ = self.events.send(PeerEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await == RtpCodecKind::Audio {
            let _ = self.events.send(PeerEvent::Track(track));
        }
    }
}

/// A peer that has answered the offer and is connecting.
pub struct Peer {
    pub connection: Arc<dyn PeerConnection>,
    /// The agent's audio to the browser.
    pub track: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    /// Opus's payload type in the browser's offer (the answer keeps it).
    pub payload_type: u8,
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    /// The answer SDP, with every candidate gathered.
    pub answer: String,
    closer: Closer,
}

impl Peer {
    /// Closes the connection (idempotent).
    pub async fn close(&self) {
        self.closer.close().await;
    }
}

/// Closes a connection that is dropped unclosed: its sockets, ICE agent and DTLS state
/// live in tasks of their own and would otherwise outlive the call (a peer abandoned
/// mid-answer, a task that panicked). Holds the node's count of open peers.
struct Closer {
    connection: Arc<dyn PeerConnection>,
    closed: AtomicBool,
    _open: OpenPeer,
}

impl Closer {
    async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if let Err(error) = self.connection.close().await {
            debug!(%error, "closing the peer connection");
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if *self.closed.get_mut() {
            return;
        }
        // Closing is async; outside a runtime (process exit) there is nothing to free.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let connection = Arc::clone(&self.connection);
            runtime.spawn(async move {
                if let Err(error) = connection.close().await {
                    debug!(%error, "closing a dropped peer connection");
                }
            });
        }
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

fn bad_offer(why: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "invalid_offer",
        format!("the offer could not be used: {why}"),
    )
}

fn unavailable(why: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("cannot open a media connection now: {why}"),
    )
}

/// Builds a peer for `offer_sdp` (already checked to offer Opus at `payload_type`) and
/// answers it. A malformed or unusable offer is a 400; failing to build a peer is a 503.
/// On any error the half-built connection is closed before returning; if this future is
/// dropped midway, it is closed in the background. `open` counts the peer on the node
/// until the peer is dropped.
pub async fn answer(
    config: &WebRtcConfig,
    offer_sdp: String,
    payload_type: u8,
    open: OpenPeer,
) -> Result<Peer, Refusal> {
    let offer = RTCSessionDescription::offer(offer_sdp).map_err(bad_offer)?;

    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type,
            },
            RtpCodecKind::Audio,
        )
        .map_err(unavailable)?;
    let registry =
        register_default_interceptors(Registry::new(), &mut media).map_err(unavailable)?;
    let mut settings = SettingEngineBuilder::new()
        // A browser that goes away without a DELETE (tab closed, network lost) is noticed
        // within seconds, not the default half minute.
        .with_ice_timeouts(
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(2)),
        )
        .with_include_loopback_candidate(config.bind_ip.is_loopback());
    if let Some(ip) = config.public_ip {
        settings = settings.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
    }
    let ice_servers = config
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect();
    let (events_tx, events) = mpsc::unbounded_channel();
    let (gathered_tx, mut gathered) = watch::channel(false);
    let connection: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .build(),
            )
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                events: events_tx,
                gathered: gathered_tx,
            }))
            .with_udp_addrs(vec![std::net::SocketAddr::new(config.bind_ip, 0)])
            .build()
            .await
            .map_err(unavailable)?,
    );
    let closer = Closer {
        connection: Arc::clone(&connection),
        closed: AtomicBool::new(false),
        _open: open,
    };

    let ssrc = rand_ssrc();
    let built = async {
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "vocalized".to_owned(),
                    "agent".to_owned(),
                    "agent".to_owned(),
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
            .map_err(unavailable)?,
        );
        connection
            .set_remote_description(offer)
            .await
            .map_err(bad_offer)?;
        connection
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(bad_offer)?;
        let answer = connection.create_answer(None).await.map_err(bad_offer)?;
        connection
            .set_local_description(answer)
            .await
            .map_err(bad_offer)?;
        // Answer once every host candidate is in the SDP (or after the gather timeout
        // with what there is: a relay that is slow to answer must not stall the call).
        let _ = tokio::time::timeout(config.gather_timeout, gathered.wait_for(|done| *done)).await;
        let answer = connection
            .local_description()
            .await
            .ok_or_else(|| unavailable("no local description"))?;
        Ok::<_, Refusal>((track, answer.sdp))
    }
    .await;
    match built {
        Ok((track, answer)) => Ok(Peer {
            connection,
            track,
            ssrc,
            payload_type,
            events,
            answer,
            closer,
        }),
        Err(refusal) => {
            closer.close().await;
            Err(refusal)
        }
    }
}

/// A random SSRC (RFC 3550 §8: chosen randomly so independent streams rarely collide).
fn rand_ssrc() -> u32 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
