//! `wuts`: parse the configuration and run the gateway.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than the system's allocator: the many small buffers of thousands of sessions
/// take less room in it. Measured with 1,000 devices paired through the API: 122 KiB of
/// anonymous memory per freshly paired session (four runs) against 131 with glibc's allocator
/// (three runs), 98 per restored session against 100.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    without_library_backtraces();
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

/// With `RUST_BACKTRACE` set (as on many developer machines and in some images) and
/// `RUST_LIB_BACKTRACE` not, every `anyhow` error captures a backtrace, and the first one
/// whatsapp-rust logs in its `Debug` form is resolved to symbols: the standard library then
/// loads the executable's symbol and line tables, over 100 MB, and keeps them for the life of the
/// process (measured: 1,000 freshly paired sessions at about 130 KiB each, or at 225 when one send
/// failed and was logged during pairing). The process starts itself again with
/// `RUST_LIB_BACKTRACE=0`, so that errors capture none while a panic still prints its backtrace.
/// An operator who wants the errors' backtraces sets `RUST_LIB_BACKTRACE=1`. Should the
/// executable not be started again, the gateway runs as it is.
fn without_library_backtraces() {
    use std::os::unix::process::CommandExt;
    let wanted = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    if !wanted || std::env::var_os("RUST_LIB_BACKTRACE").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    // Returns only if the executable could not be started.
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(executable);
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    let failed = command.args(args).env("RUST_LIB_BACKTRACE", "0").exec();
    eprintln!("warning: errors will capture backtraces (RUST_BACKTRACE is set): {failed}");
}
