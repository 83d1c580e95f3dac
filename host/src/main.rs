//! `hookwire`: the server binary. Everything lives in the library; this
//! file parses the command line and waits for a shutdown signal.

use clap::{Parser, Subcommand};
use hookwire::config::{Config, ServeArgs};

#[global_allocator]
static ALLOCATOR: hookwire_alloc::ServerAllocator = hookwire_alloc::ServerAllocator;

#[derive(Parser)]
#[command(
    name = "hookwire",
    version,
    about = "Realtime room-sync and push server speaking socket.io, with tenant policies as WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default). Options also come from HOOKWIRE_* variables and a TOML file.
    Serve(ServeArgs),
    /// Print the effective configuration (defaults < file < environment < flags) as TOML.
    Config(ServeArgs),
    /// Manage a tenant's plugins on a running server (a client of the admin REST API).
    #[command(subcommand)]
    Plugin(hookwire::cli::plugin::PluginCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // A plugin compile runs on a blocking thread that cannot be stopped; a
    // shutdown does not wait for it (nothing durable depends on it).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // The error and its causes on one line, never a backtrace: these are
    // messages for the person at the terminal.
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args).await,
        Command::Config(args) => {
            let mut config = Config::load(&args)?;
            // The store in effect, also when it follows from the URLs.
            config.store = Some(config.store_kind());
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Plugin(cmd) => hookwire::cli::plugin::run(cmd).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    hookwire::telemetry::init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    hookwire::run(config, listener, shutdown_signal()).await
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
