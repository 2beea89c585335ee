//! One Media Streams call as Twilio plays it (protocols.md §1.2–1.4, §1.9): `connected`,
//! `start`, then 160-byte µ-law `media` frames every 20 ms in real time, `stop` at the end;
//! meanwhile the gateway's `media`/`mark`/`clear` drive a simulated playback buffer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::playback::{Playback, PlayedChunk};
use super::signature::sign;
use crate::audio::{FRAME_BYTES, ULAW_SILENCE};
use crate::fakes::random_hex;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Malformed traffic to inject, to prove the gateway counts and skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// A text frame that is not JSON.
    NonJsonText,
    /// Well-formed JSON with an event Twilio never sends.
    UnknownEvent,
    /// A `media` event whose payload is not base64.
    BadBase64Media,
    /// A binary frame (Twilio only sends text).
    Binary,
}

/// How the fake call behaves.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Connect here (e.g. `ws://127.0.0.1:PORT/media/twilio`) instead of the TwiML's
    /// public `wss://` URL, which is still the one signed.
    pub connect_to: Option<String>,
    /// Sign the upgrade with `x-twilio-signature` under this auth token.
    pub auth_token: Option<String>,
    pub account_sid: String,
    pub stream_sid: String,
    /// Silence (0xFF) streamed after the caller audio, before `stop`.
    pub trailing_silence_ms: u32,
    /// Garbage to send, at offsets from `start`.
    pub garbage: Vec<(Duration, Garbage)>,
    /// Send one `media` frame before `start` (defensive ordering test, §1.9).
    pub media_before_start: bool,
    /// Cut the TCP connection (no `stop`, no close frame) this long after `start`.
    pub drop_after: Option<Duration>,
    /// Give up (send `stop`) after this long whatever happens, so a stuck gateway cannot
    /// hang a test.
    pub max_duration: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            connect_to: None,
            auth_token: None,
            account_sid: format!("AC{}", random_hex(32)),
            stream_sid: format!("MZ{}", random_hex(32)),
            trailing_silence_ms: 0,
            garbage: Vec::new(),
            media_before_start: false,
            drop_after: None,
            max_duration: Duration::from_secs(120),
        }
    }
}

/// A message the gateway sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The text frame, or `<binary N bytes>`.
    pub text: String,
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// We sent `stop` (audio ran out, `hang_up`, or `max_duration`) and closed.
    HungUp,
    /// The gateway closed the WebSocket (ends a `<Connect>` call, §1.9).
    GatewayClosed,
    /// We cut the connection on purpose (`drop_after` or `drop_connection`).
    Dropped,
    /// The socket failed under us.
    Failed(String),
}

/// Everything the fake observed during one call.
#[derive(Debug, Clone)]
pub struct TwilioCallRecord {
    pub call_sid: String,
    pub stream_sid: String,
    /// When `start` went out; `media` timestamps count from here.
    pub started_at: Instant,
    /// Send time of every caller `media` frame.
    pub media_sent_at: Vec<Instant>,
    /// Every gateway message with its arrival time.
    pub received: Vec<Received>,
    /// Agent audio bytes received in `media` events.
    pub media_bytes_received: usize,
    /// Agent audio that reached the caller (clears and hang-up cut it short).
    pub played: Vec<PlayedChunk>,
    pub marks_received: Vec<(Instant, String)>,
    pub marks_echoed: Vec<(Instant, String)>,
    pub clears: Vec<Instant>,
    /// Gateway frames that were not valid Twilio messages (bad JSON, unknown event, wrong
    /// `streamSid`, bad base64, binary).
    pub bad_messages: Vec<String>,
    pub end: Option<CallEnd>,
}

impl TwilioCallRecord {
    fn new(call_sid: &str, stream_sid: &str) -> Self {
        Self {
            call_sid: call_sid.to_owned(),
            stream_sid: stream_sid.to_owned(),
            started_at: Instant::now(),
            media_sent_at: Vec::new(),
            received: Vec::new(),
            media_bytes_received: 0,
            played: Vec::new(),
            marks_received: Vec::new(),
            marks_echoed: Vec::new(),
            clears: Vec::new(),
            bad_messages: Vec::new(),
            end: None,
        }
    }

    /// Bytes of agent audio the caller heard.
    pub fn played_bytes(&self) -> usize {
        self.played.iter().map(|c| c.bytes.len()).sum()
    }

    /// The agent audio the caller heard, concatenated.
    pub fn played_audio(&self) -> Vec<u8> {
        self.played
            .iter()
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// When the first agent audio arrived (for time-to-first-audio).
    pub fn first_media_at(&self) -> Option<Instant> {
        self.received
            .iter()
            .find(|r| r.text.contains(r#""event":"media""#))
            .map(|r| r.at)
    }
}

enum Control {
    HangUp,
    Drop,
}

/// A call in progress. Dropping it aborts the call.
pub struct TwilioCall {
    control: mpsc::Sender<Control>,
    record: Arc<Mutex<TwilioCallRecord>>,
    task: JoinHandle<()>,
}

impl TwilioCall {
    /// Opens the Media Streams socket and starts playing `caller_audio` (µ-law 8 kHz).
    /// `stream_url` is the TwiML `<Stream url>`; `token` goes in `customParameters`.
    pub async fn connect(
        stream_url: &str,
        token: &str,
        call_sid: &str,
        caller_audio: Vec<u8>,
        options: CallOptions,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let target = options.connect_to.as_deref().unwrap_or(stream_url);
        let mut request = target.into_client_request()?;
        if let Some(auth_token) = &options.auth_token {
            // Twilio signs the upgrade over the URL as written in the TwiML, no params.
            let signature = sign(stream_url, &[], auth_token);
            if let Ok(value) = signature.parse() {
                request.headers_mut().insert("x-twilio-signature", value);
            }
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let record = Arc::new(Mutex::new(TwilioCallRecord::new(
            call_sid,
            &options.stream_sid,
        )));
        let (control, control_rx) = mpsc::channel(4);
        let driver = Driver {
            ws,
            options,
            token: token.to_owned(),
            call_sid: call_sid.to_owned(),
            audio: caller_audio,
            record: record.clone(),
            playback: Playback::default(),
            sequence: 0,
            chunk: 0,
        };
        let task = tokio::spawn(driver.run(control_rx));
        Ok(Self {
            control,
            record,
            task,
        })
    }

    /// The caller hangs up now: `stop`, then close.
    pub async fn hang_up(&self) {
        let _ = self.control.send(Control::HangUp).await;
    }

    /// Cut the connection now with no `stop` and no close frame.
    pub async fn drop_connection(&self) {
        let _ = self.control.send(Control::Drop).await;
    }

    /// What has happened so far.
    pub fn snapshot(&self) -> TwilioCallRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the call to end by itself and returns its record.
    pub async fn finish(mut self) -> TwilioCallRecord {
        let _ = (&mut self.task).await;
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `check` holds on the record, checking every 10 ms; false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&TwilioCallRecord) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.snapshot()) {
                return true;
            }
            if Instant::now() >= deadline || self.task.is_finished() {
                return check(&self.snapshot());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TwilioCall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Driver {
    ws: Ws,
    options: CallOptions,
    token: String,
    call_sid: String,
    audio: Vec<u8>,
    record: Arc<Mutex<TwilioCallRecord>>,
    playback: Playback,
    /// Last `sequenceNumber` used; per stream, across every event type.
    sequence: u64,
    /// Last inbound `chunk` number.
    chunk: u64,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn with_record<T>(&self, f: impl FnOnce(&mut TwilioCallRecord) -> T) -> T {
        f(&mut self.record.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    async fn send_json(&mut self, value: Value) -> bool {
        self.ws.send(Message::text(value.to_string())).await.is_ok()
    }

    fn media_json(&mut self, frame: &[u8]) -> Value {
        self.chunk += 1;
        let sequence = self.next_sequence();
        json!({
            "event": "media",
            "sequenceNumber": sequence,
            "streamSid": self.options.stream_sid,
            "media": {
                "track": "inbound",
                "chunk": self.chunk.to_string(),
                // Ms of media since the stream started, on the media clock.
                "timestamp": ((self.chunk - 1) * 20).to_string(),
                "payload": B64.encode(frame),
            }
        })
    }

    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let end = self.call(&mut control).await;
        let now = Instant::now();
        let playback = std::mem::take(&mut self.playback);
        let played = playback.finish(now.into_std());
        self.with_record(|r| {
            r.played = played;
            r.end = Some(end);
        });
    }

    async fn call(&mut self, control: &mut mpsc::Receiver<Control>) -> CallEnd {
        let stream_sid = self.options.stream_sid.clone();
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        if !self.send_json(connected).await {
            return CallEnd::Failed("sending connected".into());
        }
        if self.options.media_before_start {
            let early = self.media_json(&[ULAW_SILENCE; FRAME_BYTES]);
            self.chunk = 0;
            if !self.send_json(early).await {
                return CallEnd::Failed("sending early media".into());
            }
        }
        let sequence = self.next_sequence();
        let start = json!({
            "event": "start",
            "sequenceNumber": sequence,
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": self.options.account_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": {"token": self.token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        });
        if !self.send_json(start).await {
            return CallEnd::Failed("sending start".into());
        }
        let started = Instant::now();
        self.with_record(|r| r.started_at = started);

        let mut garbage = self.options.garbage.clone();
        garbage.sort_by_key(|(at, _)| *at);
        let mut garbage = garbage.into_iter().peekable();
        let trailing = self.options.trailing_silence_ms as usize * 8;
        let total = self.audio.len() + trailing;
        let mut offset = 0usize;
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        // Twilio's media clock does not skip frames: if we fall behind, catch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let drop_at = self.options.drop_after.map(|d| started + d);
        let give_up_at = started + self.options.max_duration;

        loop {
            let mark_due = self.playback.poll_timeout().map(Instant::from_std);
            let garbage_due = garbage.peek().map(|(at, _)| started + *at);
            tokio::select! {
                _ = ticker.tick() => {
                    if offset >= total {
                        return self.hang_up().await;
                    }
                    let mut frame = [ULAW_SILENCE; FRAME_BYTES];
                    let end = (offset + FRAME_BYTES).min(total);
                    for (i, slot) in frame.iter_mut().enumerate().take(end - offset) {
                        *slot = self.audio.get(offset + i).copied().unwrap_or(ULAW_SILENCE);
                    }
                    offset = end;
                    let media = self.media_json(&frame);
                    if !self.send_json(media).await {
                        return CallEnd::Failed("sending media".into());
                    }
                    let now = Instant::now();
                    self.with_record(|r| r.media_sent_at.push(now));
                }
                message = self.ws.next() => match message {
                    Some(Ok(message)) => {
                        if matches!(message, Message::Close(_)) {
                            return CallEnd::GatewayClosed;
                        }
                        if !self.on_gateway_message(message).await {
                            return CallEnd::Failed("sending mark echo".into());
                        }
                    }
                    None => return CallEnd::GatewayClosed,
                    Some(Err(e)) => return CallEnd::Failed(e.to_string()),
                },
                () = sleep_until_opt(mark_due) => {
                    if !self.echo_due_marks().await {
                        return CallEnd::Failed("sending mark echo".into());
                    }
                }
                () = sleep_until_opt(garbage_due) => {
                    if let Some((_, kind)) = garbage.next()
                        && !self.send_garbage(kind).await
                    {
                        return CallEnd::Failed("sending garbage".into());
                    }
                }
                () = sleep_until_opt(drop_at) => return CallEnd::Dropped,
                () = tokio::time::sleep_until(give_up_at) => return self.hang_up().await,
                command = control.recv() => match command {
                    Some(Control::HangUp) | None => return self.hang_up().await,
                    Some(Control::Drop) => return CallEnd::Dropped,
                },
            }
        }
    }

    async fn hang_up(&mut self) -> CallEnd {
        let sequence = self.next_sequence();
        let stop = json!({
            "event": "stop",
            "sequenceNumber": sequence,
            "streamSid": self.options.stream_sid,
            "stop": {"accountSid": self.options.account_sid, "callSid": self.call_sid}
        });
        let _ = self.send_json(stop).await;
        let _ = self.ws.close(None).await;
        CallEnd::HungUp
    }

    async fn echo_due_marks(&mut self) -> bool {
        let now = Instant::now();
        while let Some(name) = self.playback.poll_mark(now.into_std()) {
            if !self.echo_mark(name, now).await {
                return false;
            }
        }
        true
    }

    async fn echo_mark(&mut self, name: String, now: Instant) -> bool {
        let sequence = self.next_sequence();
        let echo = json!({
            "event": "mark",
            "sequenceNumber": sequence,
            "streamSid": self.options.stream_sid,
            "mark": {"name": name}
        });
        self.with_record(|r| r.marks_echoed.push((now, name)));
        self.send_json(echo).await
    }

    /// Parses one gateway frame (protocols.md §1.3) and feeds the playback buffer.
    /// Returns false only if an echo could not be sent.
    async fn on_gateway_message(&mut self, message: Message) -> bool {
        let now = Instant::now();
        let text = match &message {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Binary(b) => {
                let note = format!("<binary {} bytes>", b.len());
                self.with_record(|r| {
                    r.received.push(Received {
                        at: now,
                        text: note.clone(),
                    });
                    r.bad_messages.push(note);
                });
                return true;
            }
            // Pings are answered by tungstenite; nothing else carries meaning.
            _ => return true,
        };
        self.with_record(|r| {
            r.received.push(Received {
                at: now,
                text: text.clone(),
            })
        });
        let bad = |this: &Self, why: &str| {
            this.with_record(|r| r.bad_messages.push(format!("{why}: {text}")));
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            bad(self, "not JSON");
            return true;
        };
        if value.get("streamSid").and_then(Value::as_str) != Some(self.options.stream_sid.as_str())
        {
            bad(self, "wrong or missing streamSid");
            return true;
        }
        match value.get("event").and_then(Value::as_str) {
            Some("media") => {
                let payload = value.pointer("/media/payload").and_then(Value::as_str);
                match payload.map(|p| B64.decode(p)) {
                    Some(Ok(bytes)) => {
                        let len = bytes.len();
                        self.playback.queue_audio(bytes, now.into_std());
                        self.with_record(|r| r.media_bytes_received += len);
                    }
                    _ => bad(self, "media without a base64 payload"),
                }
                true
            }
            Some("mark") => {
                let Some(name) = value.pointer("/mark/name").and_then(Value::as_str) else {
                    bad(self, "mark without a name");
                    return true;
                };
                let name = name.to_owned();
                self.with_record(|r| r.marks_received.push((now, name.clone())));
                self.playback.queue_mark(name, now.into_std());
                self.echo_due_marks().await
            }
            Some("clear") => {
                self.with_record(|r| r.clears.push(now));
                for name in self.playback.clear(now.into_std()) {
                    if !self.echo_mark(name, now).await {
                        return false;
                    }
                }
                true
            }
            _ => {
                bad(self, "unknown event");
                true
            }
        }
    }

    async fn send_garbage(&mut self, kind: Garbage) -> bool {
        let message = match kind {
            Garbage::NonJsonText => Message::text("this is not json {"),
            Garbage::UnknownEvent => {
                let sequence = self.next_sequence();
                Message::text(
                    json!({"event": "surprise", "sequenceNumber": sequence,
                           "streamSid": self.options.stream_sid})
                    .to_string(),
                )
            }
            Garbage::BadBase64Media => {
                self.chunk += 1;
                let sequence = self.next_sequence();
                Message::text(
                    json!({"event": "media", "sequenceNumber": sequence,
                           "streamSid": self.options.stream_sid,
                           "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                                     "timestamp": ((self.chunk - 1) * 20).to_string(),
                                     "payload": "!!not base64!!"}})
                    .to_string(),
                )
            }
            Garbage::Binary => Message::binary(vec![0xFFu8; FRAME_BYTES]),
        };
        self.ws.send(message).await.is_ok()
    }
}
