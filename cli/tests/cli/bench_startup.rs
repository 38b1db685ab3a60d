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
