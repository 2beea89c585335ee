//! What each subcommand does: validate (exit 2 on a mistake), bind, open, serve until
//! SIGINT/SIGTERM.

use super::config::{self, ConfigError, KeySource, Mode, ServeConfig};
use super::http_server::{self, ServerLimits};
use super::{
    AdminCommand, AdminCreateArgs, Cli, Command, DatabaseArgs, KeysCommand, KeysRotateArgs,
    MediaArgs, ServeArgs,
};
use anyhow::Context as _;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use vocalized_control::calls::link::InProcessLink;
use vocalized_control::db::rotate::{RotateError, rotate_master_key};
use vocalized_control::{CreateAdminError, Db};
use vocalized_media::io::NodeState;
use vocalized_media::io::twilio_call::{self, TwilioCallConfig};
use vocalized_media::io::webrtc;

/// How long a stopping server waits for open requests (and a media node for its calls)
/// before it exits anyway; orchestrators usually kill after 30 s, so finish first.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// How long a stopping `serve` waits for queued call events to reach the database.
const EVENT_FLUSH_GRACE: Duration = Duration::from_secs(10);

/// Why the process stops with a non-zero exit code.
#[derive(Debug)]
pub enum Failure {
    /// The user's configuration is wrong: exit code 2, like a usage error.
    Config(ConfigError),
    /// The configuration is fine but the world is not (port taken, database down): exit 1.
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }
}

/// One line, so scripts and humans see the whole reason at once.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::Config(e) => e.to_string(),
            Failure::Runtime(e) => format!("{e:#}"),
        };
        f.write_str(&text.replace('\n', " "))
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve(args, Mode::All).await,
        Command::Control(args) => serve(args, Mode::ControlOnly).await,
        Command::Media(args) => media(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Admin(AdminCommand::Create(args)) => admin_create(args).await,
        Command::Keys(KeysCommand::Rotate(args)) => keys_rotate(args).await,
        Command::Bench { args } => bench(args),
    }
}

async fn serve(args: ServeArgs, mode: Mode) -> Result<(), Failure> {
    let signals = ShutdownSignals::install()?;
    let config = ServeConfig::from_args(&args, mode)?;
    if let KeySource::Generated(path) = &config.key_source {
        // Said on stderr whatever RUST_LOG is: losing this file loses every stored secret.
        eprintln!(
            "vocalized: generated a new master key in {} (mode 0600); back it up or set \
             VOCALIZED_MASTER_KEY, secrets stored in the database cannot be read without it",
            path.display()
        );
    }
    let listener = bind(config.listen).await?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let public_url = config.public_url(bound);
    if !config.metrics_protected() && !bound.ip().is_loopback() {
        tracing::warn!(
            "/metrics is open to anyone who can reach {bound}; set VOCALIZED_METRICS_TOKEN to require a bearer token"
        );
    }
    let database = config::redact_database_url(&config.database_url);
    tracing::info!(%database, "opening the database and applying migrations");
    let control_config = config.control_config(bound);
    if vocalized_control::http::widget::turn_is_server_side_only(&control_config) {
        tracing::info!(
            "TURN with static credentials is used server-side only; set \
             VOCALIZED_TURN_SHARED_SECRET to give browsers short-lived TURN credentials"
        );
    }
    let state = vocalized_control::open(control_config)
        .await
        .with_context(|| format!("cannot open the database {database}"))?;
    let db = state.db.clone();
    let node = NodeState::new();
    let mut app = vocalized_control::router(state.clone());
    let mut event_writer = None;
    if mode == Mode::All {
        // One process: the media plane reads call plans and writes call events straight
        // through the control plane (ARCHITECTURE.md §2, in-process link).
        // One /metrics for both planes.
        let media_node = node.clone();
        state.metrics.add_renderer(Box::new(move || {
            media_node.render_metrics() + &vocalized_media::io::metrics::render()
        }));
        let (link, writer) = InProcessLink::start(state);
        let link = Arc::new(link);
        let phone =
            twilio_call::router(Arc::clone(&link), node.clone(), TwilioCallConfig::default());
        let browser = webrtc::router(link, node.clone(), config.webrtc_config());
        app = app
            .merge(phone)
            .merge(browser)
            .merge(webrtc::assets_router());
        event_writer = Some(writer);
    }
    println!("vocalized listening on http://{bound} (public URL {public_url})");
    if args.demo && mode == Mode::All {
        print_demo(&db, &args.database.data_dir, &public_url).await?;
    }
    let served = serve_until_shutdown(listener, app, config.server_limits, signals, || {
        drain_calls(node)
    })
    .await;
    if let Some(writer) = event_writer {
        // The writer ends once the last call task has dropped its link; waiting for it
        // means every usage and ended event is in the database before the pool closes.
        if tokio::time::timeout(EVENT_FLUSH_GRACE, writer)
            .await
            .is_err()
        {
            tracing::warn!("call events still queued after {EVENT_FLUSH_GRACE:?}; exiting anyway");
        }
    }
    // Closing the pool lets SQLite checkpoint its WAL, leaving one tidy file behind.
    db.pool.close().await;
    served.map_err(Failure::Runtime)
}

/// Ensures the demo workspace exists and prints where to try it. Its owner's password is
/// kept in `{data_dir}/demo-login` (mode 0600) so later starts can print it again.
async fn print_demo(db: &Db, data_dir: &std::path::Path, public_url: &str) -> Result<(), Failure> {
    let demo = vocalized_control::demo::ensure(db)
        .await
        .context("creating the demo workspace")?;
    let login_file = data_dir.join("demo-login");
    let password = match &demo.password {
        Some(password) => {
            std::fs::create_dir_all(data_dir)
                .and_then(|()| write_private(&login_file, password))
                .context("saving the demo login")?;
            Some(password.clone())
        }
        None => std::fs::read_to_string(&login_file)
            .ok()
            .map(|p| p.trim().to_owned()),
    };
    println!(
        "vocalized demo: open {public_url}/demo/{key} and press Call (agent: the echo test provider, widget key {key})",
        key = demo.public_key
    );
    match password {
        Some(password) => println!("vocalized demo login: {} {password}", demo.email),
        None => println!(
            "vocalized demo login: {} (password lost; use forgot-password)",
            demo.email
        ),
    }
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// `vocalized bench ...`: hands over to the `vocalized-bench` binary beside this one, so
/// the load generator's dependencies stay out of the gateway. Exits with its status.
fn bench(args: Vec<std::ffi::OsString>) -> Result<(), Failure> {
    let exe = std::env::current_exe().context("locating the vocalized binary")?;
    let bench = exe.with_file_name(format!("vocalized-bench{}", std::env::consts::EXE_SUFFIX));
    if !bench.exists() {
        return Err(Failure::Config(ConfigError(format!(
            "{} not found: build it with `cargo build -p vocalized-bench` (it is installed \
             next to vocalized)",
            bench.display()
        ))));
    }
    let status = std::process::Command::new(&bench)
        .args(args)
        .status()
        .with_context(|| format!("running {}", bench.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

async fn media(args: MediaArgs) -> Result<(), Failure> {
    let signals = ShutdownSignals::install()?;
    let listen = config::listen_addr(&args.listen)?;
    let listener = bind(listen).await?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let state = NodeState::new();
    let app = vocalized_media::io::node::router(state.clone());
    println!("vocalized media listening on http://{bound}");
    serve_until_shutdown(listener, app, ServerLimits::default(), signals, move || {
        drain_calls(state)
    })
    .await
    .map_err(Failure::Runtime)
}

/// Keeps the node up, answering `/readyz` with 503, until its calls have ended.
async fn drain_calls(state: NodeState) {
    state.begin_drain();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while state.active_calls() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if state.active_calls() > 0 {
        tracing::warn!(
            active_calls = state.active_calls(),
            "stopping with calls still running"
        );
    }
}

async fn migrate(args: DatabaseArgs) -> Result<(), Failure> {
    let url = config::resolve_database_url(&args)?;
    let database = config::redact_database_url(&url);
    let db = connect(&url).await?;
    // Before the first migration the bookkeeping table does not exist: nothing applied.
    let before = applied_migrations(&db).await.unwrap_or_default();
    db.migrate()
        .await
        .with_context(|| format!("migrating {database}"))?;
    let after = applied_migrations(&db)
        .await
        .with_context(|| format!("reading the applied migrations of {database}"))?;
    let new: Vec<_> = after.iter().filter(|m| !before.contains(m)).collect();
    if new.is_empty() {
        println!(
            "{database} is up to date ({} migrations applied earlier)",
            after.len()
        );
    } else {
        println!("applied {} migrations to {database}:", new.len());
        for (version, description) in new {
            println!("  {version:04} {description}");
        }
    }
    db.pool.close().await;
    Ok(())
}

async fn applied_migrations(db: &Db) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as::<_, (i64, String)>(
        "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&db.pool)
    .await?)
}

async fn admin_create(args: AdminCreateArgs) -> Result<(), Failure> {
    let role = config::admin_role(&args.role)?;
    let url = config::resolve_database_url(&args.database)?;
    let db = connect(&url).await?;
    db.migrate().await.context("applying migrations")?;
    let created =
        vocalized_control::create_admin(&db, &args.email, &args.name, &args.password, role).await;
    db.pool.close().await;
    let id = match created {
        Ok(id) => id,
        Err(CreateAdminError::Invalid(why)) => {
            return Err(ConfigError(format!("cannot create the admin: {why}")).into());
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("cannot create the admin")
                .into());
        }
    };
    println!("created {role} {} (id {id})", args.email);
    Ok(())
}

/// `vocalized keys rotate`: re-encrypts every secret, then replaces the key file. The new
/// key is staged beside the key file before the database changes and moved over it only
/// after the commit, so neither a failed rotation nor a failed move loses a key.
async fn keys_rotate(args: KeysRotateArgs) -> Result<(), Failure> {
    let new = config::new_master_key(&args.new_key)?;
    let (old, source) =
        config::current_master_key(args.master_key.as_deref(), &args.database.data_dir)?;
    if old == new {
        return Err(
            ConfigError("the new master key is the current one; nothing to do".into()).into(),
        );
    }
    let url = config::resolve_database_url(&args.database)?;
    let db = connect(&url).await?;
    db.migrate().await.context("applying migrations")?;
    let staged = match &source {
        KeySource::File(path) => Some((config::stage_key_file(path, &new)?, path.clone())),
        KeySource::Given | KeySource::Generated(_) => None,
    };
    let rotated = rotate_master_key(&db, &old, &new).await;
    db.pool.close().await;
    let report = match rotated {
        Ok(report) => report,
        Err(e) => {
            if let Some((staged, _)) = &staged {
                let _ = std::fs::remove_file(staged);
            }
            return Err(match e {
                RotateError::SameKey | RotateError::DoesNotOpen { .. } => {
                    ConfigError(format!("cannot rotate the master key: {e}")).into()
                }
                other => anyhow::Error::new(other)
                    .context("cannot rotate the master key; nothing was changed")
                    .into(),
            });
        }
    };
    println!(
        "re-encrypted {} secrets under the new master key:",
        report.total()
    );
    for (column, count) in &report.columns {
        println!("  {}.{}: {count}", column.table, column.column);
    }
    match staged {
        Some((staged, path)) => {
            config::install_key_file(&staged, &path).with_context(|| {
                format!(
                    "the database now uses the new key, but it could not replace {}; move {} \
                     there before starting the server",
                    path.display(),
                    staged.display()
                )
            })?;
            println!("wrote the new master key to {} (mode 0600)", path.display());
        }
        None => println!(
            "the key came from VOCALIZED_MASTER_KEY: set it to the new key on every node \
             before starting them"
        ),
    }
    println!(
        "access tokens signed with the old key stop working once the servers restart; clients refresh them"
    );
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<Db> {
    Db::connect(url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            config::redact_database_url(url)
        )
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "the address is already in use (is another server running?)".to_owned()
        } else {
            e.to_string()
        };
        Failure::Runtime(anyhow::anyhow!("cannot listen on {addr}: {why}"))
    })
}

/// Serves until SIGINT or SIGTERM, then runs `drain` while still serving (a media node
/// keeps answering `/readyz` with 503 while its calls end), then stops accepting and
/// gives open requests [`SHUTDOWN_GRACE`] to finish.
async fn serve_until_shutdown<D, F>(
    listener: TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    mut signals: ShutdownSignals,
    drain: D,
) -> anyhow::Result<()>
where
    D: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = http_server::serve(listener, app, limits, async move {
        let _ = stopped.await;
    });
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return Ok(()),
        () = signals.recv() => {}
    }
    tracing::info!("shutdown requested: draining");
    tokio::select! {
        () = &mut server => return Ok(()),
        () = drain() => {}
    }
    let _ = stop.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("requests still open after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// SIGINT and SIGTERM, listened for from the moment the process starts: a signal that
/// arrives while the server is still starting (or printing its first lines) stops it
/// gracefully instead of killing it with the default action.
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_separate_configuration_from_runtime_failures() {
        let config = Failure::from(ConfigError("bad".into()));
        let runtime = Failure::from(anyhow::anyhow!("down"));
        assert_eq!((config.exit_code(), runtime.exit_code()), (2, 1));
    }

    #[test]
    fn failures_print_as_one_line_with_their_causes() {
        let e =
            anyhow::anyhow!("connection refused\nretry later").context("cannot open the database");
        assert_eq!(
            Failure::from(e).to_string(),
            "cannot open the database: connection refused retry later"
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_a_runtime_failure_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let failure = bind(addr).await.unwrap_err();
        assert_eq!(failure.exit_code(), 1);
        assert!(
            failure
                .to_string()
                .contains(&format!("{addr}: the address is already in use"))
        );
    }
}
