//! The bench suite at CI scale: the pass-through scenario against the real `vocalized`
//! binary, failing on a gateway crash, a failed call or any lost frame, and checking the
//! report has the fields people read; then failover, transcode and webrtc (browser
//! callers over real WebRTC) the same way.
//!
//! The gateway binary belongs to the root package, so `CARGO_BIN_EXE_vocalized` is not
//! available here. The test looks for `vocalized` in the same target directory as this
//! test executable (`target/debug/deps/suite-*` → `target/debug/vocalized`) and, when it is
//! missing, builds it with `cargo build -p vocalized --bin vocalized` into that target
//! directory. It does not rebuild a stale one: run `cargo build --bin vocalized` first
//! when the gateway changed.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use vocalized_bench::suite::html;
use vocalized_bench::suite::report::{Report, table};
use vocalized_bench::suite::run::{self, GatewaySource, LevelConfig};

fn gateway_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile_dir.join("vocalized");
    if !bin.is_file() {
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "vocalized",
                "--bin",
                "vocalized",
                "--target-dir",
            ])
            .arg(target_dir)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin vocalized failed");
    }
    assert!(bin.is_file(), "no gateway binary at {}", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_at_ci_scale_loses_no_frame_and_reports_every_figure() {
    let config = LevelConfig {
        scenario: run::Scenario::Passthrough,
        calls: 12,
        ramp_per_sec: 6.0,
        duration_secs: 12,
        provider_delay_ms: 20,
        provider_port: 0,
        gateway: GatewaySource::Spawn(gateway_bin()),
        show_progress: false,
    };
    let level = run::run_level(&config).await.expect("the level runs");
    let report = Report {
        tool: "test".into(),
        command: "suite.rs".into(),
        started_unix_s: 0,
        cores: 2,
        levels: vec![level],
    };
    let level = &report.levels[0];
    println!("{}", table(&report));

    assert_eq!(level.gateway_crash, None, "the gateway crashed");
    assert_eq!(level.calls_failed, 0, "{:?}", level.failures);
    assert_eq!(level.calls_completed, 12);
    let f = &level.frames;
    assert_eq!(f.lost(), 0, "lost frames: {f:?}");
    assert_eq!(
        f.caller_unstamped + f.provider_unstamped,
        0,
        "bytes altered in pass-through: {f:?}"
    );
    assert_eq!(f.cross_wired, 0, "audio reached another call: {f:?}");
    // 12 calls × 12 s × 50 frames/s, every one sent and received.
    assert_eq!(f.caller_sent, 12 * 12 * 50);
    assert_eq!(f.caller_received, f.caller_sent);
    assert!(
        f.provider_received > 12 * 50,
        "the callers heard the agent: {f:?}"
    );
    assert_eq!(level.setup.count, 12, "every call got agent audio");
    assert!(level.setup_gateway.count == 12 && level.setup_gateway.p50_ms < level.setup.p50_ms);
    assert!(
        level.setup.p50_ms >= 20.0,
        "the provider's 20 ms delay is inside the setup time"
    );
    assert!(
        level.barge_in.count >= 12,
        "every call barged in at least once: {}",
        level.barge_in.count
    );
    let usage = level
        .gateway
        .as_ref()
        .expect("/proc figures for a spawned gateway");
    assert!(usage.cpu_seconds > 0.0 && usage.cpu_us_per_call_second > 0.0);
    assert!(usage.rss_idle_kb > 0 && usage.rss_peak_kb >= usage.rss_idle_kb);
    assert!(!usage.samples.is_empty());

    let json: Value = serde_json::to_value(&report).expect("serialises");
    let l = &json["levels"][0];
    for pointer in [
        "/scenario",
        "/calls",
        "/setup/p99_ms",
        "/setup_gateway/p99_ms",
        "/caller_to_provider/p99_ms",
        "/provider_to_caller/p99_ms",
        "/provider_to_caller_jitter/p99_ms",
        "/barge_in/p99_ms",
        "/frames/caller_lost",
        "/frames/provider_lost",
        "/drift/0/caller_to_provider_p99_ms",
        "/gateway/rss_growth_kb_per_min",
        "/gateway/cpu_us_per_call_second",
        "/gateway/rss_kb_per_call",
    ] {
        assert!(
            l.pointer(pointer).is_some_and(|v| !v.is_null()),
            "{pointer} missing: {l}"
        );
    }
    let page = html::render(&report);
    assert!(page.contains("<svg") && page.contains("caller → provider"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_echo_provider_keeps_every_call_and_measures_the_gap() {
    let config = LevelConfig {
        scenario: run::Scenario::Failover,
        calls: 6,
        ramp_per_sec: 6.0,
        duration_secs: 12,
        provider_delay_ms: 0,
        provider_port: 0,
        gateway: GatewaySource::Spawn(gateway_bin()),
        show_progress: false,
    };
    let level = run::run_level(&config).await.expect("the level runs");
    assert_eq!(level.gateway_crash, None);
    // The fallback took over: no call was ended with an apology.
    assert_eq!(level.calls_completed, 6, "{:?}", level.failures);
    assert_eq!(level.frames.lost(), 0, "{:?}", level.frames);
    assert!(
        level.frames.caller_exempt > 0,
        "frames after the cut went to the fallback"
    );
    assert_eq!(
        level.failover_recovery.count, 6,
        "every caller heard audio after the cut"
    );
    assert!(level.failover_gap.count == 6 && level.failover_gap.p50_ms > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcode_through_gemini_delivers_every_caller_frame() {
    let config = LevelConfig {
        scenario: run::Scenario::Transcode,
        calls: 6,
        ramp_per_sec: 6.0,
        duration_secs: 10,
        provider_delay_ms: 0,
        provider_port: 0,
        gateway: GatewaySource::Spawn(gateway_bin()),
        show_progress: false,
    };
    let level = run::run_level(&config).await.expect("the level runs");
    assert_eq!(level.gateway_crash, None);
    assert_eq!(level.calls_completed, 6, "{:?}", level.failures);
    // 6 calls × 10 s × 50 frames/s, each 640 bytes of PCM16 16 kHz at the fake Gemini.
    assert_eq!(level.frames.caller_sent, 6 * 10 * 50);
    assert_eq!(level.frames.caller_lost, 0, "{:?}", level.frames);
    assert_eq!(level.setup.count, 6, "every caller heard the agent");
    // Every caller frame timed by position, and agent audio timed by chunk.
    assert!(level.failures.is_empty(), "{:?}", level.failures);
    assert_eq!(
        level.caller_to_provider.count + level.caller_to_provider_during_setup.count,
        6 * 10 * 50
    );
    assert!(level.caller_to_provider.count > 0 && level.provider_to_caller.count > 0);
    assert!(
        level.frames.provider_received > 6 * 50,
        "{:?}",
        level.frames
    );
    assert!(
        level
            .gateway
            .as_ref()
            .is_some_and(|g| g.cpu_us_per_call_second > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_browser_calls_lose_no_frame_and_are_timed_both_ways() {
    let config = LevelConfig {
        scenario: run::Scenario::Webrtc,
        calls: 10,
        ramp_per_sec: 5.0,
        duration_secs: 12,
        provider_delay_ms: 20,
        provider_port: 0,
        gateway: GatewaySource::Spawn(gateway_bin()),
        show_progress: false,
    };
    let level = run::run_level(&config).await.expect("the level runs");
    let report = Report {
        tool: "test".into(),
        command: "suite.rs".into(),
        started_unix_s: 0,
        cores: 2,
        levels: vec![level],
    };
    let level = &report.levels[0];
    println!("{}", table(&report));

    assert_eq!(level.gateway_crash, None, "the gateway crashed");
    assert_eq!(level.calls_failed, 0, "{:?}", level.failures);
    assert_eq!(level.calls_completed, 10);
    let f = &level.frames;
    // A call's first caller frames now and then never reach the provider: the bench's
    // peer starts sending the moment its own side is connected, and packets that reach
    // the gateway before its side of the DTLS handshake is done cannot be decrypted.
    // That is the 20 ms of silence before anyone speaks; bounded here so a gateway that
    // drops more of the call's start still fails. Every other frame must arrive.
    assert!(
        f.caller_lost_first <= 2 * 10,
        "the gateway dropped the start of calls: {f:?}"
    );
    assert_eq!(f.lost() - f.caller_lost_first, 0, "lost frames: {f:?}");
    assert_eq!(f.cross_wired, 0, "audio no caller sent: {f:?}");
    // 10 calls × 12 s × 50 frames/s, every one sent, received and timed.
    assert_eq!(f.caller_sent, 10 * 12 * 50);
    assert_eq!(f.caller_received + f.caller_lost_first, f.caller_sent);
    assert_eq!(
        level.caller_to_provider.count + level.caller_to_provider_during_setup.count,
        f.caller_received
    );
    assert!(level.caller_to_provider.count > 0, "{f:?}");
    // The greeting and at least one reply per call, 75 frames each, heard and timed.
    assert!(f.provider_received >= 10 * 2 * 75, "{f:?}");
    // Every frame heard is timed, except those after a playout gap inside a reply (the
    // gateway's pacer ran dry, as a debug build on a loaded machine can): they are
    // counted as heard late, not timed against their run.
    assert!(
        level.provider_to_caller.count <= f.provider_received,
        "{f:?}"
    );
    assert!(
        f.provider_received - level.provider_to_caller.count <= f.provider_late,
        "heard but neither timed nor late: {f:?}"
    );
    assert_eq!(
        f.provider_unstamped, 0,
        "audio runs matching no reply: {f:?}"
    );
    assert!(level.provider_to_caller_jitter.count > 0);
    assert_eq!(level.setup.count, 10, "every call heard the agent");
    assert!(level.setup_gateway.count == 10 && level.setup_gateway.p50_ms < level.setup.p50_ms);
    let delay = level.signal_delay.expect("the signal delay is stated");
    assert!(
        delay.caller_to_provider_ms > 0.0
            && delay.provider_to_caller_ms > delay.caller_to_provider_ms
    );
    assert!(
        level
            .gateway
            .as_ref()
            .is_some_and(|g| g.cpu_us_per_call_second > 0.0)
    );
    let page = html::render(&report);
    assert!(page.contains("offer → first audio"));
}
