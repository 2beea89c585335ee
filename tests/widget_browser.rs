//! The call widget in a real browser: headless Chromium (Debian's `chromium`, installed
//! by `scripts/test`) with a fake microphone playing `fixtures/caller_hello_48k.wav` (a
//! second of silence, speech, silence; Chromium loops it), against `vocalized serve
//! --demo`. The page embeds the widget, clicks Call, and measures with a WebAudio
//! analyser what comes back from the echo agent: silence first, then the caller's own
//! speech. Hanging up must leave a completed web call whose duration matches.
//!
//! Chromium is driven over the DevTools protocol (a WebSocket) with the flags from
//! reference/browser-testing.md that keep it off the network.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use vocalized_control::testing::TempDir;

/// Headless Chromium, killed (with its temporary profile) on drop.
struct Chromium {
    child: Child,
    _profile: TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium_binary() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium is not installed: ./scripts/test installs Debian's `chromium`")
}

impl Chromium {
    fn start(fake_mic: &Path, debug_port: u16) -> Self {
        let profile = TempDir::new("vz-chromium");
        let child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                // Real host addresses in the browser's candidates, not mDNS names that
                // nothing on a test machine resolves.
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                fake_mic.display()
            ))
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(format!("--remote-debugging-port={debug_port}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        Chromium {
            child,
            _profile: profile,
        }
    }
}

/// One DevTools session with a page.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    async fn attach(debug_port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let listed = reqwest::get(format!("http://127.0.0.1:{debug_port}/json/list")).await;
            if let Ok(resp) = listed
                && let Ok(targets) = resp.json::<Vec<Value>>().await
                && let Some(url) = targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break url.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "Chromium's DevTools never came up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools WebSocket");
        Page { socket, next_id: 0 }
    }

    /// Sends one command and waits for its reply (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let text = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::Text(text.into())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no reply to {method}"))
                .expect("DevTools socket closed")
                .unwrap();
            if let Message::Text(t) = frame {
                let reply: Value = serde_json::from_str(t.as_str()).unwrap();
                if reply["id"] == id {
                    assert!(reply.get("error").is_none(), "{method}: {reply}");
                    return reply["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expression` in the page, awaiting a promise, and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "page script failed: {result}"
        );
        result["result"]["value"].clone()
    }

    async fn wait_for(&mut self, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression).await;
            if value.as_bool() == Some(true) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {expression}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Clicks the widget's call button (inside its shadow root, as a visitor would), then
/// samples the RMS of what the visitor hears every 100 ms for `seconds`, then hangs up
/// with the widget's own button. Returns the samples and how long the call was up.
const CALL_AND_LISTEN: &str = r#"
(async (seconds) => {
  const w = window.vocalizedWidget;
  const root = [...document.body.children].find((e) => e.shadowRoot).shadowRoot;
  const button = root.querySelector("button.call");
  const label = button.getAttribute("aria-label");
  button.click();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 100 && w.state !== "in_call"; i++) await sleep(100);
  if (w.state !== "in_call") return { failed: w.state, error: w.error };
  const up = performance.now();
  for (let i = 0; i < 100 && !w.remoteStream; i++) await sleep(50);
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(w.remoteStream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const rms = [];
  for (let i = 0; i < seconds * 10; i++) {
    await sleep(100);
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    rms.push(Math.sqrt(sum / buf.length));
  }
  const connection = w.connectionState;
  root.querySelector("button.hang").click();
  const upMs = performance.now() - up;
  for (let i = 0; i < 50 && w.state !== "ended"; i++) await sleep(100);
  return { rms, upMs, connection, label, state: w.state,
           message: root.querySelector("[role=status]").textContent };
})
"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn api(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Value {
    let resp = http
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_calls_from_the_demo_page_hears_the_echo_and_hangs_up() {
    let dir = TempDir::new("vz-browser");
    let mut command = vocalized(&dir.0);
    command
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ])
        // Browser and server share this machine: media on loopback only.
        .env("VOCALIZED_WEBRTC_BIND_IP", "127.0.0.1");
    let mut server = Process::spawn(&mut command);
    let addr = tokio::task::block_in_place(|| server.wait_listening());
    let base = format!("http://{addr}");
    let demo = tokio::task::block_in_place(|| line_starting(&server, "vocalized demo: "));
    let demo_url = demo
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("demo URL")
        .to_owned();
    let login = tokio::task::block_in_place(|| line_starting(&server, "vocalized demo login: "));
    let login: Vec<&str> = login.split_whitespace().collect();

    let debug_port = free_port().port();
    let _chromium = Chromium::start(&fixture("caller_hello_48k.wav"), debug_port);
    let mut page = Page::attach(debug_port).await;
    page.call("Page.navigate", json!({"url": demo_url})).await;
    page.wait_for(
        "!!(window.vocalizedWidget && window.vocalizedWidget.state === 'idle')",
        Duration::from_secs(20),
    )
    .await;

    // The demo owner watches /calls/live while the visitor is in the call.
    let http = reqwest::Client::new();
    let session: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": login[3], "password": login[4]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().expect("login token").to_owned();
    let workspaces = api(&http, &base, &token, "/api/v1/workspaces").await;
    let ws = workspaces["workspaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let watcher = {
        let (http, base, token, ws) = (http.clone(), base.clone(), token.clone(), ws.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                let live = api(
                    &http,
                    &base,
                    &token,
                    &format!("/api/v1/workspaces/{ws}/calls/live"),
                )
                .await;
                if live["active_calls"]
                    .as_array()
                    .is_some_and(|calls| calls.iter().any(|c| c["source"] == "web"))
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        })
    };

    let seconds = 7;
    let got = page.eval(&format!("{CALL_AND_LISTEN}({seconds})")).await;
    assert!(got.get("failed").is_none(), "the call did not start: {got}");
    assert_eq!(got["connection"], "connected", "{got}");
    assert_eq!(got["state"], "ended");
    assert_eq!(got["message"], "Call ended");
    assert!(got["label"].as_str().unwrap().starts_with("Call"), "{got}");
    assert!(
        watcher.await.unwrap(),
        "the call never showed in /calls/live"
    );
    let rms: Vec<f64> = got["rms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    eprintln!("heard (RMS per 100 ms): {rms:.3?}");
    // The fixture opens with a second of silence and the echo waits half a second:
    // the first few hundred ms the visitor hears are silent...
    assert!(
        rms[..4].iter().all(|&r| r < 0.003),
        "not silent before the caller spoke: {rms:?}"
    );
    // ...then their own speech comes back, loud and for a while.
    let loud = rms.iter().filter(|&&r| r > 0.02).count();
    assert!(loud >= 5, "the echo was not heard: {rms:?}");
    let first_loud = rms.iter().position(|&r| r > 0.02).unwrap();
    assert!(
        first_loud >= 4,
        "energy before the echo could have started: {rms:?}"
    );

    // The call record: completed, from the web, as long as the call was up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let call = loop {
        let calls = api(
            &http,
            &base,
            &token,
            &format!("/api/v1/workspaces/{ws}/calls"),
        )
        .await;
        let call = calls["calls"][0].clone();
        if call["status"] == "completed" {
            break call;
        }
        assert!(
            Instant::now() < deadline,
            "the call never completed: {calls}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(call["source"], "web");
    let live = api(
        &http,
        &base,
        &token,
        &format!("/api/v1/workspaces/{ws}/calls/live"),
    )
    .await;
    assert_eq!(
        live["active_calls"],
        json!([]),
        "an ended call is no longer live"
    );
    let id = call["id"].as_str().unwrap();
    let detail = api(
        &http,
        &base,
        &token,
        &format!("/api/v1/workspaces/{ws}/calls/{id}"),
    )
    .await;
    assert_eq!(detail["call"]["end_reason"], "caller_hangup", "{detail}");
    let up_s = got["upMs"].as_f64().unwrap() / 1000.0;
    let duration = call["duration_seconds"].as_f64().unwrap();
    assert!(
        (duration - up_s).abs() <= 1.5,
        "recorded {duration} s, the page was in the call for {up_s:.1} s"
    );
    let transcript = api(
        &http,
        &base,
        &token,
        &format!("/api/v1/workspaces/{ws}/calls/{id}/transcription"),
    )
    .await;
    assert!(
        transcript.to_string().contains("caller spoke"),
        "the echo's transcript was recorded: {transcript}"
    );
    assert!(server.terminate().success());
}
