//! The `vocalized` binary as an operator meets it: help, configuration errors, start,
//! stop, migrations, the master key and the media node, over real processes and sockets.

mod support;

use std::path::Path;
use support::{Process, finish, free_port, http_get, line_starting, vocalized};
use vocalized_control::testing::TempDir;

/// Runs `vocalized args...` in a fresh directory and asserts it refused to start:
/// exit code 2, exactly one `error:` line mentioning `expect`, nothing served, and no
/// database created. Returns the directory it ran in.
fn assert_config_error(args: &[&str], env: &[(&str, &str)], expect: &str) -> TempDir {
    let tmp = TempDir::new("vz-cli");
    let listen = free_port();
    let mut command = vocalized(&tmp.0);
    command.args(args);
    if !args
        .iter()
        .any(|a| *a == "--listen" || *a == "admin" || *a == "migrate")
    {
        command.args(["--listen", &listen.to_string()]);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out = finish(command);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want one stderr line, got {lines:?}"
    );
    assert!(lines[0].starts_with("error: "), "{lines:?}");
    assert!(
        lines[0].contains(expect),
        "{args:?}: {lines:?} lacks {expect:?}"
    );
    assert!(!out.stdout.contains("listening"), "{out:?}");
    assert!(
        std::net::TcpStream::connect(listen).is_err(),
        "{listen} is bound"
    );
    assert!(
        !tmp.0.join("data/vocalized.db").exists(),
        "database was created"
    );
    tmp
}

#[test]
fn help_works_for_every_subcommand() {
    let tmp = TempDir::new("vz-cli");
    let commands: &[&[&str]] = &[
        &["--help"],
        &["serve", "--help"],
        &["control", "--help"],
        &["media", "--help"],
        &["migrate", "--help"],
        &["admin", "--help"],
        &["admin", "create", "--help"],
    ];
    for args in commands {
        let mut command = vocalized(&tmp.0);
        command.args(*args);
        let out = finish(command);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            out.stdout.contains("Usage: vocalized"),
            "{args:?}: {}",
            out.stdout
        );
    }
    let mut command = vocalized(&tmp.0);
    command.args(["serve", "--help"]);
    let help = finish(command).stdout;
    for documented in [
        "VOCALIZED_LISTEN",
        "VOCALIZED_DATA_DIR",
        "VOCALIZED_DATABASE_URL",
    ] {
        assert!(help.contains(documented), "serve --help lacks {documented}");
    }
    assert!(help.contains("VOCALIZED_PUBLIC_URL") && help.contains("VOCALIZED_MASTER_KEY"));
}

#[test]
fn malformed_master_key_is_refused_before_binding() {
    let ran_in = assert_config_error(
        &["serve"],
        &[("VOCALIZED_MASTER_KEY", "not-a-key")],
        "invalid VOCALIZED_MASTER_KEY",
    );
    // Checked before anything touches the disk.
    assert!(!ran_in.0.join("data").exists());
    assert_config_error(&["serve", "--master-key", "abcd"], &[], "master key");
    // A key file that is not a key is never silently replaced.
    let tmp = TempDir::new("vz-cli");
    std::fs::create_dir_all(tmp.0.join("data")).unwrap();
    std::fs::write(tmp.0.join("data/master.key"), "garbage\n").unwrap();
    let mut command = vocalized(&tmp.0);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let out = finish(command);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("does not hold a valid master key"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.0.join("data/master.key")).unwrap(),
        "garbage\n"
    );
}

#[test]
fn half_a_twilio_account_is_refused() {
    assert_config_error(
        &["serve"],
        &[("VOCALIZED_TWILIO_ACCOUNT_SID", "AC0123")],
        "must be set together",
    );
}

#[test]
fn bad_browser_call_network_settings_are_refused() {
    assert_config_error(
        &["serve"],
        &[("VOCALIZED_PUBLIC_IP", "voice.example.com")],
        "VOCALIZED_PUBLIC_IP",
    );
    assert_config_error(
        &["serve", "--webrtc-bind-ip", "0.0.0"],
        &[],
        "VOCALIZED_WEBRTC_BIND_IP",
    );
    assert_config_error(
        &["serve"],
        &[(
            "VOCALIZED_ICE_SERVERS",
            r#"[{"urls":"http://stun.example.com"}]"#,
        )],
        "VOCALIZED_ICE_SERVERS",
    );
}

#[test]
fn every_provider_url_is_checked() {
    for (var, name) in [
        ("VOCALIZED_GEMINI_URL", "Gemini"),
        ("VOCALIZED_ELEVENLABS_URL", "ElevenLabs"),
        ("VOCALIZED_DEEPGRAM_URL", "Deepgram"),
    ] {
        assert_config_error(
            &["serve"],
            &[(var, "https://example.com/not-a-websocket")],
            &format!("invalid {name} URL"),
        );
    }
}

#[test]
fn bad_database_url_is_refused_before_binding() {
    assert_config_error(
        &["serve", "--database-url", "mysql://root:pw@db/vz"],
        &[],
        "database URL",
    );
    assert_config_error(
        &["serve"],
        &[("VOCALIZED_DATABASE_URL", "postgres://")],
        "database URL",
    );
    assert_config_error(
        &["migrate", "--database-url", "redis://x"],
        &[],
        "database URL",
    );
}

#[test]
fn bad_listen_address_is_refused() {
    assert_config_error(
        &["serve", "--listen", "not-an-address"],
        &[],
        "listen address",
    );
    assert_config_error(
        &["--listen", "http://127.0.0.1:8080"],
        &[],
        "listen address",
    );
    assert_config_error(
        &["media", "--listen", "127.0.0.1:70000"],
        &[],
        "listen address",
    );
}

#[test]
fn bad_public_url_is_refused() {
    assert_config_error(
        &["serve", "--public-url", "voice.example.com"],
        &[],
        "public URL",
    );
}

#[test]
fn unwritable_data_dir_is_refused() {
    // A path under a regular file cannot be created even by root, unlike chmod 000.
    let tmp = TempDir::new("vz-cli");
    let file = tmp.0.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let data_dir = file.join("data");
    let data_dir = data_dir.to_str().unwrap();
    assert_config_error(&["serve", "--data-dir", data_dir], &[], "data directory");
    assert_config_error(
        &["serve"],
        &[("VOCALIZED_DATA_DIR", data_dir)],
        "data directory",
    );
}

#[test]
fn control_requires_a_shared_master_key() {
    assert_config_error(&["control"], &[], "no master key");
}

#[test]
fn unknown_admin_role_is_refused() {
    let args = [
        "admin",
        "create",
        "--email",
        "a@example.com",
        "--name",
        "A",
        "--role",
        "root",
    ];
    assert_config_error(&args, &[("VOCALIZED_ADMIN_PASSWORD", "pw")], "invalid role");
}

#[test]
fn a_port_in_use_fails_with_one_line_and_exit_code_1() {
    let tmp = TempDir::new("vz-cli");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for subcommand in ["serve", "media"] {
        let mut command = vocalized(&tmp.0);
        command.args([subcommand, "--listen", &addr]);
        let out = finish(command);
        assert_eq!(out.status.code(), Some(1), "{subcommand}: {out:?}");
        let errors: Vec<_> = out
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("error: cannot listen on"),
            "{errors:?}"
        );
        assert!(errors[0].contains("already in use"), "{errors:?}");
    }
}

/// Starts `vocalized serve` on a free port with its data under `dir`.
fn start_serve(dir: &Path) -> (Process, std::net::SocketAddr) {
    let mut command = vocalized(dir);
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"]);
    let mut server = Process::spawn(&mut command);
    let addr = server.wait_listening();
    (server, addr)
}

#[test]
fn serve_starts_on_sqlite_and_stops_cleanly_on_sigterm() {
    let tmp = TempDir::new("vz-cli");
    let (mut server, addr) = start_serve(&tmp.0);
    let line = server.stdout_so_far();
    assert!(
        line.contains(&format!(
            "vocalized listening on http://{addr} (public URL http://{addr})"
        )),
        "{line}"
    );
    assert!(tmp.0.join("data/vocalized.db").exists());
    assert!(std::net::TcpStream::connect(addr).is_ok());
    let status = server.terminate();
    assert!(
        status.success(),
        "exit {status}; stderr: {}",
        server.stderr_so_far()
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still bound after exit"
    );
}

#[test]
fn serve_answers_healthz() {
    let tmp = TempDir::new("vz-cli");
    let (_server, addr) = start_serve(&tmp.0);
    let (status, body) = http_get(addr, "/healthz");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn serve_takes_twilio_media_streams_and_control_does_not() {
    let tmp = TempDir::new("vz-cli");
    let (_server, addr) = start_serve(&tmp.0);
    // A plain GET reaches the WebSocket route and is refused for lacking the upgrade.
    assert_eq!(http_get(addr, "/media/twilio").0, 400);

    let mut command = vocalized(&tmp.0);
    command
        .args([
            "control",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "control-data",
        ])
        .env("VOCALIZED_MASTER_KEY", "42".repeat(32));
    let mut control = Process::spawn(&mut command);
    let addr = control.wait_listening();
    assert_eq!(http_get(addr, "/media/twilio").0, 404);
}

#[test]
fn first_start_generates_the_master_key_and_later_starts_reuse_it() {
    let tmp = TempDir::new("vz-cli");
    let key_path = tmp.0.join("data/master.key");

    let (mut first, _) = start_serve(&tmp.0);
    let status = first.terminate();
    assert!(status.success(), "{status:?} {}", first.stderr_so_far());
    let stderr = first.stderr_so_far();
    assert!(stderr.contains("generated a new master key"), "{stderr}");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(key.trim().len(), 64, "64 hex characters");
    assert!(!stderr.contains(key.trim()) && !first.stdout_so_far().contains(key.trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (mut second, _) = start_serve(&tmp.0);
    assert!(second.terminate().success());
    assert!(
        !second.stderr_so_far().contains("generated"),
        "{}",
        second.stderr_so_far()
    );
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);
}

#[test]
fn migrate_applies_to_a_fresh_sqlite_file_then_reports_up_to_date() {
    let tmp = TempDir::new("vz-cli");
    let url = format!("sqlite://{}?mode=rwc", tmp.0.join("fresh.db").display());
    let mut command = vocalized(&tmp.0);
    command.args(["migrate", "--database-url", &url]);
    let out = finish(command);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("applied "), "{}", out.stdout);
    assert!(out.stdout.contains("  0001 "), "{}", out.stdout);
    assert!(tmp.0.join("fresh.db").exists());

    let mut command = vocalized(&tmp.0);
    command.args(["migrate", "--database-url", &url]);
    let out = finish(command);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("is up to date"), "{}", out.stdout);
}

#[test]
fn migrate_defaults_to_the_data_dir() {
    let tmp = TempDir::new("vz-cli");
    let mut command = vocalized(&tmp.0);
    command.args(["migrate"]).env("VOCALIZED_DATA_DIR", "state");
    let out = finish(command);
    assert!(out.status.success(), "{out:?}");
    assert!(tmp.0.join("state/vocalized.db").exists());
}

#[test]
fn serve_and_migrate_work_on_postgres() {
    let Some(url) = fresh_postgres_database() else {
        eprintln!("VOCALIZED_TEST_POSTGRES_URL=skip: Postgres half skipped");
        return;
    };
    let tmp = TempDir::new("vz-cli");
    let mut command = vocalized(&tmp.0);
    command.args(["migrate", "--database-url", &url]);
    let out = finish(command);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("is up to date"), "{}", out.stdout);

    let mut command = vocalized(&tmp.0);
    command
        .args(["control", "--listen", "127.0.0.1:0"])
        .env("VOCALIZED_DATABASE_URL", &url)
        .env("VOCALIZED_MASTER_KEY", "42".repeat(32));
    let mut server = Process::spawn(&mut command);
    server.wait_listening();
    assert!(server.terminate().success(), "{}", server.stderr_so_far());
    // control with a Postgres URL and a given key is stateless: no data dir appears.
    assert!(!tmp.0.join("data").exists());
}

/// A new migrated database on the test Postgres server, or `None` when switched off.
fn fresh_postgres_database() -> Option<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let test_db = vocalized_control::testing::TestDb::postgres().await?;
        test_db.db.pool.close().await;
        Some(test_db.url.clone())
    })
}

#[test]
fn admin_create_adds_an_admin_once() {
    let tmp = TempDir::new("vz-cli");
    let create = || {
        let mut command = vocalized(&tmp.0);
        command
            .args([
                "admin",
                "create",
                "--email",
                "ops@example.com",
                "--name",
                "Ops",
            ])
            .args(["--role", "super_admin", "--data-dir", "data"])
            .env("VOCALIZED_ADMIN_PASSWORD", "correct horse battery staple");
        finish(command)
    };
    let out = create();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .starts_with("created super_admin ops@example.com (id "),
        "{}",
        out.stdout
    );
    let again = create();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        again
            .stderr_lines()
            .last()
            .is_some_and(|l| l.starts_with("error: ")),
        "{again:?}"
    );
    for output in [&out.stdout, &out.stderr, &again.stdout, &again.stderr] {
        assert!(
            !output.contains("correct horse"),
            "password printed: {output}"
        );
    }
}

#[test]
fn media_node_answers_health_checks_and_stops_on_sigterm() {
    let tmp = TempDir::new("vz-cli");
    let mut command = vocalized(&tmp.0);
    command.args(["media", "--listen", "127.0.0.1:0"]);
    let mut node = Process::spawn(&mut command);
    let addr = node.wait_listening();
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(addr, "/readyz"), (200, "ready\n".to_owned()));
    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nvocalized_media_active_calls 0\n"),
        "{metrics}"
    );
    let status = node.terminate();
    assert!(
        status.success(),
        "exit {status}; stderr: {}",
        node.stderr_so_far()
    );
}

#[test]
fn demo_creates_one_echo_workspace_and_prints_its_page_and_login() {
    let tmp = TempDir::new("vz-cli");
    let start = || {
        let mut command = vocalized(&tmp.0);
        command.args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ]);
        let mut server = Process::spawn(&mut command);
        let addr = server.wait_listening();
        let page = line_starting(&server, "vocalized demo: ");
        let login = line_starting(&server, "vocalized demo login: ");
        (server, addr, page, login)
    };
    let (mut server, addr, page, login) = start();
    let url = page
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no demo page URL in {page:?}"))
        .to_owned();
    let key = url
        .strip_prefix(&format!("http://{addr}/demo/"))
        .unwrap_or_else(|| panic!("the demo URL {url} is not this server's demo page"))
        .to_owned();
    assert!(key.starts_with("pk_"), "{key}");
    // The printed page is served, embeds the widget with this key, and the widget loads.
    let (status, html) = http_get(addr, &format!("/demo/{key}"));
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!(r#"data-key="{key}""#)), "{html}");
    let (status, js) = http_get(addr, "/widget.js");
    assert_eq!(status, 200);
    assert!(js.contains("vocalizedWidget"));
    let (status, body) = http_get(addr, &format!("/widget/{key}/config"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""callEnabled":true"#) && body.contains(r#""testProvider":true"#),
        "{body}"
    );
    let words: Vec<&str> = login.split_whitespace().collect();
    assert_eq!(words[3], "demo@vocalized.local");
    assert_eq!(words[4].len(), 16, "{login}");
    assert!(server.terminate().success());

    // A restart keeps the same demo and can still print its login.
    let (mut again, _, page2, login2) = start();
    assert!(page2.contains(&key), "{page2}");
    assert_eq!(login2.split_whitespace().nth(4), Some(words[4]));
    assert!(again.terminate().success());
}

// ---------------------------------------------------------------------------------------
// `vocalized keys rotate` and keys in logs (issue 6 "Keys")
// ---------------------------------------------------------------------------------------

const ROTATION_PLATFORM_KEY: &str = "sk-rotation-platform-4f3e2d1c0b";
const ROTATION_BYO_KEY: &str = "sk-rotation-byo-9a8b7c6d5e";
const ROTATION_PUBLIC_URL: &str = "https://gw.rotation.test";
const ROTATION_TWILIO_SID: &str = "ACrotation000000000000000000000000";
const ROTATION_TWILIO_TOKEN: &str = "rotation-twilio-auth-token";
const ROTATION_NUMBER: &str = "+14155550199";

/// A JSON request to the running server: (status, body).
async fn api(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// `vocalized serve` on `data/` with the rotation test's Twilio account and public URL.
fn start_rotation_serve(dir: &Path, rust_log: &str) -> (Process, String) {
    let mut command = vocalized(dir);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .args(["--public-url", ROTATION_PUBLIC_URL])
        .env("RUST_LOG", rust_log)
        .env("VOCALIZED_TWILIO_ACCOUNT_SID", ROTATION_TWILIO_SID)
        .env("VOCALIZED_TWILIO_AUTH_TOKEN", ROTATION_TWILIO_TOKEN);
    let mut server = Process::spawn(&mut command);
    let addr = tokio::task::block_in_place(|| server.wait_listening());
    (server, format!("http://{addr}"))
}

fn admin_create(dir: &Path) {
    let mut command = vocalized(dir);
    command.args([
        "admin",
        "create",
        "--data-dir",
        "data",
        "--email",
        "root@rotation.test",
        "--name",
        "Root",
        "--password",
        "adminpass123",
        // super_admin: it sets the platform provider's base_url.
        "--role",
        "super_admin",
    ]);
    let out = finish(command);
    assert!(out.status.success(), "{out:?}");
}

/// Signs in the admin, stores the platform OpenAI key pointing at `openai_url`, and sets
/// up an owner with a BYO key and a live agent on ROTATION_NUMBER. Returns the owner's
/// workspace id.
async fn store_keys_and_an_agent(base: &str, openai_url: &str) -> String {
    let http = reqwest::Client::new();
    let (status, login) = api(
        &http,
        base,
        "POST",
        "/api/v1/admin/auth/login",
        None,
        Some(serde_json::json!({"email": "root@rotation.test", "password": "adminpass123"})),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let admin = login["token"].as_str().unwrap().to_owned();
    let (status, created) = api(
        &http,
        base,
        "POST",
        "/api/v1/admin/providers",
        Some(&admin),
        Some(serde_json::json!({"provider": "openai", "api_key": ROTATION_PLATFORM_KEY, "base_url": openai_url})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["provider"]["is_configured"], true);
    let (status, signup) = api(
        &http,
        base,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(serde_json::json!({"email": "owner@rotation.test", "password": "password123", "name": "Owner"})),
    )
    .await;
    assert_eq!(status, 201, "{signup}");
    let owner = signup["token"].as_str().unwrap().to_owned();
    let (_, ws) = api(
        &http,
        base,
        "POST",
        "/api/v1/workspaces",
        Some(&owner),
        Some(serde_json::json!({"name": "Rotation Co"})),
    )
    .await;
    let ws = ws["workspace"]["id"].as_str().unwrap().to_owned();
    let (status, byo) = api(
        &http,
        base,
        "POST",
        &format!("/api/v1/workspaces/{ws}/voice/providers"),
        Some(&owner),
        Some(serde_json::json!({"provider": "gemini", "api_key": ROTATION_BYO_KEY})),
    )
    .await;
    assert_eq!(status, 201, "{byo}");
    let (_, number) = api(
        &http,
        base,
        "POST",
        &format!("/api/v1/workspaces/{ws}/phone-numbers"),
        Some(&owner),
        Some(serde_json::json!({"phone_number": ROTATION_NUMBER})),
    )
    .await;
    let number_id = number["phone_number"]["id"].as_str().unwrap().to_owned();
    // Calls through the platform's Twilio account route only to verified numbers.
    let (status, verified) = api(
        &http,
        base,
        "POST",
        &format!("/api/v1/admin/phone-numbers/{number_id}/verify"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    let (status, agent) = api(
        &http,
        base,
        "POST",
        &format!("/api/v1/workspaces/{ws}/agents"),
        Some(&owner),
        Some(serde_json::json!({"name": "Desk", "voice_provider": "openai", "phone_number_id": number_id})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let agent_id = agent["agent"]["id"].as_str().unwrap();
    let (status, _) = api(
        &http,
        base,
        "POST",
        &format!("/api/v1/workspaces/{ws}/agents/{agent_id}/activate"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 200);
    ws
}

fn write_key_file(path: &Path, hex: &str) {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    writeln!(options.open(path).unwrap(), "{hex}").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_re_encrypts_replaces_the_key_file_and_serve_still_reads_secrets() {
    use vocalized_bench::fakes::openai::{FakeOpenAi, OpenAiBehaviour};
    use vocalized_bench::fakes::twilio::{CallOptions, CallParams, FakeTwilio};

    let tmp = TempDir::new("vz-rotate");
    let data = tmp.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key_path = data.join("master.key");
    let old_hex = "5a".repeat(32);
    let new_hex = "c3".repeat(32);
    write_key_file(&key_path, &old_hex);
    admin_create(&tmp.0);
    let openai = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();

    let (mut server, base) = start_rotation_serve(&tmp.0, "info");
    store_keys_and_an_agent(&base, &openai.url()).await;
    assert!(server.terminate().success());

    let secrets = [
        old_hex.as_str(),
        new_hex.as_str(),
        ROTATION_PLATFORM_KEY,
        ROTATION_BYO_KEY,
    ];
    let assert_quiet = |out: &support::Finished| {
        for secret in secrets {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "a key was printed: {out:?}"
            );
        }
    };

    // The wrong current key: refused with exit 2, nothing changed, the file untouched.
    let mut command = vocalized(&tmp.0);
    command
        .args(["keys", "rotate", "--data-dir", "data"])
        .env("VOCALIZED_MASTER_KEY", "77".repeat(32))
        .env("VOCALIZED_NEW_MASTER_KEY", &new_hex);
    let out = finish(command);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("does not open with the current master key")
            && lines[0].contains("nothing was changed"),
        "{lines:?}"
    );
    assert_quiet(&out);
    assert_eq!(std::fs::read_to_string(&key_path).unwrap().trim(), old_hex);

    // A malformed new key is a configuration error before anything is opened.
    let mut command = vocalized(&tmp.0);
    command
        .args(["keys", "rotate", "--data-dir", "data"])
        .env("VOCALIZED_NEW_MASTER_KEY", "not-a-key");
    let out = finish(command);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("invalid VOCALIZED_NEW_MASTER_KEY"),
        "{out:?}"
    );

    // The real rotation, from the key file.
    let mut command = vocalized(&tmp.0);
    command
        .args(["keys", "rotate", "--data-dir", "data"])
        .env("VOCALIZED_NEW_MASTER_KEY", &new_hex);
    let out = finish(command);
    assert!(out.status.success(), "{out:?}");
    assert_quiet(&out);
    for line in [
        "re-encrypted 2 secrets under the new master key:",
        "  platform_provider_configs.api_key_encrypted: 1",
        "  workspace_provider_configs.api_key_encrypted: 1",
        "  integration_accounts.credentials_encrypted: 0",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line:?} in {}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("wrote the new master key to"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read_to_string(&key_path).unwrap().trim(), new_hex);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!data.join("master.key.new").exists());

    // Rotating again from the old key fails: it opens nothing any more.
    let mut command = vocalized(&tmp.0);
    command
        .args(["keys", "rotate", "--data-dir", "data"])
        .env("VOCALIZED_MASTER_KEY", &old_hex)
        .env("VOCALIZED_NEW_MASTER_KEY", "99".repeat(32));
    let out = finish(command);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // serve starts on the new key file and opens the rotated platform key: the provider
    // receives it when a call connects.
    let (_server, base) = start_rotation_serve(&tmp.0, "info");
    let params = CallParams::new(ROTATION_TWILIO_SID, "+12349013030", ROTATION_NUMBER);
    let reply =
        FakeTwilio::voice_webhook(&base, ROTATION_PUBLIC_URL, ROTATION_TWILIO_TOKEN, &params)
            .await
            .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stream_url = reply.twiml.stream_url.clone().expect("a <Stream>");
    let token = reply.twiml.parameter("token").expect("token").to_owned();
    let options = CallOptions {
        connect_to: Some(format!("{}/media/twilio", base.replacen("http", "ws", 1))),
        account_sid: ROTATION_TWILIO_SID.into(),
        ..CallOptions::default()
    };
    let call = FakeTwilio::connect(
        &stream_url,
        &token,
        &params.call_sid,
        vocalized_bench::audio::silence(1_500),
        options,
    )
    .await
    .expect("media socket");
    call.finish().await;
    let sessions = openai.sessions();
    assert!(!sessions.is_empty(), "the call never reached the provider");
    assert_eq!(
        sessions[0].authorization.as_deref(),
        Some(format!("Bearer {ROTATION_PLATFORM_KEY}").as_str())
    );
}

/// With every debug log on, a key sent through the API appears in no line the server
/// prints, successes and refusals alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_key_never_reaches_a_log_line() {
    let tmp = TempDir::new("vz-keylog");
    admin_create(&tmp.0);
    let (mut server, base) = start_rotation_serve(&tmp.0, "debug");
    let ws = store_keys_and_an_agent(&base, "wss://realtime.example.test/v1").await;
    let http = reqwest::Client::new();
    let (_, login) = api(
        &http,
        &base,
        "POST",
        "/api/v1/admin/auth/login",
        None,
        Some(serde_json::json!({"email": "root@rotation.test", "password": "adminpass123"})),
    )
    .await;
    let admin = login["token"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        (
            "PATCH",
            "/api/v1/admin/providers/openai".to_owned(),
            serde_json::json!({"api_key": ROTATION_BYO_KEY}),
        ),
        (
            "PATCH",
            "/api/v1/admin/providers/openai".to_owned(),
            serde_json::json!({"priority": ROTATION_PLATFORM_KEY}),
        ),
        (
            "POST",
            "/api/v1/admin/providers".to_owned(),
            serde_json::json!({"provider": "vapi", "api_key": ROTATION_PLATFORM_KEY}),
        ),
        (
            "POST",
            "/api/v1/admin/providers".to_owned(),
            serde_json::json!({"provider": "openai", "api_key": ROTATION_PLATFORM_KEY}),
        ),
        (
            "PUT",
            format!("/api/v1/workspaces/{ws}/voice/providers/gemini"),
            serde_json::json!({"api_key": ROTATION_PLATFORM_KEY}),
        ),
    ] {
        let (status, reply) = api(&http, &base, method, &path, Some(&admin), Some(body)).await;
        assert!(
            !reply.to_string().contains(ROTATION_PLATFORM_KEY),
            "{status} {reply}"
        );
        assert!(
            !reply.to_string().contains(ROTATION_BYO_KEY),
            "{status} {reply}"
        );
    }
    let (status, list) = api(
        &http,
        &base,
        "GET",
        "/api/v1/admin/providers",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(!list.to_string().contains(ROTATION_BYO_KEY));
    assert!(server.terminate().success());

    let printed = format!("{}{}", server.stdout_so_far(), server.stderr_so_far());
    assert!(
        printed.contains("DEBUG"),
        "debug logging was not on: {printed}"
    );
    for line in printed.lines() {
        assert!(
            !line.contains(ROTATION_PLATFORM_KEY) && !line.contains(ROTATION_BYO_KEY),
            "a key reached a log line: {line}"
        );
    }
}

#[test]
fn bench_hands_over_to_vocalized_bench_or_says_how_to_build_it() {
    // A copy of the gateway with no bench beside it: one clear error, exit 2.
    let tmp = TempDir::new("vz-cli");
    let lonely = tmp.0.join("vocalized");
    std::fs::copy(env!("CARGO_BIN_EXE_vocalized"), &lonely).unwrap();
    let mut command = std::process::Command::new(&lonely);
    command
        .args(["bench", "--help"])
        .current_dir(&tmp.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = finish(command);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("cargo build -p vocalized-bench"),
        "{out:?}"
    );

    // Beside the real one (cargo builds every workspace binary for the tests), the
    // arguments pass through untouched.
    let beside = Path::new(env!("CARGO_BIN_EXE_vocalized")).with_file_name("vocalized-bench");
    if beside.exists() {
        let mut command = vocalized(&tmp.0);
        command.args(["bench", "--help"]);
        let out = finish(command);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("passthrough"), "{out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Operational exposure (issue 19, L14)
// ---------------------------------------------------------------------------------------

#[test]
fn demo_is_refused_unless_listening_on_loopback() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        assert_config_error(
            &["serve", "--demo", "--listen", listen],
            &[],
            "--demo needs a loopback --listen address",
        );
    }
    assert_config_error(
        &["serve", "--listen", "0.0.0.0:0"],
        &[("VOCALIZED_DEMO", "true")],
        "--demo needs a loopback --listen address",
    );
}

/// A blocking GET with an optional bearer token: the status code.
fn get_status(addr: std::net::SocketAddr, path: &str, bearer: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn metrics_ask_for_the_token_when_one_is_set() {
    let tmp = TempDir::new("vz-cli");
    let mut command = vocalized(&tmp.0);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .env("VOCALIZED_METRICS_TOKEN", "scrape-me-9f8e7d");
    let mut server = Process::spawn(&mut command);
    let addr = server.wait_listening();
    assert_eq!(get_status(addr, "/metrics", None), 401);
    assert_eq!(get_status(addr, "/metrics", Some("wrong")), 401);
    assert_eq!(get_status(addr, "/metrics", Some("scrape-me-9f8e7d")), 200);
    // Health checks stay open for load balancers.
    assert_eq!(get_status(addr, "/healthz", None), 200);
    assert!(server.terminate().success());
    assert!(!server.stderr_so_far().contains("scrape-me-9f8e7d"));
}
