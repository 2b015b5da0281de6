//! The official SDKs, unmodified, pointed at the gateway: the Python
//! `openai` and `anthropic` packages and the Node `openai` package. The
//! tests provision their own virtualenv (target/sdk-venv, from
//! tests/sdk/requirements.txt) and Node packages (target/sdk-node, from
//! tests/sdk/node/package-lock.json) on first run; that needs PyPI and npm.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

fn sdk_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/sdk-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/sdk/requirements.txt");
    let ready = venv.join(".requirements");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&ready).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let run = |cmd: &mut Command| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed (the SDK test needs python3 with venv and PyPI):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&requirements));
    std::fs::write(&ready, wanted).unwrap();
    python
}

/// The Node SDK's folder under target/, installed from the lock file,
/// with the check script beside it.
fn sdk_node() -> PathBuf {
    npm_installed("sdk/node", "sdk-node", &["check_sdk.mjs"]).join("check_sdk.mjs")
}

/// Run `program script` against a fresh gateway; every call that reached a
/// tenant must have left exactly one record.
async fn sdk_checks_pass(program: PathBuf, script: PathBuf) {
    let mut app = spawn_app(Backend::Sqlite).await;
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .env("GATEWAY", base)
            .env("MANAGED_KEY", MANAGED_KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
    // The refused keys reached no tenant and no upstream.
    let upstream_calls = app.upstream.mock.seen().len() as i64;
    assert_eq!(app.store.count_records().await.unwrap(), upstream_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_through_the_gateway() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/check_sdks.py");
    sdk_checks_pass(python, script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk_works_through_the_gateway() {
    let script = tokio::task::spawn_blocking(sdk_node).await.unwrap();
    sdk_checks_pass("node".into(), script).await;
}
