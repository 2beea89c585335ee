//! The command line: what each subcommand accepts (clap derive), nothing more.
//!
//! - [`config`]: turns raw flags and `VOCALIZED_*` variables into validated settings, so
//!   bad configuration fails before anything is bound or opened.
//! - [`run`]: what each subcommand does with them.
//! - [`http_server`]: the HTTP server under both planes (timeouts, connection cap).

pub mod config;
pub mod http_server;
pub mod run;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Vocalized: a real-time voice gateway between phone and browser callers and AI voice agents.
///
/// With no subcommand, runs `serve`.
#[derive(Parser, Debug)]
#[command(name = "vocalized", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The `serve` flags, accepted without the subcommand since `serve` is the default.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Control plane and media plane in one process, on SQLite by default (the default command).
    Serve(ServeArgs),
    /// The control plane alone (REST API, auth, billing, webhooks); scale out behind a load balancer.
    Control(ServeArgs),
    /// A media node alone; for now it serves /healthz, /readyz and /metrics.
    Media(MediaArgs),
    /// Applies pending database migrations and prints what it applied.
    Migrate(DatabaseArgs),
    /// Platform administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The master key that encrypts secrets at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The load-test suite: runs `vocalized-bench` (installed next to this binary) with
    /// these arguments; `vocalized bench --help` lists its scenarios.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (`host:port`; port 0 picks a free one and prints it).
    #[arg(
        long,
        env = "VOCALIZED_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The base URL the outside world uses to reach this server (Twilio webhooks, stream
    /// URLs, links in emails). Default: http://{listen}.
    #[arg(long, env = "VOCALIZED_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// 32-byte key for secrets at rest, as 64 hex characters or base64. Prefer the
    /// environment variable: flags are visible to other users in `ps`. When unset, `serve`
    /// uses {data-dir}/master.key, creating it on first start.
    #[arg(
        long,
        env = "VOCALIZED_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub master_key: Option<String>,
    /// Take the client address from the right-most `X-Forwarded-For` entry, the one the
    /// proxy in front appended (rate limits, audit log). Only behind a reverse proxy you
    /// run that appends the address it saw (nginx `$proxy_add_x_forwarded_for`).
    #[arg(long, env = "VOCALIZED_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Require `Authorization: Bearer TOKEN` on /metrics (give your Prometheus the token).
    /// Unset, /metrics is open to whoever reaches the listener: fine on loopback or a
    /// private network, not on a public address.
    #[arg(
        long,
        env = "VOCALIZED_METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub metrics_token: Option<String>,
    /// Open connections (WebSockets included) served at once; more wait in the kernel's
    /// accept queue. Each request head must arrive within 10 s (slow clients are cut off).
    #[arg(
        long,
        env = "VOCALIZED_MAX_CONNECTIONS",
        default_value_t = http_server::DEFAULT_MAX_CONNECTIONS,
        value_name = "N"
    )]
    pub max_connections: usize,
    /// Create (once) a demo workspace with a live echo agent (a test provider that needs
    /// no keys) and print its widget key and owner login (`serve` only, and only on a
    /// loopback --listen address: it prints the owner's password).
    #[arg(long, env = "VOCALIZED_DEMO")]
    pub demo: bool,
    /// Address browser-call media binds to: `0.0.0.0` (every interface but loopback) or
    /// one address, such as `127.0.0.1` for calls from this machine only.
    #[arg(long, env = "VOCALIZED_WEBRTC_BIND_IP", default_value = "0.0.0.0")]
    pub webrtc_bind_ip: String,
    /// The public IP announced to browsers instead of the bound one (1:1 NAT, e.g. a cloud
    /// VM's public address).
    #[arg(long, env = "VOCALIZED_PUBLIC_IP")]
    pub public_ip: Option<String>,
    /// STUN/TURN servers for browser calls, as a JSON array of RTCIceServer objects, e.g.
    /// `[{"urls":"stun:stun.example.com:3478"}]`. Used by the server; browsers get the STUN
    /// servers, and the TURN ones only with VOCALIZED_TURN_SHARED_SECRET (never a
    /// configured credential).
    #[arg(long, env = "VOCALIZED_ICE_SERVERS", hide_env_values = true)]
    pub ice_servers: Option<String>,
    /// The TURN server's REST API secret (coturn `use-auth-secret` with
    /// `static-auth-secret`): browsers then get short-lived TURN credentials, one hour each.
    #[arg(long, env = "VOCALIZED_TURN_SHARED_SECRET", hide_env_values = true)]
    pub turn_shared_secret: Option<String>,
    #[command(flatten)]
    pub platform: PlatformAccountArgs,
}

/// The platform's own accounts at Twilio and the voice providers; workspaces may bring
/// their own keys, which the control plane stores encrypted.
#[derive(Args, Debug, Clone)]
pub struct PlatformAccountArgs {
    /// The platform's Twilio account SID (give the auth token too).
    #[arg(long, env = "VOCALIZED_TWILIO_ACCOUNT_SID", value_name = "SID")]
    pub twilio_account_sid: Option<String>,
    /// The platform's Twilio auth token: verifies Twilio's webhook signatures.
    #[arg(
        long,
        env = "VOCALIZED_TWILIO_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub twilio_auth_token: Option<String>,
    /// OpenAI Realtime WebSocket URL: a regional or Azure endpoint, or a fake provider for
    /// tests and load tests. The admin provider config overrides it.
    #[arg(long, env = "VOCALIZED_OPENAI_REALTIME_URL", value_name = "URL",
          default_value = vocalized_control::config::OPENAI_REALTIME_URL)]
    pub openai_realtime_url: String,
    /// The platform's OpenAI API key, for workspaces without their own.
    #[arg(
        long,
        env = "VOCALIZED_OPENAI_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub openai_api_key: Option<String>,
    /// Gemini Live WebSocket URL (a regional endpoint, a proxy or a fake).
    #[arg(long, env = "VOCALIZED_GEMINI_URL", value_name = "URL",
          default_value = vocalized_control::config::GEMINI_LIVE_URL)]
    pub gemini_url: String,
    /// The platform's Gemini API key.
    #[arg(
        long,
        env = "VOCALIZED_GEMINI_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub gemini_api_key: Option<String>,
    /// ElevenLabs Agents WebSocket URL.
    #[arg(long, env = "VOCALIZED_ELEVENLABS_URL", value_name = "URL",
          default_value = vocalized_control::config::ELEVENLABS_AGENTS_URL)]
    pub elevenlabs_url: String,
    /// The platform's ElevenLabs API key.
    #[arg(
        long,
        env = "VOCALIZED_ELEVENLABS_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub elevenlabs_api_key: Option<String>,
    /// Deepgram Voice Agent WebSocket URL.
    #[arg(long, env = "VOCALIZED_DEEPGRAM_URL", value_name = "URL",
          default_value = vocalized_control::config::DEEPGRAM_AGENT_URL)]
    pub deepgram_url: String,
    /// The platform's Deepgram API key.
    #[arg(
        long,
        env = "VOCALIZED_DEEPGRAM_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub deepgram_api_key: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Directory for the SQLite database and the generated master key.
    #[arg(
        long,
        env = "VOCALIZED_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// `postgres://user:pass@host:5432/db` or `sqlite://path?mode=rwc`.
    /// Default: sqlite://{data-dir}/vocalized.db?mode=rwc.
    #[arg(
        long,
        env = "VOCALIZED_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct MediaArgs {
    /// Address to listen on (`host:port`; port 0 picks a free one and prints it).
    #[arg(
        long,
        env = "VOCALIZED_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR"
    )]
    pub listen: String,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Creates a platform admin who can sign in to the admin API.
    Create(AdminCreateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AdminCreateArgs {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: String,
    /// The admin's password. VOCALIZED_ADMIN_PASSWORD keeps it out of shell history and `ps`.
    #[arg(long, env = "VOCALIZED_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// super_admin, admin or support.
    #[arg(long, default_value = "admin")]
    pub role: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Re-encrypts every stored secret under a new master key in one transaction, then
    /// (when the current key is in {data-dir}/master.key) replaces that file. Stop the
    /// servers first. Prints counts, never keys.
    Rotate(KeysRotateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct KeysRotateArgs {
    /// The new key: 64 hex characters or the base64 of 32 bytes (e.g. `openssl rand -hex
    /// 32`). Prefer the environment variable: flags are visible to other users in `ps`.
    #[arg(
        long,
        env = "VOCALIZED_NEW_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub new_key: String,
    /// The current key, as `serve` takes it. When unset, {data-dir}/master.key.
    #[arg(
        long,
        env = "VOCALIZED_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub master_key: Option<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_serve_with_its_flags() {
        let cli = Cli::try_parse_from(["vocalized", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen, "127.0.0.1:0");
    }

    #[test]
    fn serve_flags_after_a_subcommand_belong_to_it() {
        let cli = Cli::try_parse_from(["vocalized", "control", "--data-dir", "/srv/vz"]).unwrap();
        match cli.command {
            Some(Command::Control(args)) => {
                assert_eq!(args.database.data_dir, PathBuf::from("/srv/vz"))
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn keys_rotate_takes_the_new_key_and_the_database_flags() {
        let cli = Cli::try_parse_from([
            "vocalized",
            "keys",
            "rotate",
            "--new-key",
            "k",
            "--data-dir",
            "/srv/vz",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Keys(KeysCommand::Rotate(args))) => {
                assert_eq!(args.new_key, "k");
                assert_eq!(args.database.data_dir, PathBuf::from("/srv/vz"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn admin_create_defaults_to_the_admin_role() {
        let cli = Cli::try_parse_from([
            "vocalized",
            "admin",
            "create",
            "--email",
            "a@b.c",
            "--name",
            "A",
            "--password",
            "pw",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Admin(AdminCommand::Create(args))) => assert_eq!(args.role, "admin"),
            other => panic!("parsed as {other:?}"),
        }
    }
}
