//! A small run of the gateway benchmark (`cargo bench --bench gateway`), so that it cannot rot:
//! three devices through the real `wuts` binary and wa-sim, every figure produced, and the
//! user-path phase with three devices paired through the HTTP API.

#[path = "../../benches/gateway/run.rs"]
mod run;

#[test]
fn benchmark_helpers() {
    assert_eq!(
        run::with_database("postgres://postgres@127.0.0.1:5432/wuts", "b"),
        "postgres://postgres@127.0.0.1:5432/b"
    );
    assert_eq!(
        run::with_database("postgres://u:p@h/wuts?sslmode=disable", "b"),
        "postgres://u:p@h/b?sslmode=disable"
    );
    assert_eq!(
        run::with_database("postgres://h:5432", "b"),
        "postgres://h:5432/b"
    );
    let samples = run::sorted((1..=100).map(f64::from).collect());
    assert_eq!(run::percentile(&samples, 50.0), 51.0);
    assert_eq!(run::percentile(&samples, 99.0), 99.0);
    assert_eq!(run::percentile(&[], 50.0), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_smoke_run() {
    let mut config = run::Config::from_env(std::path::PathBuf::from(env!("CARGO_BIN_EXE_wuts")));
    config.devices = 3;
    config.seconds = 0.5;
    config.concurrency = 4;
    config.pair_concurrency = 3;
    config.samples = 10;
    config.wan_ms = 5;
    config.user_devices = 3;
    config.user_pair_concurrency = 2;
    config.user_only = false;
    config.quiet_seconds = 2.0;
    config.bare_sessions = 2;
    // This test binary, started again, runs only the bare sessions' process below.
    config.bare_child_args = [
        "--exact",
        "bench_smoke::bare_sessions_child",
        "--ignored",
        "--nocapture",
    ]
    .map(str::to_owned)
    .to_vec();
    let report = run::run(config).await.expect("the benchmark runs");
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"))
    };
    assert_eq!(number("devices"), 3.0);
    assert_eq!(number("resolve160_unknown_usync_iqs"), 1.0, "{report}");
    assert_eq!(number("restore_repairs"), 0.0, "{report}");
    assert!(number("restore_ik_logins") >= 3.0, "{report}");
    assert_eq!(number("load_errors"), 0.0, "{report}");
    // The flooding tenant is held to its budget; the quiet one is never refused.
    assert!(number("tenant_flood_refused") > 0.0, "{report}");
    assert_eq!(number("tenant_quiet_errors"), 0.0, "{report}");
    assert!(number("tenant_quiet_flooded_p50_ms") > 0.0, "{report}");
    // Every session came back after WhatsApp dropped them all, and no later than the last.
    assert_eq!(number("reconnect_logins"), 3.0, "{report}");
    assert!(
        number("reconnect_last_s") >= number("reconnect_first_s"),
        "{report}"
    );
    assert!(number("reconnect_peak_per_second") >= 1.0, "{report}");
    // Every device's four block-list changes on the phone, in each of the two runs, arrived
    // as events.
    assert_eq!(number("events_delivered"), 24.0, "{report}");
    assert!(number("event_latency_p50_ms") > 0.0, "{report}");
    assert!(number("events_saturated_p50_ms") > 0.0, "{report}");
    assert!(number("events_per_second") > 0.0, "{report}");
    assert!(number("block_with_webhook_p50_ms") > 0.0, "{report}");
    for key in [
        "rss_idle_kib",
        "rss_connected_kib",
        "bare_rps",
        "read_rps",
        "read_p99_ms",
        "resolve160_store_p50_ms",
        "block_p50_ms",
        "block_direct_p50_ms",
        "block_overhead_ratio",
        "block_overhead_ratio_wan",
        "restore_seconds",
    ] {
        assert!(number(key) > 0.0, "{key}: {report}");
    }
    // The user's path: three devices paired through the HTTP API, killed within seconds of the
    // last, every one back without pairing again.
    assert_eq!(number("user_path_devices"), 3.0, "{report}");
    assert_eq!(number("user_path_restore_repairs"), 0.0, "{report}");
    for key in [
        "user_path_pairing_seconds",
        "user_path_pair_p50_seconds",
        "user_path_rss_idle_kib",
        "user_path_rss_paired_kib",
        "user_path_rss_anon_paired_kib",
        "user_path_rss_total_kib_per_device",
        "user_path_restore_seconds",
        "user_path_restore_first_seconds",
        "user_path_rss_restored_kib",
    ] {
        assert!(number(key) > 0.0, "{key}: {report}");
    }
    assert!(
        number("user_path_restore_first_seconds") <= number("user_path_restore_seconds"),
        "{report}"
    );
    // The quiet database: the gateway's connections are there and counted, and a reading of
    // transactions is produced.
    assert!(number("quiet_pg_connections") >= 2.0, "{report}");
    assert!(report.get("quiet_pg_transactions_per_second").is_some());
    assert!(report.get("restore_ready_seconds").is_some());
    assert!(
        number("restore_ready_seconds") <= number("restore_seconds"),
        "{report}"
    );
    // The bare sessions paired in their own process, and hold memory.
    assert_eq!(number("bare_sessions"), 2.0, "{report}");
    assert!(
        number("bare_rss_paired_kib") > number("bare_rss_idle_kib"),
        "{report}"
    );
    assert!(report.get("user_path_rss_kib_per_device").is_some());
    assert!(report.get("rss_per_device_kib_small").is_some());
    assert!(report.get("rss_per_device_restored_kib").is_some());
}

/// The bare sessions' process of the benchmark's bare-memory phase: the smoke run starts this
/// test binary again with the phase's variables set and this test alone selected.
#[test]
#[ignore = "started by benchmark_smoke_run as the bare sessions' process"]
fn bare_sessions_child() {
    let child = run::bare_memory::Child::from_env()
        .expect("started by the bare-memory phase, with its BENCH_BARE_* variables");
    child.run().expect("the bare sessions run");
}
