//! Browser calls over real sockets: the signalling routes with a stand-in control plane,
//! and a webrtc-rs peer in this process playing the browser (Opus over DTLS-SRTP on
//! loopback) against the echo provider.
//!
//! The headless-Chromium test of the widget itself is `tests/widget_browser.rs` at the
//! workspace root; this file pins the server side without a browser.

use axum::http::StatusCode;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use vocalized_media::core::opus::{
    OPUS_FRAME_SAMPLES, OPUS_MAX_PACKET_BYTES, OPUS_MAX_PACKET_SAMPLES, OpusDecoder, OpusEncoder,
};
use vocalized_media::io::NodeState;
use vocalized_media::io::webrtc::{self as browser_calls, WebRtcConfig};
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::ids::{AgentId, CallId, WorkspaceId};
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::{CallPlan, CallSource, ProviderKind, ProviderTarget, Secret};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
};

/// The control plane, reduced to what the media plane asks of it.
struct FakeLink {
    plans: Mutex<Vec<(String, String)>>,
    events: Mutex<Vec<(CallId, CallEvent)>>,
    /// `pk_slow` plans wait here: told when planning starts, then for a permit.
    slow_entered: tokio::sync::Notify,
    slow_gate: tokio::sync::Semaphore,
}

impl Default for FakeLink {
    fn default() -> Self {
        Self {
            plans: Mutex::default(),
            events: Mutex::default(),
            slow_entered: tokio::sync::Notify::new(),
            slow_gate: tokio::sync::Semaphore::new(0),
        }
    }
}

impl FakeLink {
    fn plans(&self) -> usize {
        self.plans.lock().unwrap().len()
    }

    fn events(&self) -> Vec<CallEventKind> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.kind.clone())
            .collect()
    }
}

impl ControlLink for FakeLink {
    async fn plan_twilio_call(&self, _: &str, _: &str) -> Result<CallPlan, PlanError> {
        Err(PlanError::InvalidToken)
    }

    async fn plan_web_call(&self, key: &str, ip: &str) -> Result<CallPlan, PlanError> {
        let refused = |code: &str| {
            Err(PlanError::Refused {
                code: code.to_owned(),
            })
        };
        match key {
            "pk_echo" => {}
            "pk_slow" => {
                self.slow_entered.notify_one();
                self.slow_gate.acquire().await.unwrap().forget();
            }
            "pk_off" => return refused("calling_disabled"),
            "pk_busy" => return refused("too_many_calls"),
            _ => return Err(PlanError::InvalidToken),
        }
        let mut plans = self.plans.lock().unwrap();
        plans.push((key.to_owned(), ip.to_owned()));
        Ok(CallPlan {
            call_id: CallId(format!("call_{}", plans.len())),
            workspace_id: WorkspaceId("ws_1".into()),
            agent_id: AgentId("agt_1".into()),
            source: CallSource::Web,
            instructions: String::new(),
            settings: CallSettings::default(),
            tools: vec![],
            providers: vec![ProviderTarget {
                kind: ProviderKind::Echo,
                url: "builtin:echo".into(),
                api_key: Secret(String::new()),
                model: "echo".into(),
            }],
        })
    }

    fn emit(&self, call_id: &CallId, event: CallEvent) {
        self.events.lock().unwrap().push((call_id.clone(), event));
    }
}

async fn serve(link: Arc<FakeLink>, config: WebRtcConfig) -> (String, NodeState) {
    let node = NodeState::new();
    let app = browser_calls::router(link, node.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}"), node)
}

fn loopback() -> WebRtcConfig {
    WebRtcConfig {
        bind_ip: [127, 0, 0, 1].into(),
        ..Default::default()
    }
}

async fn post_offer(base: &str, key: &str, content_type: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/media/webrtc/{key}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The browser's side, played by webrtc-rs: an Opus track out, the agent's track in.
struct Browser {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    /// RMS of each 20 ms frame heard, with when it arrived.
    heard: Arc<Mutex<Vec<(Instant, f64)>>>,
    connected: watch::Receiver<bool>,
}

struct BrowserHandler {
    gathered: watch::Sender<bool>,
    connected: watch::Sender<bool>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for BrowserHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

impl Browser {
    /// A peer with its complete offer (every candidate gathered).
    async fn offer() -> (Self, String) {
        let mut media = MediaEngine::default();
        media.register_default_codecs().unwrap();
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (connected_tx, connected) = watch::channel(false);
        let (tracks_tx, mut tracks) = mpsc::unbounded_channel();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(media)
                .with_handler(Arc::new(BrowserHandler {
                    gathered: gathered_tx,
                    connected: connected_tx,
                    tracks: tracks_tx,
                }))
                .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
                .build()
                .await
                .unwrap(),
        );
        let ssrc = 0x5EED_0001;
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
                        codec: opus(),
                        ..Default::default()
                    }],
                ),
            )
            .unwrap(),
        );
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        tokio::spawn(async move {
            let Some(track) = tracks.recv().await else {
                return;
            };
            let mut decoder = OpusDecoder::new().unwrap();
            let mut pcm = vec![0i16; OPUS_MAX_PACKET_SAMPLES];
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event
                    && let Ok(n) = decoder.decode(&packet.payload, &mut pcm)
                {
                    let rms = (pcm[..n].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
                        / n.max(1) as f64)
                        .sqrt();
                    sink.lock().unwrap().push((Instant::now(), rms));
                }
            }
        });
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g))
            .await
            .expect("the browser gathered its candidates")
            .unwrap();
        let sdp = pc.local_description().await.unwrap().sdp;
        (
            Browser {
                pc,
                track,
                ssrc,
                heard,
                connected,
            },
            sdp,
        )
    }

    async fn accept(&mut self, answer: String) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.connected.wait_for(|c| *c))
            .await
            .expect("the browser connected")
            .unwrap();
    }

    /// Speaks `ms` of a loud 440 Hz tone (or silence) at real-time pace, 20 ms per packet.
    async fn speak(&self, encoder: &mut OpusEncoder, ms: u64, loud: bool, phase: &mut usize) {
        let mut out = vec![0u8; OPUS_MAX_PACKET_BYTES];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..ms / 20 {
            tick.tick().await;
            let frame: Vec<i16> = (0..OPUS_FRAME_SAMPLES)
                .map(|i| {
                    let t = (*phase + i) as f64 / 48_000.0;
                    if loud {
                        ((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16
                    } else {
                        0
                    }
                })
                .collect();
            *phase += OPUS_FRAME_SAMPLES;
            let len = encoder.encode(&frame, &mut out).unwrap();
            self.track
                .sample_writer(self.ssrc, 111)
                .write_sample(&Sample {
                    data: bytes::Bytes::copy_from_slice(&out[..len]),
                    duration: Duration::from_millis(20),
                    ..Sample::new(Instant::now())
                })
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_peer_hears_its_echo_and_hangs_up() {
    let link = Arc::new(FakeLink::default());
    let (base, node) = serve(Arc::clone(&link), loopback()).await;
    let (mut browser, offer) = Browser::offer().await;

    let resp = post_offer(&base, "pk_echo", "application/sdp", offer).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "application/sdp");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/media/webrtc/sessions/"),
        "{location}"
    );
    let answer = resp.text().await.unwrap();
    assert!(answer.contains("opus/48000"), "the answer keeps Opus");
    assert!(
        answer.contains("a=candidate:"),
        "candidates are in the answer (no trickle)"
    );
    assert!(
        answer.contains("127.0.0.1"),
        "the host candidate is the bound address"
    );
    assert_eq!(link.plans(), 1);
    assert_eq!(node.active_calls(), 1);

    browser.accept(answer).await;
    wait_for("answered", Duration::from_secs(5), || {
        link.events().contains(&CallEventKind::Answered)
    })
    .await;

    let mut encoder = OpusEncoder::new().unwrap();
    let mut phase = 0;
    browser.speak(&mut encoder, 600, false, &mut phase).await;
    let spoke_at = Instant::now();
    browser.speak(&mut encoder, 1_000, true, &mut phase).await;
    browser.speak(&mut encoder, 1_600, false, &mut phase).await;

    let heard = browser.heard.lock().unwrap().clone();
    assert!(
        heard.len() > 100,
        "the agent's stream is continuous: {}",
        heard.len()
    );
    let loud: Vec<Duration> = heard
        .iter()
        .filter(|(_, rms)| *rms > 1_000.0)
        .map(|(at, _)| at.saturating_duration_since(spoke_at))
        .collect();
    let before = heard.iter().filter(|(at, _)| *at < spoke_at).count();
    assert!(before > 10, "frames arrived before the caller spoke");
    assert!(
        heard
            .iter()
            .filter(|(at, _)| *at < spoke_at)
            .all(|(_, rms)| *rms < 50.0),
        "silence before the caller spoke"
    );
    // About a second of tone comes back, starting half a second after it was spoken.
    assert!(
        (35..=60).contains(&loud.len()),
        "{} loud frames",
        loud.len()
    );
    let first = loud[0];
    assert!(
        first >= Duration::from_millis(450) && first <= Duration::from_millis(1_000),
        "the echo started {first:?} after the caller spoke"
    );

    let client = reqwest::Client::new();
    let hang_up = client
        .delete(format!("{base}{location}"))
        .send()
        .await
        .unwrap();
    assert_eq!(hang_up.status(), StatusCode::NO_CONTENT);
    wait_for("the call to end", Duration::from_secs(5), || {
        node.active_calls() == 0
    })
    .await;
    let kinds = link.events();
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Usage { .. })),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, CallEventKind::Transcript { .. }))
    );
    let again = client
        .delete(format!("{base}{location}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let _ = browser.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_connects_is_reaped_and_the_call_ends_not_connected() {
    let link = Arc::new(FakeLink::default());
    let config = WebRtcConfig {
        connect_timeout: Duration::from_millis(800),
        ..loopback()
    };
    let (base, node) = serve(Arc::clone(&link), config).await;
    let (browser, offer) = Browser::offer().await;
    let resp = post_offer(&base, "pk_echo", "application/sdp", offer).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // The browser never applies the answer, so ICE never completes.
    wait_for("the reaper", Duration::from_secs(5), || {
        node.active_calls() == 0
    })
    .await;
    assert_eq!(
        link.events(),
        vec![CallEventKind::Ended(EndReason::NotConnected)]
    );
    let _ = browser.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_clear_4xx_and_leaves_nothing_behind() {
    let link = Arc::new(FakeLink::default());
    let (base, node) = serve(Arc::clone(&link), loopback()).await;
    let (browser, offer) = Browser::offer().await;
    let no_opus = offer
        .lines()
        .filter(|l| !l.to_ascii_lowercase().contains("opus"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let cases = [
        (
            "pk_echo",
            "application/json",
            offer.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "pk_echo",
            "application/sdp",
            "hello".to_owned(),
            400,
            "invalid_offer",
        ),
        ("pk_echo", "application/sdp", no_opus, 400, "invalid_offer"),
        (
            "pk_echo",
            "application/sdp",
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n".to_owned(),
            400,
            "invalid_offer",
        ),
        (
            "pk_echo",
            "application/sdp",
            "v=0\r\n".repeat(20_000),
            413,
            "offer_too_large",
        ),
        (
            "pk_unknown",
            "application/sdp",
            offer.clone(),
            404,
            "not_found",
        ),
        (
            "pk_off",
            "application/sdp",
            offer.clone(),
            403,
            "calling_disabled",
        ),
        (
            "pk_busy",
            "application/sdp",
            offer.clone(),
            429,
            "too_many_calls",
        ),
    ];
    for (key, content_type, body, status, code) in cases {
        let resp = post_offer(&base, key, content_type, body).await;
        assert_eq!(
            resp.status().as_u16(),
            status,
            "{key} {content_type} {code}"
        );
        let error: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["code"], code);
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(link.plans(), 0, "no call was started");
    assert_eq!(node.active_calls(), 0, "no peer was left running");
    assert!(link.events().is_empty());
    let unknown = reqwest::Client::new()
        .delete(format!("{base}/media/webrtc/sessions/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // The widget runs on other sites: the preflight is allowed and Location is readable.
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/media/webrtc/pk_echo"),
        )
        .header("origin", "https://customer.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let _ = browser.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_for_an_unknown_key_never_build_a_peer() {
    let link = Arc::new(FakeLink::default());
    let (base, node) = serve(Arc::clone(&link), loopback()).await;
    let (browser, offer) = Browser::offer().await;
    let client = reqwest::Client::new();
    let mut offers = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (client, base, offer) = (client.clone(), base.clone(), offer.clone());
        offers.spawn(async move {
            let resp = client
                .post(format!("{base}/media/webrtc/pk_unknown"))
                .header("content-type", "application/sdp")
                .body(offer)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let error: serde_json::Value = resp.json().await.unwrap();
            (
                status,
                error["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        });
    }
    while let Some(answer) = offers.join_next().await {
        assert_eq!(
            answer.unwrap(),
            (StatusCode::NOT_FOUND, "not_found".to_owned())
        );
    }
    assert_eq!(
        node.webrtc_peers_built(),
        0,
        "a peer was built for an unknown key"
    );
    assert_eq!(node.webrtc_peers_open(), 0);
    let _ = browser.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_setting_up_its_most_peers_turns_offers_away_with_retry_after() {
    let link = Arc::new(FakeLink::default());
    let config = WebRtcConfig {
        max_peer_setups: 1,
        ..loopback()
    };
    let (base, node) = serve(Arc::clone(&link), config).await;
    let (mut first, first_offer) = Browser::offer().await;
    let (second, second_offer) = Browser::offer().await;

    // The first offer holds the node's only setup place while its plan is slow.
    let pending = tokio::spawn({
        let base = base.clone();
        async move { post_offer(&base, "pk_slow", "application/sdp", first_offer).await }
    });
    link.slow_entered.notified().await;
    let busy = post_offer(&base, "pk_echo", "application/sdp", second_offer.clone()).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        busy.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .is_ok_and(|s| s >= 1),
        "Retry-After in seconds"
    );
    let error: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(error["error"]["code"], "busy");
    assert_eq!(link.plans(), 0, "the refused offer started no call");
    assert_eq!(node.webrtc_peers_built(), 0, "nor built a peer");

    link.slow_gate.add_permits(1);
    let resp = pending.await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    first.accept(resp.text().await.unwrap()).await;
    // Once the first peer has answered, its place is free again.
    let again = post_offer(&base, "pk_echo", "application/sdp", second_offer).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(node.webrtc_peers_built(), 2);
    let _ = first.pc.close().await;
    let _ = second.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_leaves_mid_answer_leaves_no_peer_or_call_behind() {
    let link = Arc::new(FakeLink::default());
    let config = WebRtcConfig {
        // Whether the set-up notices the caller left before its answer is ready depends on
        // when the server reads the closed connection; if it does not, the peer that never
        // connects is reaped at this timeout. Either way nothing may be left behind.
        connect_timeout: Duration::from_secs(2),
        ..loopback()
    };
    let (base, node) = serve(Arc::clone(&link), config).await;
    let (browser, offer) = Browser::offer().await;
    // A raw socket rather than an aborted client request: dropping it closes the
    // connection at once, whereas a client's pooled connection closes later, in its own
    // task, and may lose the race with the answer on a loaded machine.
    let mut socket = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /media/webrtc/pk_slow HTTP/1.1\r\nHost: vocalized.test\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        offer.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(offer.as_bytes()).await.unwrap();
    link.slow_entered.notified().await;
    drop(socket);
    link.slow_gate.add_permits(1);
    wait_for("the abandoned call to end", Duration::from_secs(10), || {
        link.events()
            .contains(&CallEventKind::Ended(EndReason::NotConnected))
    })
    .await;
    wait_for("the peer to go", Duration::from_secs(5), || {
        node.webrtc_peers_open() == 0 && node.active_calls() == 0
    })
    .await;
    assert_eq!(link.plans(), 1);
    let _ = browser.pc.close().await;
}
