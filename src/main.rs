//! The `vocalized` binary: parse the command line, validate it, call into the crates.
//! Everything it does lives in [`cli`]; the planes live in `vocalized-control` and
//! `vocalized-media`.

mod cli;

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // rustls arrives with the media plane's wss:// provider clients, and ring and aws-lc-rs
    // are both compiled in, so rustls cannot pick a crypto provider by itself and
    // `ClientConfig::builder()` would panic (crates.md, "Cautions"). Choose ring before
    // any other code can build a TLS config.
    vocalized_media::io::provider_ws::install_crypto_provider();

    let cli = cli::Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli::run::run(cli));
    // A task stuck on blocking I/O must not keep a stopping process alive.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Logs go to stderr (stdout carries the command's own output), filtered by `RUST_LOG`,
/// `info` by default.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
