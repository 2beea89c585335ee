//! `vocalized-bench`: load-tests a Vocalized gateway with simulated callers and fake
//! providers, and reports what the gateway adds (README "Bench suite", issue 7).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vocalized_bench::suite::gateway::default_gateway_bin;
use vocalized_bench::suite::html;
use vocalized_bench::suite::provider::AGENT_STREAMS;
use vocalized_bench::suite::report::{Report, table};
use vocalized_bench::suite::run::{self, GatewaySource, LevelConfig};

#[derive(Parser, Debug)]
#[command(
    name = "vocalized-bench",
    version,
    about = "Load-tests a Vocalized gateway with simulated callers and fake providers."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Twilio callers and OpenAI Realtime, µ-law straight through.
    Passthrough(Common),
    /// The pass-through traffic held for --duration-secs (default 300): watch memory and
    /// latency drift.
    Soak(Common),
    /// Pass-through calls whose provider dies half-way; the gateway fails over to the
    /// built-in echo provider. Reports the failover gap the callers heard.
    Failover(Common),
    /// Twilio callers and Gemini Live: resampling both ways. Setup, cost and delivered
    /// audio; no per-frame latency (stamps do not survive resampling).
    Transcode(Common),
    /// Browser callers over real WebRTC (ICE, DTLS-SRTP, Opus on 127.0.0.1) and OpenAI
    /// Realtime: frames timed by sample position, since Opus keeps no stamp. A --target
    /// gateway needs VOCALIZED_WEBRTC_BIND_IP=127.0.0.1 and VOCALIZED_TRUST_FORWARDED_FOR=true.
    Webrtc(Common),
}

const DEFAULT_DURATION_SECS: u64 = 20;

#[derive(Args, Debug)]
struct Common {
    /// Concurrent calls; a comma-separated list runs one level after another
    /// (e.g. 20,50,100), each against a fresh gateway.
    #[arg(long, value_delimiter = ',', default_value = "20")]
    calls: Vec<usize>,
    /// Calls placed per second while ramping up.
    #[arg(long, default_value_t = 10.0)]
    ramp_per_sec: f64,
    /// How long each call lasts, in seconds.
    #[arg(long, default_value_t = DEFAULT_DURATION_SECS)]
    duration_secs: u64,
    /// The `vocalized` binary to start (default: the one next to this executable).
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    gateway_bin: Option<PathBuf>,
    /// A gateway that is already running, e.g. http://127.0.0.1:8080. It must use the
    /// bench's Twilio account (see the README) and VOCALIZED_OPENAI_REALTIME_URL
    /// ws://127.0.0.1:<provider-port>/v1/realtime. Phone scenarios verify the agent's
    /// number as a platform admin created on it (`vocalized admin create`), named by
    /// VOCALIZED_BENCH_ADMIN_EMAIL and VOCALIZED_BENCH_ADMIN_PASSWORD.
    #[arg(long, value_name = "URL", requires = "provider_port")]
    target: Option<String>,
    /// With --target: the gateway's pid, to read its CPU and memory from /proc.
    #[arg(long, requires = "target")]
    gateway_pid: Option<u32>,
    /// Port for the fake provider (default: any free port).
    #[arg(long, default_value_t = 0)]
    provider_port: u16,
    /// The fake provider's delay before each reply's first audio.
    #[arg(long, default_value_t = 0)]
    provider_delay_ms: u64,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vocalized-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(why) => {
            eprintln!("vocalized-bench: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let (scenario, args) = match cli.scenario {
        Scenario::Passthrough(args) => (run::Scenario::Passthrough, args),
        Scenario::Soak(mut args) => {
            if args.duration_secs == DEFAULT_DURATION_SECS {
                args.duration_secs = 300;
            }
            (run::Scenario::Soak, args)
        }
        Scenario::Failover(args) => (run::Scenario::Failover, args),
        Scenario::Transcode(args) => (run::Scenario::Transcode, args),
        Scenario::Webrtc(args) => (run::Scenario::Webrtc, args),
    };
    let gateway = match (&args.target, &args.gateway_bin) {
        (Some(url), _) => GatewaySource::Target {
            url: url.clone(),
            pid: args.gateway_pid,
        },
        (None, Some(bin)) => GatewaySource::Spawn(bin.clone()),
        (None, None) => GatewaySource::Spawn(default_gateway_bin().map_err(|e| e.to_string())?),
    };
    if args.target.is_some()
        && matches!(scenario, run::Scenario::Failover | run::Scenario::Transcode)
    {
        return Err(format!(
            "{} configures providers through the admin API of a gateway it starts itself; \
             drop --target",
            scenario.name()
        ));
    }
    if args
        .calls
        .iter()
        .any(|&n| n == 0 || n >= usize::from(AGENT_STREAMS))
    {
        return Err("--calls must be between 1 and 32767".into());
    }
    let mut report = Report {
        tool: format!("vocalized-bench {}", env!("CARGO_PKG_VERSION")),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        levels: Vec::new(),
    };
    for &calls in &args.calls {
        let config = LevelConfig {
            scenario,
            calls,
            ramp_per_sec: args.ramp_per_sec,
            duration_secs: args.duration_secs,
            provider_delay_ms: args.provider_delay_ms,
            provider_port: args.provider_port,
            gateway: gateway.clone(),
            show_progress: !args.quiet,
        };
        if !args.quiet {
            eprintln!(
                "{}: {calls} calls, ramp {}/s, {} s each",
                scenario.name(),
                args.ramp_per_sec,
                args.duration_secs
            );
        }
        let level = run::run_level(&config).await.map_err(|e| e.to_string())?;
        report.levels.push(level);
    }
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let crashed = report.levels.iter().any(|l| l.gateway_crash.is_some());
    let lost: u64 = report.levels.iter().map(|l| l.frames.lost()).sum();
    if crashed || lost > 0 {
        eprintln!(
            "vocalized-bench: {} lost frames{}",
            lost,
            if crashed {
                ", and the gateway exited"
            } else {
                ""
            }
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
