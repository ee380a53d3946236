//! `wuts`: parse the configuration and run the gateway.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wuts_gateway::config::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(wuts_gateway::run(cli)),
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}
