//! Turns raw flags and `VOCALIZED_*` variables into validated settings.
//!
//! Everything here runs before the server binds a port or opens a database, so a typo
//! in the configuration costs one clear line and exit code 2 instead of a half-started
//! node. Messages never echo a secret: database URLs are redacted and master keys are
//! only ever described, not printed.

use super::http_server::ServerLimits;
use super::{DatabaseArgs, PlatformAccountArgs, ServeArgs};
use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use vocalized_control::config::{ProviderEndpoint, TwilioAccount};
use vocalized_control::{ControlConfig, MasterKey};
use vocalized_shared::ice::{IceServer, parse_ice_servers};
use vocalized_shared::plan::Secret;

/// A configuration mistake the user must fix; the process exits with code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Which process is starting: it decides whether a missing master key may be generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `serve`: single node; a generated key in the data dir is what a first start wants.
    All,
    /// `control`: one of N nodes that must share one key; generating one per node would
    /// make each unable to read the others' secrets, so the key must be given.
    ControlOnly,
}

/// Where the master key came from, so `serve` can tell the user when it made one.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `VOCALIZED_MASTER_KEY` or `--master-key`.
    Given,
    File(PathBuf),
    Generated(PathBuf),
}

/// Validated settings of `serve` and `control`.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    listen_text: String,
    public_url: Option<String>,
    pub database_url: String,
    pub master_key: MasterKey,
    pub key_source: KeySource,
    trust_forwarded_for: bool,
    twilio: Option<TwilioAccount>,
    openai: ProviderEndpoint,
    gemini: ProviderEndpoint,
    elevenlabs: ProviderEndpoint,
    deepgram: ProviderEndpoint,
    pub webrtc_bind_ip: IpAddr,
    pub public_ip: Option<IpAddr>,
    pub ice_servers: Vec<IceServer>,
    turn_shared_secret: Option<Secret>,
    /// Header-read timeout and connection cap of the HTTP server.
    pub server_limits: ServerLimits,
    metrics_token: Option<Secret>,
}

impl ServeConfig {
    pub fn from_args(args: &ServeArgs, mode: Mode) -> Result<Self, ConfigError> {
        // Pure checks first, so a typo never leaves a data directory behind.
        let listen = listen_addr(&args.listen)?;
        if args.demo && mode == Mode::All && !listen.ip().is_loopback() {
            // The demo prints a working owner login on every start: fine on this machine,
            // a known password on anything reachable from elsewhere.
            return Err(invalid(format!(
                "--demo needs a loopback --listen address such as 127.0.0.1:8080 (got {}): \
                 it prints the demo owner's password",
                args.listen.trim()
            )));
        }
        if args.max_connections == 0 {
            return Err(invalid("VOCALIZED_MAX_CONNECTIONS must be at least 1"));
        }
        let metrics_token = non_empty(args.metrics_token.as_deref()).map(|t| Secret(t.to_owned()));
        let public_url = non_empty(args.public_url.as_deref())
            .map(public_url)
            .transpose()?;
        let twilio = twilio_account(&args.platform)?;
        let endpoint = |name: &str, url: &str, key: &Option<String>| {
            Ok::<_, ConfigError>(ProviderEndpoint {
                url: provider_url(name, url)?,
                api_key: non_empty(key.as_deref()).map(|key| Secret(key.to_owned())),
            })
        };
        let p = &args.platform;
        let openai = endpoint("OpenAI", &p.openai_realtime_url, &p.openai_api_key)?;
        let gemini = endpoint("Gemini", &p.gemini_url, &p.gemini_api_key)?;
        let elevenlabs = endpoint("ElevenLabs", &p.elevenlabs_url, &p.elevenlabs_api_key)?;
        let deepgram = endpoint("Deepgram", &p.deepgram_url, &p.deepgram_api_key)?;
        let webrtc_bind_ip = ip_setting("VOCALIZED_WEBRTC_BIND_IP", &args.webrtc_bind_ip)?;
        let public_ip = non_empty(args.public_ip.as_deref())
            .map(|ip| ip_setting("VOCALIZED_PUBLIC_IP", ip))
            .transpose()?;
        let ice_servers = match non_empty(args.ice_servers.as_deref()) {
            Some(text) => parse_ice_servers(text)
                .map_err(|why| invalid(format!("invalid VOCALIZED_ICE_SERVERS: {why}")))?,
            None => Vec::new(),
        };
        let given_key = non_empty(args.master_key.as_deref())
            .map(given_master_key)
            .transpose()?;
        // Last: these may create the data directory.
        let database_url = resolve_database_url(&args.database)?;
        let (master_key, key_source) = match given_key {
            Some(key) => (key, KeySource::Given),
            None => key_file(&args.database.data_dir, mode)?,
        };
        Ok(Self {
            listen,
            listen_text: args.listen.trim().to_owned(),
            public_url,
            database_url,
            master_key,
            key_source,
            trust_forwarded_for: args.trust_forwarded_for,
            twilio,
            openai,
            gemini,
            elevenlabs,
            deepgram,
            webrtc_bind_ip,
            public_ip,
            ice_servers,
            turn_shared_secret: non_empty(args.turn_shared_secret.as_deref())
                .map(|secret| Secret(secret.to_owned())),
            server_limits: ServerLimits {
                max_connections: args.max_connections,
                ..ServerLimits::default()
            },
            metrics_token,
        })
    }

    /// Whether `/metrics` asks for `VOCALIZED_METRICS_TOKEN`.
    pub fn metrics_protected(&self) -> bool {
        self.metrics_token.is_some()
    }

    /// How browser calls connect.
    pub fn webrtc_config(&self) -> vocalized_media::io::webrtc::WebRtcConfig {
        vocalized_media::io::webrtc::WebRtcConfig {
            bind_ip: self.webrtc_bind_ip,
            public_ip: self.public_ip,
            ice_servers: self.ice_servers.clone(),
            trust_forwarded_for: self.trust_forwarded_for,
            ..Default::default()
        }
    }

    /// The control plane's configuration, once the bound address fixes the public URL.
    pub fn control_config(&self, bound: SocketAddr) -> ControlConfig {
        let mut config = ControlConfig::new(
            self.database_url.clone(),
            self.public_url(bound),
            self.master_key.clone(),
        );
        config.trust_forwarded_for = self.trust_forwarded_for;
        config.twilio = self.twilio.clone();
        config.openai = self.openai.clone();
        config.gemini = self.gemini.clone();
        config.elevenlabs = self.elevenlabs.clone();
        config.deepgram = self.deepgram.clone();
        config.ice_servers = self.ice_servers.clone();
        config.turn_shared_secret = self.turn_shared_secret.clone();
        config.metrics_token = self.metrics_token.clone();
        config
    }

    /// The configured public URL, or `http://{listen}` with the port actually bound (which
    /// differs when the user asked for port 0).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None if self.listen.port() == 0 => format!("http://{bound}"),
            None => format!("http://{}", self.listen_text),
        }
    }
}

/// An IP address setting, such as `VOCALIZED_PUBLIC_IP`.
fn ip_setting(name: &str, text: &str) -> Result<IpAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        invalid(format!(
            "invalid {name} {text:?}: expected an IP address such as 203.0.113.7"
        ))
    })
}

/// Empty variables count as unset: compose files and shells often export `VAR=`.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// `host:port`, where host is an IP address or a name (`localhost:8080`).
pub fn listen_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    let bad = |why: &str| {
        invalid(format!(
            "invalid listen address {text:?}: {why} (expected host:port, e.g. 127.0.0.1:8080)"
        ))
    };
    if text.contains("://") {
        return Err(bad("a listen address is not a URL"));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // Only names with a numeric port reach the resolver, so garbage never waits on DNS.
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad("bad host or port"));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| bad("the host name has no address")),
        Err(e) => Err(bad(&format!("cannot resolve the host name: {e}"))),
    }
}

/// The platform Twilio account: both halves or neither.
fn twilio_account(args: &PlatformAccountArgs) -> Result<Option<TwilioAccount>, ConfigError> {
    let sid = non_empty(args.twilio_account_sid.as_deref());
    let token = non_empty(args.twilio_auth_token.as_deref());
    match (sid, token) {
        (None, None) => Ok(None),
        (Some(sid), Some(token)) if sid.starts_with("AC") => Ok(Some(TwilioAccount {
            account_sid: sid.to_owned(),
            auth_token: Secret(token.to_owned()),
        })),
        (Some(_), Some(_)) => Err(invalid(
            "invalid VOCALIZED_TWILIO_ACCOUNT_SID: Twilio account SIDs start with AC",
        )),
        _ => Err(invalid(
            "VOCALIZED_TWILIO_ACCOUNT_SID and VOCALIZED_TWILIO_AUTH_TOKEN must be set together",
        )),
    }
}

/// A provider's WebSocket endpoint: ws:// or wss:// with a host.
fn provider_url(provider: &str, text: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| invalid(format!("invalid {provider} URL {text:?}: {why}"));
    let url = url::Url::parse(text.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(bad("must start with wss:// (or ws:// for a local fake)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(url.as_str().to_owned())
}

/// An absolute http(s) URL without query or fragment, returned without a trailing slash
/// because the control plane appends paths to it.
pub fn public_url(text: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| invalid(format!("invalid public URL {text:?}: {why}"));
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "must start with https:// (or http:// for local testing)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The database URL to use: the given one, checked, or the SQLite file in the data dir
/// (creating the data dir, since SQLite creates the file but not its directory).
pub fn resolve_database_url(args: &DatabaseArgs) -> Result<String, ConfigError> {
    match non_empty(args.database_url.as_deref()) {
        Some(url) => database_url(url),
        None => {
            prepare_data_dir(&args.data_dir)?;
            default_sqlite_url(&args.data_dir)
        }
    }
}

/// `sqlite://{data_dir}/vocalized.db?mode=rwc`, escaping the characters sqlx's SQLite URL
/// parser treats specially (it percent-decodes the path and splits at `?`).
pub fn default_sqlite_url(data_dir: &Path) -> Result<String, ConfigError> {
    let dir = data_dir.to_str().ok_or_else(|| {
        invalid(format!(
            "data directory {} is not valid UTF-8",
            data_dir.display()
        ))
    })?;
    let escaped = dir
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    Ok(format!(
        "sqlite://{}/vocalized.db?mode=rwc",
        escaped.trim_end_matches('/')
    ))
}

/// Checks a user-given database URL without connecting.
pub fn database_url(url: &str) -> Result<String, ConfigError> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
        let in_memory = path == ":memory:" || params.split('&').any(|p| p == "mode=memory");
        if path.is_empty() && !in_memory {
            return Err(invalid(
                "invalid database URL: the sqlite: URL has no file path",
            ));
        }
        // A missing directory would only show up as an open failure after binding.
        // Percent-escaped paths are left to sqlx rather than decoded twice here.
        if !in_memory
            && !path.contains('%')
            && let Some(parent) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(invalid(format!(
                "invalid database URL: directory {} for the SQLite file does not exist",
                parent.display()
            )));
        }
        return Ok(url.to_owned());
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // url::ParseError never echoes its input, so the password cannot leak here.
        let parsed =
            url::Url::parse(url).map_err(|e| invalid(format!("invalid database URL: {e}")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid(
                "invalid database URL: the postgres:// URL has no host",
            ));
        }
        return Ok(url.to_owned());
    }
    // Show the scheme only: the rest may hold a password.
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+'))
        .map_or_else(|| "no scheme".to_owned(), |s| format!("scheme {s:?}"));
    Err(invalid(format!(
        "invalid database URL: must start with sqlite: or postgres:// (got {scheme})"
    )))
}

/// The database URL with any password masked, for logs and messages.
pub fn redact_database_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Creates the data directory if needed and proves it is writable.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        invalid(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    // Permission bits do not tell the truth for root or on read-only mounts: try it.
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            invalid(format!(
                "data directory {} is not writable: {e}",
                dir.display()
            ))
        })
}

const MASTER_KEY_FILE: &str = "master.key";

/// Parses the key given in `VOCALIZED_MASTER_KEY` or `--master-key`.
pub fn given_master_key(text: &str) -> Result<MasterKey, ConfigError> {
    MasterKey::parse(text).map_err(|e| invalid(format!("invalid VOCALIZED_MASTER_KEY: {e}")))
}

/// The key in `{data_dir}/master.key`; when there is none, `serve` writes a new one there
/// and `control` refuses to start.
pub fn key_file(data_dir: &Path, mode: Mode) -> Result<(MasterKey, KeySource), ConfigError> {
    let path = data_dir.join(MASTER_KEY_FILE);
    match read_key_file(&path)? {
        Some(key) => Ok((key, KeySource::File(path))),
        None if mode == Mode::All => {
            prepare_data_dir(data_dir)?;
            create_key_file(&path)
        }
        None => Err(invalid(format!(
            "no master key: set VOCALIZED_MASTER_KEY to the key all control nodes share \
             (or put it in {})",
            path.display()
        ))),
    }
}

fn read_key_file(path: &Path) -> Result<Option<MasterKey>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(format!("cannot read {}: {e}", path.display()))),
    };
    let key = MasterKey::parse(&text).map_err(|e| {
        invalid(format!(
            "{} does not hold a valid master key: {e}",
            path.display()
        ))
    })?;
    warn_if_readable_by_others(path);
    Ok(Some(key))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} is readable by other users (mode {mode:o}); run chmod 600 on it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes a new key to a private temp file and hard-links it into place: the link fails
/// if another process got there first, so two first starts agree on one key and no reader
/// ever sees a half-written file.
fn create_key_file(path: &Path) -> Result<(MasterKey, KeySource), ConfigError> {
    let key = MasterKey::generate();
    let temp = path.with_extension(format!("key.{}.tmp", std::process::id()));
    let cannot = |e: std::io::Error| invalid(format!("cannot create {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok((key, KeySource::Generated(path.to_owned()))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_key_file(path)? {
            Some(theirs) => Ok((theirs, KeySource::File(path.to_owned()))),
            None => Err(cannot(e)),
        },
        Err(e) => Err(cannot(e)),
    }
}

/// The current master key for `keys rotate`, found the way `serve` finds it
/// (`VOCALIZED_MASTER_KEY`, else `{data_dir}/master.key`) but never generated: rotating
/// from a key nobody has would lose every secret.
pub fn current_master_key(
    given: Option<&str>,
    data_dir: &Path,
) -> Result<(MasterKey, KeySource), ConfigError> {
    if let Some(text) = non_empty(given) {
        return Ok((given_master_key(text)?, KeySource::Given));
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    match read_key_file(&path)? {
        Some(key) => Ok((key, KeySource::File(path))),
        None => Err(invalid(format!(
            "no current master key: set VOCALIZED_MASTER_KEY or put it in {}",
            path.display()
        ))),
    }
}

/// Parses the key given in `VOCALIZED_NEW_MASTER_KEY` or `--new-key`.
pub fn new_master_key(text: &str) -> Result<MasterKey, ConfigError> {
    MasterKey::parse(text).map_err(|e| invalid(format!("invalid VOCALIZED_NEW_MASTER_KEY: {e}")))
}

/// Writes `key` next to the key file at `path` as `master.key.new` (mode 0600, synced),
/// to be moved over it with [`install_key_file`] once the database uses the new key. If
/// that move fails, the new key is still on disk, never only in memory.
pub fn stage_key_file(path: &Path, key: &MasterKey) -> Result<PathBuf, ConfigError> {
    let staged = path.with_extension("key.new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&staged)
        .and_then(|mut file| {
            // `mode` applies only to a new file: a stale one keeps its bits, so set them.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
            file.sync_all()
        })
        .map_err(|e| invalid(format!("cannot write {}: {e}", staged.display())))?;
    Ok(staged)
}

/// Atomically replaces the key file with the staged one.
pub fn install_key_file(staged: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(staged, path)
}

/// One of the platform roles, as `vocalized_control` spells it.
pub fn admin_role(role: &str) -> Result<&'static str, ConfigError> {
    vocalized_control::ADMIN_ROLES
        .iter()
        .copied()
        .find(|known| *known == role)
        .ok_or_else(|| {
            invalid(format!(
                "invalid role {role:?}: expected one of {}",
                vocalized_control::ADMIN_ROLES.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vocalized_control::testing::TempDir;

    #[test]
    fn listen_accepts_ip_ports_and_resolvable_names() {
        assert_eq!(listen_addr("127.0.0.1:8080").unwrap().port(), 8080);
        assert_eq!(listen_addr(" [::1]:0 ").unwrap().port(), 0);
        assert!(listen_addr("localhost:9000").unwrap().ip().is_loopback());
    }

    #[test]
    fn listen_rejects_urls_missing_ports_and_bad_ports() {
        for bad in [
            "http://127.0.0.1:8080",
            "127.0.0.1",
            "127.0.0.1:99999",
            ":8080",
            "",
        ] {
            let err = listen_addr(bad).unwrap_err();
            assert!(err.0.starts_with("invalid listen address"), "{bad}: {err}");
        }
    }

    #[test]
    fn public_url_is_normalised_without_trailing_slash() {
        assert_eq!(
            public_url("https://voice.example.com/").unwrap(),
            "https://voice.example.com"
        );
        assert_eq!(
            public_url("https://example.com/vz/").unwrap(),
            "https://example.com/vz"
        );
    }

    #[test]
    fn public_url_rejects_other_schemes_queries_and_credentials() {
        for bad in [
            "voice.example.com",
            "ftp://x.com",
            "https://x.com/?a=1",
            "https://u:p@x.com",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_public_url_uses_the_bound_port_when_port_zero_was_asked() {
        let config = |listen: &str| ServeConfig {
            listen: listen_addr(listen).unwrap(),
            listen_text: listen.into(),
            public_url: None,
            database_url: String::new(),
            master_key: MasterKey::generate(),
            key_source: KeySource::Given,
            trust_forwarded_for: false,
            twilio: None,
            openai: ProviderEndpoint::at(""),
            gemini: ProviderEndpoint::at(""),
            elevenlabs: ProviderEndpoint::at(""),
            deepgram: ProviderEndpoint::at(""),
            webrtc_bind_ip: [0, 0, 0, 0].into(),
            public_ip: None,
            ice_servers: Vec::new(),
            server_limits: ServerLimits::default(),
            metrics_token: None,
        };
        let bound: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(
            config("127.0.0.1:0").public_url(bound),
            "http://127.0.0.1:40123"
        );
        assert_eq!(
            config("localhost:8080").public_url(bound),
            "http://localhost:8080"
        );
    }

    #[test]
    fn database_urls_are_checked_by_scheme_without_echoing_secrets() {
        assert!(database_url("postgres://u:pw@db:5432/vz").is_ok());
        assert!(database_url("postgresql://db/vz").is_ok());
        assert!(database_url("sqlite::memory:").is_ok());
        let err = database_url("mysql://root:hunter2@db/vz").unwrap_err();
        assert!(
            err.0.contains("\"mysql\"") && !err.0.contains("hunter2"),
            "{err}"
        );
        assert!(database_url("postgres://").is_err());
        assert!(database_url("sqlite://").is_err());
        assert!(!database_url("hunter2").unwrap_err().0.contains("hunter2"));
    }

    #[test]
    fn sqlite_url_in_a_missing_directory_is_a_config_error() {
        let err = database_url("sqlite:///no/such/dir/v.db?mode=rwc").unwrap_err();
        assert!(err.0.contains("/no/such/dir"), "{err}");
    }

    #[test]
    fn default_sqlite_url_escapes_what_sqlx_would_misread() {
        assert_eq!(
            default_sqlite_url(Path::new("./data")).unwrap(),
            "sqlite://./data/vocalized.db?mode=rwc"
        );
        assert_eq!(
            default_sqlite_url(Path::new("/srv/a?b#c%d/")).unwrap(),
            "sqlite:///srv/a%3Fb%23c%25d/vocalized.db?mode=rwc"
        );
    }

    #[test]
    fn redaction_masks_only_the_password() {
        assert_eq!(
            redact_database_url("postgres://vz:s3cret@db:5432/vz"),
            "postgres://vz:***@db:5432/vz"
        );
        assert_eq!(
            redact_database_url("sqlite://./data/v.db"),
            "sqlite://./data/v.db"
        );
    }

    #[test]
    fn data_dir_under_a_file_is_a_config_error() {
        let tmp = TempDir::new("vz-cli");
        let file = tmp.0.join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = prepare_data_dir(&file.join("data")).unwrap_err();
        assert!(err.0.starts_with("cannot create data directory"), "{err}");
    }

    #[test]
    fn serve_generates_a_private_key_once_then_reuses_it() {
        let tmp = TempDir::new("vz-cli");
        let dir = tmp.0.join("data");
        let (first, source) = key_file(&dir, Mode::All).unwrap();
        assert_eq!(source, KeySource::Generated(dir.join("master.key")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = key_file(&dir, Mode::All).unwrap();
        assert_eq!(source, KeySource::File(dir.join("master.key")));
        assert!(first == second);
        // No temp files are left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn control_never_generates_a_key() {
        let tmp = TempDir::new("vz-cli");
        let err = key_file(&tmp.0, Mode::ControlOnly).unwrap_err();
        assert!(err.0.starts_with("no master key"), "{err}");
        assert!(!tmp.0.join("master.key").exists());
    }

    #[test]
    fn malformed_keys_are_rejected_without_being_printed() {
        let tmp = TempDir::new("vz-cli");
        let err = given_master_key("zz-not-a-key-zz").unwrap_err();
        assert!(err.0.starts_with("invalid VOCALIZED_MASTER_KEY"), "{err}");
        assert!(!err.0.contains("zz-not-a-key-zz"));
        std::fs::write(tmp.0.join("master.key"), "short").unwrap();
        let err = key_file(&tmp.0, Mode::All).unwrap_err();
        assert!(err.0.contains("does not hold a valid master key"), "{err}");
    }

    #[test]
    fn twilio_account_needs_both_halves() {
        let args = |sid: Option<&str>, token: Option<&str>| PlatformAccountArgs {
            twilio_account_sid: sid.map(Into::into),
            twilio_auth_token: token.map(Into::into),
            openai_realtime_url: String::new(),
            openai_api_key: None,
            gemini_url: String::new(),
            gemini_api_key: None,
            elevenlabs_url: String::new(),
            elevenlabs_api_key: None,
            deepgram_url: String::new(),
            deepgram_api_key: None,
        };
        assert!(twilio_account(&args(None, None)).unwrap().is_none());
        let account = twilio_account(&args(Some("AC123"), Some("tok")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (account.account_sid.as_str(), account.auth_token.expose()),
            ("AC123", "tok")
        );
        let err = twilio_account(&args(Some("AC123"), None)).unwrap_err();
        assert!(err.0.contains("must be set together"), "{err}");
        assert!(twilio_account(&args(Some("SK1"), Some("tok"))).is_err());
    }

    #[test]
    fn provider_urls_must_be_websockets() {
        assert!(provider_url("OpenAI", "ws://127.0.0.1:9000/v1/realtime").is_ok());
        assert!(provider_url("OpenAI", "https://api.openai.com/v1/realtime").is_err());
    }

    #[test]
    fn roles_are_the_control_planes() {
        assert_eq!(admin_role("support").unwrap(), "support");
        assert!(
            admin_role("root")
                .unwrap_err()
                .0
                .contains("super_admin, admin, support")
        );
    }
}
