//! The sandbox end to end, as a newcomer runs it: wa-sim, the test build of the gateway and the
//! world start, the device pairs through the simulated phone, every call of the printed
//! walk-through is run by bash as printed and answers as expected, the phone's and other people's
//! actions reach the webhook as signed events, and everything stops cleanly.

use std::process::Command;

#[test]
fn the_walk_through_runs_as_printed() {
    let postgres = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = format!("wuts_sandbox_test_{}", std::process::id());
    let output = Command::new(env!("CARGO_BIN_EXE_wuts-sandbox"))
        .args(["--check", "--port", "0", "--database", &database])
        .env("WUTS_SANDBOX_POSTGRES", &postgres)
        .output()
        .expect("the sandbox runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the sandbox failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("TEST BUILD"), "{stdout}");
    assert!(
        stdout.contains("All 19 calls of the walk-through answered as expected."),
        "{stdout}"
    );
    assert!(stdout.contains("Stopped cleanly."), "{stdout}");
}

#[test]
fn only_sandbox_databases_are_touched() {
    let output = Command::new(env!("CARGO_BIN_EXE_wuts-sandbox"))
        .args(["--check", "--port", "0", "--database", "wuts"])
        .output()
        .expect("the sandbox runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("only creates (and drops) databases named wuts_sandbox"),
        "{stderr}"
    );
}
