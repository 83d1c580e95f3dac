//! hookwire-bench: load generator speaking Engine.IO v4 / socket.io v5 over
//! WebSocket, with the fan-out, connect, sync, sync-memory and big-room
//! scenarios, and the report writer that turns one run's results into
//! BENCHMARKS.md and a chart.

mod bigroom;
mod common;
mod connect;
mod fanout;
mod procfs;
mod report;
mod sends;
mod sio;
mod sync;
mod syncmem;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hookwire-bench",
    about = "socket.io load generator and benchmark report"
)]
struct Cli {
    /// Tokio worker threads of the load generator.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Room fan-out: deliveries/s, latency, losses, server CPU (user, system) and sends per delivery.
    Fanout(fanout::FanoutArgs),
    /// N idle authenticated+joined connections: connection rate, server RSS per connection.
    Connect(connect::ConnectArgs),
    /// M stored messages, C clients paging through them with sync.
    Sync(sync::SyncArgs),
    /// C joined connections each get one ~1 MiB sync page at once: server RSS idle, peak, after.
    Syncmem(syncmem::SyncMemArgs),
    /// One room of N members, one publisher at R msg/s: latency to the last member served.
    Bigroom(bigroom::BigRoomArgs),
    /// Write BENCHMARKS.md and the chart from a results file.
    Report(report::ReportArgs),
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report(a) => report::run(a),
        Cmd::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            Ok(())
        }
        cmd => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cli.threads.max(1))
                .enable_all()
                .build()?;
            let r = rt.block_on(async move {
                match cmd {
                    Cmd::Fanout(a) => fanout::run(a).await,
                    Cmd::Connect(a) => connect::run(a).await,
                    Cmd::Sync(a) => sync::run(a).await,
                    Cmd::Syncmem(a) => syncmem::run(a).await,
                    Cmd::Bigroom(a) => bigroom::run(a).await,
                    _ => unreachable!(),
                }
            });
            // Don't wait for thousands of idle tasks to wind down.
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
            r
        }
    }
}
