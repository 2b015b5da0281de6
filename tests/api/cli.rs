//! The `custodian` binary as an operator runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::helpers::{Backend, TestDb};

fn custodian(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CUSTODIAN_CONFIG")
        .output()
        .expect("custodian runs")
}

fn write_config(dir: &Path, db_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("custodian.toml");
    let files = dir.join("files").display().to_string();
    let text = format!(
        r#"
[files]
location = "{files}"

[database]
url = "{db_url}"

[profiles.api]
training_cutover = "2023-03-01T00:00:00Z"

[[routes]]
prefix = "/v1/"
upstream = "http://127.0.0.1:9/v1/"
profile = "api"

[[tenants]]
id = "acme"
{extra}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn shipped_configs_are_valid() {
    for file in ["config/custodian.toml", "config/custodian.example.toml"] {
        let out = custodian(Path::new(file), &["check-config"]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
    }
}

#[test]
fn check_config_names_file_line_and_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "sqlite://x.db", "retention_days = 3");
    let out = custodian(&path, &["check-config"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("custodian.toml"), "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("retention_days"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert!(err.contains("retention_days"), "{err}");

    let out = custodian(&path, &["serve"]);
    assert!(!out.status.success(), "serve must refuse a bad file too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_record_and_show_on_both_stores() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), db.url(), "");
        let out = custodian(&path, &["migrate"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = custodian(
            &path,
            &[
                "consent",
                "record",
                "--tenant",
                "acme",
                "--opt-in",
                "--effective-at",
                "2024-01-01T00:00:00Z",
                "--actor",
                "ops@example.com",
                "--note",
                "signed DPA",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = custodian(&path, &["consent", "show", "acme"]);
        let text = stdout(&out);
        assert!(text.contains("2024-01-01T00:00:00Z\t"), "{text}");
        assert!(
            text.contains("opt-in\toperator:ops@example.com\toperator\tsigned DPA"),
            "{text}"
        );
        assert!(text.contains("current: opted in"), "{text}");
        let out = custodian(&path, &["audit", "verify"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("audit log intact: 1 entries"),
            "{}",
            stdout(&out)
        );

        // An export with nothing to export still writes its manifest.
        let jsonl = dir.path().join("train.jsonl");
        let jsonl_arg = jsonl.to_str().unwrap();
        let export = [
            "export",
            "training",
            "--since",
            "2020-01-01T00:00:00Z",
            "--out",
            jsonl_arg,
        ];
        let out = custodian(&path, &export);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("exported 0 lines"),
            "{}",
            stdout(&out)
        );
        assert!(dir.path().join("train.jsonl.manifest.json").exists());
        assert!(!dir.path().join("train.jsonl.progress").exists());
        let again = custodian(&path, &export);
        assert!(
            !again.status.success(),
            "an existing output is not overwritten unasked"
        );
        assert!(stderr(&again).contains("--overwrite"), "{}", stderr(&again));

        let out = custodian(
            &path,
            &[
                "consent",
                "record",
                "--tenant",
                "nobody",
                "--opt-out",
                "--actor",
                "x",
            ],
        );
        assert!(!out.status.success());
        assert!(stderr(&out).contains("no tenant \"nobody\""));
    }
}

#[test]
fn keys_issue_prints_a_key_and_its_hash_and_fingerprint_reads_stdin() {
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["keys", "issue"])
        .output()
        .unwrap();
    let text = stdout(&out);
    let key = text.lines().find_map(|l| l.strip_prefix("key:  ")).unwrap();
    let hash = text.lines().find_map(|l| l.strip_prefix("hash: ")).unwrap();
    assert_eq!(custodian::auth::managed_key_hash(key), hash);

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("fp.key");
    std::fs::write(&secret_file, "file-secret\n").unwrap();
    let path = write_config(
        dir.path(),
        "sqlite://x.db",
        &format!(
            "\n[auth]\nfingerprint_key = {{ file = \"{}\" }}\n",
            secret_file.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--config")
        .arg(&path)
        .args(["keys", "fingerprint"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-real-key\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let expected = custodian::auth::fingerprint(
        &custodian::config::Secret::new("file-secret"),
        "sk-real-key",
    );
    assert_eq!(stdout(&out).trim(), expected);
}
