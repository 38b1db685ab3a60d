//! `wdtpipe bench` starting its services: one that exits while starting is named at once,
//! with its exit status, instead of the bench waiting for it or failing on its first call.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_service_that_exits_while_starting_is_named() {
    let bin_dir = tempfile::tempdir().unwrap();
    // ingest and transform stay up without ever listening; deliver gives up at once.
    script(bin_dir.path(), "ingest", "exec sleep 120");
    script(bin_dir.path(), "transform", "exec sleep 120");
    script(
        bin_dir.path(),
        "deliver",
        "echo 'deliver: cannot bind its gRPC address' >&2; exit 3",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_wdtpipe"))
        .args([
            "bench",
            "--concurrency",
            "1",
            "--duration",
            "1",
            "--bin-dir",
        ])
        .arg(bin_dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("deliver exited during startup (exit status: 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot bind its gRPC address"), "{stderr}");
}

/// `wdtpipe bench --up --backlog N` runs the pipeline as one `wdtpipe up` process: it
/// accepts the backlog with WDT down, then every trade drains to the sandbox, and the
/// report names that one process's memory.
#[test]
fn a_backlog_drains_through_wdtpipe_up() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_wdtpipe")).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wdtpipe"))
        .args([
            "bench",
            "--up",
            "--backlog",
            "300",
            "--concurrency",
            "4",
            "--json",
        ])
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "backlog", "{report}");
    assert_eq!(report["up"], true, "{report}");
    // The senders in flight when the 300th is answered add theirs.
    let accepted = report["accepted"].as_u64().unwrap();
    assert!(accepted >= 300, "{report}");
    assert_eq!(report["outbox_queued_trades"], accepted, "{report}");
    assert!(report["drained_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["outbox_after_drain"]["queued_trades"], 0, "{report}");
    let peaks = report["peak_rss_bytes_while_draining"].as_object().unwrap();
    assert_eq!(peaks.keys().collect::<Vec<_>>(), ["wdtpipe"], "{report}");
    assert!(peaks["wdtpipe"].as_u64().unwrap() > 0, "{report}");
}
