//! The gateway under test: a `vocalized serve` child process with a throw-away data
//! directory (or a gateway someone else started), provisioned through its REST API the
//! way a customer would: sign up, create a workspace, a phone number and an agent on it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// The public URL the gateway believes it lives at; Twilio signs over it.
pub const PUBLIC_URL: &str = "https://bench.vocalized.test";
pub const TWILIO_ACCOUNT_SID: &str = "ACbe0c0000000000000000000000000000";
pub const TWILIO_AUTH_TOKEN: &str = "bench-twilio-auth-token";
/// A fresh agent number in the fictional 555-01xx range, so that runs against the same
/// (`--target`) gateway do not collide on it; every caller of a run dials it.
pub fn agent_number() -> String {
    let n = u64::from_str_radix(&crate::fakes::random_hex(8), 16).unwrap_or(0);
    format!("+1415{:03}01{:02}", 200 + n % 800, (n / 800) % 100)
}

/// Why the gateway could not be started or provisioned.
#[derive(Debug)]
pub struct GatewayError(pub String);

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GatewayError {}

fn err(message: impl Into<String>) -> GatewayError {
    GatewayError(message.into())
}

/// Where `vocalized` is when none is named: next to the running executable (the bench
/// binary and the gateway share `target/<profile>/`), or one level up from a test's
/// `deps/` directory.
pub fn default_gateway_bin() -> Result<PathBuf, GatewayError> {
    let exe = std::env::current_exe().map_err(|e| err(format!("current_exe: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join("vocalized"), dir.join("..").join("vocalized")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            err(format!(
                "no `vocalized` binary next to {}: build it with `cargo build --bin vocalized` \
             (same profile and target dir), pass --gateway-bin PATH, or --target URL for a \
             running gateway",
                exe.display()
            ))
        })
}

/// The platform admin `with_admin` creates: a super_admin, since it sets provider URLs
/// (failover, transcode) and verifies the agent's number (every phone scenario).
pub const ADMIN_EMAIL: &str = "admin@bench.vocalized.test";
const ADMIN_PASSWORD: &str = "bench-admin-password-1";

/// A platform admin's sign-in, used to verify the agent's phone number: the gateway routes
/// calls through the platform's Twilio account only to numbers an admin verified.
#[derive(Clone, Debug)]
pub struct AdminLogin {
    pub email: String,
    pub password: String,
}

impl AdminLogin {
    /// The admin a spawned gateway gets ([`ADMIN_EMAIL`]).
    pub fn bench() -> Self {
        Self {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        }
    }

    /// For a `--target` gateway: an admin (role admin or super_admin) the operator created
    /// on it with `vocalized admin create`, named by VOCALIZED_BENCH_ADMIN_EMAIL and
    /// VOCALIZED_BENCH_ADMIN_PASSWORD.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Some(Self {
            email: var("VOCALIZED_BENCH_ADMIN_EMAIL")?,
            password: var("VOCALIZED_BENCH_ADMIN_PASSWORD")?,
        })
    }
}

/// Drops every inherited `VOCALIZED_*` variable so the bench's settings are the only ones.
fn clean_env(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("VOCALIZED_") {
            command.env_remove(name);
        }
    }
}

/// A running gateway child; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The data directory, removed on drop.
    dir: PathBuf,
    /// What the gateway wrote to stderr (the tail is shown when it dies).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl GatewayProcess {
    /// Starts `bin serve` on a free port, Twilio and OpenAI pointed at the bench, and
    /// waits (up to 60 s: a debug build migrating SQLite on a busy box) for it to listen.
    /// `with_admin` first creates the platform admin [`ADMIN_EMAIL`] with `bin admin create`.
    pub fn start(bin: &Path, openai_url: &str, with_admin: bool) -> Result<Self, GatewayError> {
        let dir = std::env::temp_dir().join(format!(
            "vocalized-bench-{}-{}",
            std::process::id(),
            crate::fakes::random_hex(8)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("temp dir: {e}")))?;
        if with_admin {
            let mut admin = Command::new(bin);
            clean_env(&mut admin);
            let out = admin
                .args([
                    "admin",
                    "create",
                    "--email",
                    ADMIN_EMAIL,
                    "--name",
                    "Bench",
                    "--role",
                    "super_admin",
                    "--data-dir",
                ])
                .arg(dir.join("data"))
                .env("VOCALIZED_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .current_dir(&dir)
                .output()
                .map_err(|e| err(format!("cannot run {}: {e}", bin.display())))?;
            if !out.status.success() {
                return Err(err(format!(
                    "admin create: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let mut command = Command::new(bin);
        clean_env(&mut command);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--public-url", PUBLIC_URL])
            .env("VOCALIZED_TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT_SID)
            .env("VOCALIZED_TWILIO_AUTH_TOKEN", TWILIO_AUTH_TOKEN)
            .env("VOCALIZED_OPENAI_REALTIME_URL", openai_url)
            .env("VOCALIZED_OPENAI_API_KEY", "sk-bench-platform-key")
            // Browser calls (the webrtc scenario): media on loopback, where the bench's
            // peers are, and each caller's address from X-Forwarded-For, since all of them
            // come from 127.0.0.1 and the gateway allows few web calls per address.
            .env("VOCALIZED_WEBRTC_BIND_IP", "127.0.0.1")
            .env("VOCALIZED_TRUST_FORWARDED_FOR", "true")
            // Per-call info lines would cost the gateway CPU the bench then blames on it.
            .env(
                "RUST_LOG",
                std::env::var("VOCALIZED_BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", bin.display())))?;
        let (lines_tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            // Drained for the child's whole life, or a full pipe would stall it.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = lines_tx.send(line);
                }
            });
        }
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let copy = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = copy.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    // Keep the tail only: a long soak must not grow this forever.
                    if s.len() > 64 * 1024 {
                        let cut = s.len() - 32 * 1024;
                        let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                        s.drain(..cut);
                    }
                }
            });
        }
        let mut gateway = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            stderr,
        };
        gateway.addr = gateway.wait_listening(&lines)?;
        Ok(gateway)
    }

    fn wait_listening(
        &mut self,
        lines: &mpsc::Receiver<String>,
    ) -> Result<SocketAddr, GatewayError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1)
                        && let Some(Ok(addr)) = rest.split_whitespace().next().map(str::parse)
                    {
                        return Ok(addr);
                    }
                }
                Err(_) => {
                    return Err(err(format!(
                        "the gateway did not start listening within 60 s: {}",
                        self.stderr_tail()
                    )));
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the gateway has exited (a crash, during a bench).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let start = s.len().saturating_sub(2000);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s[start..].to_owned()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An owner account with a live agent on `number`.
pub struct Provisioned {
    pub base: String,
    pub workspace_id: String,
    pub agent_id: String,
    /// The agent's public widget key (`pk_…`): browser calls post their offer to
    /// `/media/webrtc/{widget_key}`.
    pub widget_key: String,
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> Result<Value, GatewayError> {
    let mut request = http.post(format!("{base}{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| err(format!("POST {path}: {e}")))?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(err(format!("POST {path}: {status} {value}")));
    }
    Ok(value)
}

fn field(value: &Value, pointer: &str) -> Result<String, GatewayError> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| err(format!("no {pointer} in {value}")))
}

/// Signs up, creates a workspace, `number` and an agent with `voice_provider` and
/// `agent_config`, and activates it. With `verify_as`, that admin verifies the number, so
/// calls to it through the platform's Twilio account route (phone scenarios need this), and
/// moves the workspace onto the enterprise tier, which caps no calls at once.
pub async fn provision(
    base: &str,
    voice_provider: &str,
    agent_config: Value,
    number: &str,
    verify_as: Option<&AdminLogin>,
) -> Result<Provisioned, GatewayError> {
    let http = reqwest::Client::new();
    let email = format!("bench-{}@bench.vocalized.test", crate::fakes::random_hex(8));
    let signup = post(
        &http,
        base,
        None,
        "/api/v1/auth/signup",
        json!({"email": email, "password": "bench-password-123", "name": "Bench"}),
    )
    .await?;
    let token = field(&signup, "/token")?;
    let t = Some(token.as_str());
    let workspace = post(
        &http,
        base,
        t,
        "/api/v1/workspaces",
        json!({"name": "Bench"}),
    )
    .await?;
    let workspace_id = field(&workspace, "/workspace/id")?;
    let ws = |rest: &str| format!("/api/v1/workspaces/{workspace_id}{rest}");
    let number = post(
        &http,
        base,
        t,
        &ws("/phone-numbers"),
        json!({"phone_number": number}),
    )
    .await?;
    let number_id = field(&number, "/phone_number/id")?;
    if let Some(admin) = verify_as {
        lift_limits(&http, base, admin, &workspace_id, &number_id).await?;
    }
    let agent = post(
        &http,
        base,
        t,
        &ws("/agents"),
        json!({"name": "Bench agent",
        "voice_provider": voice_provider, "phone_number_id": number_id, "config": agent_config}),
    )
    .await?;
    let agent_id = field(&agent, "/agent/id")?;
    let widget_key = field(&agent, "/agent/widget_public_key")?;
    post(
        &http,
        base,
        t,
        &ws(&format!("/agents/{agent_id}/activate")),
        json!({}),
    )
    .await?;
    Ok(Provisioned {
        base: base.to_owned(),
        workspace_id,
        agent_id,
        widget_key,
    })
}

/// Signs in as `admin`, verifies phone number `number_id` and puts `workspace_id` on the
/// enterprise tier.
async fn lift_limits(
    http: &reqwest::Client,
    base: &str,
    admin: &AdminLogin,
    workspace_id: &str,
    number_id: &str,
) -> Result<(), GatewayError> {
    let login = post(
        http,
        base,
        None,
        "/api/v1/admin/auth/login",
        json!({"email": admin.email, "password": admin.password}),
    )
    .await
    .map_err(|e| err(format!("signing in as platform admin {}: {e}", admin.email)))?;
    let token = field(&login, "/token")?;
    post(
        http,
        base,
        Some(&token),
        &format!("/api/v1/admin/phone-numbers/{number_id}/verify"),
        json!({}),
    )
    .await?;
    let url = format!("{base}/api/v1/admin/workspaces/{workspace_id}");
    let response = http
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({"subscription_tier": "enterprise"}))
        .send()
        .await
        .map_err(|e| err(format!("PUT {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(err(format!(
            "PUT {url}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Signs in as [`ADMIN_EMAIL`] and adds a platform provider config (`body` as the admin
/// API takes it, e.g. `{"provider": "echo", "priority": 10}`).
pub async fn add_platform_provider(base: &str, body: Value) -> Result<(), GatewayError> {
    let http = reqwest::Client::new();
    let login = post(
        &http,
        base,
        None,
        "/api/v1/admin/auth/login",
        json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
    )
    .await?;
    let token = field(&login, "/token")?;
    post(&http, base, Some(&token), "/api/v1/admin/providers", body).await?;
    Ok(())
}

/// One reading of the gateway process from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime in µs.
    pub cpu_us: u64,
    pub rss_kb: u64,
}

/// Clock ticks per second for /proc's utime/stime: `getconf CLK_TCK`, else Linux's 100.
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Reads /proc/<pid>/stat (utime, stime) and /proc/<pid>/status (VmRSS); `None` when the
/// process is gone or this is not Linux.
pub fn read_proc(pid: u32, ticks_per_sec: u64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_proc(&stat, &status, ticks_per_sec)
}

/// The parsing half of [`read_proc`].
pub fn parse_proc(stat: &str, status: &str, ticks_per_sec: u64) -> Option<ProcSample> {
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `fields[0]` is field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(ProcSample {
        cpu_us: (utime + stime) * 1_000_000 / ticks_per_sec.max(1),
        rss_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_past_a_name_with_spaces() {
        let stat = "4242 (vocal ized) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 1000 \
                    300000000 5000 18446744073709551615";
        let status = "Name:\tvocalized\nVmPeak:\t  90000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(
            parse_proc(stat, status, 100),
            Some(ProcSample {
                cpu_us: 3_000_000,
                rss_kb: 20480
            })
        );
        assert_eq!(parse_proc("garbage", status, 100), None);
        assert_eq!(parse_proc(stat, "Name:\tx\n", 100), None);
    }

    #[test]
    fn agent_numbers_are_e164_and_differ_between_runs() {
        let a = agent_number();
        assert!(a.starts_with("+1415") && a.len() == 12, "{a}");
        assert!(a[1..].chars().all(|c| c.is_ascii_digit()));
        let others: std::collections::HashSet<String> = (0..20).map(|_| agent_number()).collect();
        assert!(others.len() > 1);
    }

    #[test]
    fn this_process_can_be_read() {
        let sample = read_proc(std::process::id(), clock_ticks_per_sec());
        assert!(sample.is_some_and(|s| s.rss_kb > 0));
    }
}
