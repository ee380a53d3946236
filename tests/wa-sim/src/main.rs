//! `wa-sim --listen ADDR --control ADDR`: runs the WhatsApp stand-in and prints, once ready,
//! `{"ws_url": ..., "control_url": ..., "root_public_key": ...}` on one line (the key, in hex,
//! is the root of wa-sim's Noise certificate chain).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// A WhatsApp server stand-in that speaks the real wire protocol.
#[derive(Parser)]
#[command(name = "wa-sim", version, about)]
struct Args {
    /// Address for companion connections (WebSocket on /ws/chat).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address for the control API.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let sim = match wa_sim::WaSim::start_on(args.listen, args.control).await {
            Ok(sim) => sim,
            Err(err) => {
                eprintln!("error: {err:#}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "{}",
            serde_json::json!({
                "ws_url": sim.ws_url(),
                "control_url": sim.control_url(),
                "root_public_key": sim.root_public_key_hex(),
            })
        );
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
