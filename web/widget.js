// Vocalized call widget: <script src="https://HOST/widget.js" data-key="pk_..."></script>
// One floating call button (Shadow DOM, so host CSS cannot restyle it) that calls the
// agent over WebRTC, WHIP-style: one POST of the complete offer (no trickle ICE), one
// DELETE of the Location to hang up. No framework, no build step.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var key = script.getAttribute("data-key") || "";
  var origin = new URL(script.src, location.href).origin;

  // Read by tests and by pages that want to show their own call UI.
  var hook = { state: "loading", error: null, remoteStream: null, connectionState: null, start: start, hangup: hangup };
  window.vocalizedWidget = hook;

  var config = null, pc = null, mic = null, location_ = null, timer = null, startedAt = 0;

  var host = document.createElement("div");
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}" +
    ".w{position:fixed;bottom:20px;z-index:2147483647;font:14px/1.3 system-ui,sans-serif;display:flex;gap:8px;align-items:center}" +
    ".w.right{right:20px}.w.left{left:20px}" +
    "button{border:0;border-radius:24px;padding:12px 18px;color:#fff;cursor:pointer;font:inherit}" +
    "button:focus-visible{outline:3px solid #111;outline-offset:2px}" +
    "button[disabled]{opacity:.55;cursor:not-allowed}" +
    ".aux{background:#444;padding:10px 14px}" +
    ".msg{background:#fff;color:#111;border-radius:8px;padding:6px 10px;box-shadow:0 1px 4px #0003}" +
    "[hidden]{display:none!important}" +
    "</style>" +
    "<div class='w right' role='region' aria-label='Voice call'>" +
    "<span class='msg' role='status' aria-live='polite' hidden></span>" +
    "<button class='aux mute' type='button' aria-pressed='false' hidden>Mute</button>" +
    "<button class='aux hang' type='button' hidden>Hang up</button>" +
    "<button class='call' type='button'>Call</button>" +
    "<audio autoplay></audio></div>";
  var $ = function (s) { return root.querySelector(s); };
  var box = $(".w"), msg = $(".msg"), call = $(".call"), mute = $(".mute"), hang = $(".hang"), audio = $("audio");
  (document.body || document.documentElement).appendChild(host);

  function setState(state, text) {
    hook.state = state;
    box.setAttribute("data-state", state);
    msg.hidden = !text;
    msg.textContent = text || "";
    var inCall = state === "in_call";
    mute.hidden = hang.hidden = !inCall && state !== "connecting";
    call.hidden = inCall || state === "connecting";
    call.disabled = state === "unavailable" || state === "loading";
  }

  function fail(state, text, err) {
    hook.error = err ? String(err.message || err) : text;
    cleanup();
    setState(state, text);
  }

  function cleanup() {
    if (timer) clearInterval(timer);
    timer = null;
    if (mic) mic.getTracks().forEach(function (t) { t.stop(); });
    mic = null;
    if (pc) pc.close();
    pc = null;
  }

  function tick() {
    var s = Math.floor((Date.now() - startedAt) / 1000);
    var text = "In call " + Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    msg.hidden = false;
    msg.textContent = text;
    if (config.maxCallDuration && s >= config.maxCallDuration) hangup();
  }

  function waitForIce(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var done = function () {
        if (peer.iceGatheringState === "complete") resolve();
      };
      peer.addEventListener("icegatheringstatechange", done);
      // A host with unreachable STUN servers must not hang the call forever.
      setTimeout(resolve, 5000);
    });
  }

  function start() {
    if (!config || !config.callEnabled || pc) return Promise.resolve();
    setState("connecting", "Connecting…");
    var constraints = { audio: {
      echoCancellation: config.echoCancellation !== false,
      noiseSuppression: config.noiseSuppression !== false,
    } };
    return navigator.mediaDevices.getUserMedia(constraints).then(function (stream) {
      mic = stream;
      var servers = (config.iceServers || []).map(function (u) { return typeof u === "string" ? { urls: u } : u; });
      pc = new RTCPeerConnection({ iceServers: servers });
      stream.getAudioTracks().forEach(function (t) { pc.addTrack(t, stream); });
      pc.ontrack = function (ev) {
        hook.remoteStream = ev.streams[0] || new MediaStream([ev.track]);
        audio.srcObject = hook.remoteStream;
      };
      pc.onconnectionstatechange = function () {
        if (!pc) return;
        var st = pc.connectionState;
        hook.connectionState = st;
        if (st === "failed" && hook.state === "connecting") {
          fail("idle", "Could not connect. Check your network and try again.", "ICE failed");
        } else if (st === "failed" || st === "closed" || st === "disconnected") {
          // The agent (or the network) ended the call.
          if (hook.state === "in_call") { location_ = null; cleanup(); setState("ended", "Call ended"); }
        }
      };
      return pc.createOffer()
        .then(function (offer) { return pc.setLocalDescription(offer); })
        .then(function () { return waitForIce(pc); })
        .then(function () {
          return fetch(config.offerUrl || origin + "/media/webrtc/" + encodeURIComponent(key), {
            method: "POST",
            headers: { "Content-Type": "application/sdp" },
            body: pc.localDescription.sdp,
          });
        })
        .then(function (res) {
          if (res.status === 403 || res.status === 404 || res.status === 429) throw { refused: true, status: res.status };
          if (!res.ok) throw new Error("offer refused: HTTP " + res.status);
          location_ = new URL(res.headers.get("Location"), config.offerUrl || origin).href;
          return res.text();
        })
        .then(function (sdp) { return pc.setRemoteDescription({ type: "answer", sdp: sdp }); })
        .then(function () {
          startedAt = Date.now();
          setState("in_call", "In call 0:00");
          timer = setInterval(tick, 1000);
        });
    }).catch(function (err) {
      if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) {
        fail("idle", "Microphone access was denied. Allow it to call.", err);
      } else if (err && err.refused) {
        fail("unavailable", err.status === 429 ? "The agent is busy. Try again later." : "Calling is unavailable right now.", "HTTP " + err.status);
      } else {
        fail("idle", "Could not connect. Check your network and try again.", err);
      }
    });
  }

  function hangup() {
    var loc = location_;
    location_ = null;
    cleanup();
    setState("ended", "Call ended");
    if (loc) return fetch(loc, { method: "DELETE" }).catch(function () {});
    return Promise.resolve();
  }

  call.addEventListener("click", function () { start(); });
  hang.addEventListener("click", function () { hangup(); });
  mute.addEventListener("click", function () {
    if (!mic) return;
    var muted = mute.getAttribute("aria-pressed") !== "true";
    mic.getAudioTracks().forEach(function (t) { t.enabled = !muted; });
    mute.setAttribute("aria-pressed", String(muted));
    mute.textContent = muted ? "Unmute" : "Mute";
  });

  setState("loading", "");
  fetch(origin + "/widget/" + encodeURIComponent(key) + "/config")
    .then(function (res) {
      if (!res.ok) throw new Error("config: HTTP " + res.status);
      return res.json();
    })
    .then(function (c) {
      config = c;
      box.className = "w " + (c.buttonPosition === "bottom-left" || c.buttonPosition === "left" ? "left" : "right");
      call.style.background = c.buttonColor || "#2563eb";
      call.textContent = c.buttonText || "Call";
      call.setAttribute("aria-label", (c.buttonText || "Call") + (c.agentName ? " " + c.agentName : ""));
      mute.setAttribute("aria-label", "Mute microphone");
      hang.setAttribute("aria-label", "Hang up");
      if (!c.callEnabled) {
        call.setAttribute("aria-label", "Calling is unavailable");
        setState("unavailable", "Calling is unavailable right now.");
      } else {
        // The echo agent is a diagnostic, never mistaken for a real one.
        setState("idle", c.testProvider ? "Echo test: you will hear yourself." : (c.greeting || ""));
      }
    })
    .catch(function (err) { fail("unavailable", "Could not reach the call service.", err); });
})();
