//! `wuts`: parse the configuration and run the gateway.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc. A gateway allocates on many threads (the runtime's
/// workers, blocking tasks) while devices pair; glibc gives each thread an arena of its own and
/// rarely returns a freed arena's pages, so pairing-time memory (QR images, handshakes, the first
/// app-state sync) stays resident long after it is freed. mimalloc returns freed pages to the
/// system after a short delay.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
