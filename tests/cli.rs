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
    assert!(first.terminate().success());
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
