//! `cargo bench --bench gateway`: prints the gateway's figures as one JSON object and writes
//! them to `target/bench/gateway.json`. Parameters: `BENCH_DEVICES` (default 1000),
//! `BENCH_SECONDS` per load phase (default 5), `BENCH_CONCURRENCY` (16),
//! `BENCH_PAIR_CONCURRENCY` (32), `BENCH_SAMPLES` (200), `BENCH_WAN_MS` (30, the WhatsApp
//! round trip simulated for the second block comparison), `BENCH_EVENT_CONCURRENCY` (32, phones
//! changing their block lists at once in the events phase's latency run; its throughput run
//! changes every device's), `BENCH_EVENT_ROUNDS` (2 block-and-unblock rounds per device in each
//! run), `DATABASE_URL` (the server that hosts the fresh benchmark database).
//!
//! The user-path phase (`user_path.rs`, its keys start with `user_path_`) pairs
//! `BENCH_USER_DEVICES` (default 100; 0 skips it) through the HTTP API on a gateway and a
//! database of its own, `BENCH_USER_PAIR_CONCURRENCY` (8) at a time, then crashes and restores
//! it. `BENCH_USER_ONLY=1` runs that phase alone; `BENCH_USER_GATEWAY_ENV` (`K=V;K=V`) adds to
//! its gateways' environment (a log filter, an allocator setting, a profiler's preload) and
//! `BENCH_USER_LOGS` names a directory where their logs are kept.
//!
//! `BENCH_QUIET_SECONDS` (60) is how long PostgreSQL is watched while every restored device is
//! connected and nobody calls the API (statement and transaction counts, connections).
//! `BENCH_BARE_SESSIONS` (`BENCH_DEVICES` up to 1,000; 0 skips) bare whatsapp-rust clients are
//! paired in a process of their own, for the library's memory per session next to the gateway's.

mod run;

fn main() -> anyhow::Result<()> {
    // Started again by the bare-memory phase: this process holds the bare sessions.
    if let Some(child) = run::bare_memory::Child::from_env() {
        return child.run();
    }
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let config = run::Config::from_env(std::path::PathBuf::from(env!("CARGO_BIN_EXE_wuts")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run::run(config))?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("gateway.json"), format!("{text}\n"))?;
    Ok(())
}
