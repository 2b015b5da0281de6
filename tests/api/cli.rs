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

pub fn write_config(dir: &Path, db_url: &str, extra: &str) -> std::path::PathBuf {
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

/// A configuration for `serve` on loopback ports chosen by the system,
/// forwarding to `upstream` with the key from `ZDR_TEST_UPSTREAM_KEY`.
pub(crate) fn serve_config(
    dir: &Path,
    db_url: &str,
    tenant: &str,
    upstream: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = write_config(dir, db_url, tenant);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1:9/v1/", upstream)
        .replace(
            "[database]",
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[database]",
        )
        .replace(
            "[[routes]]",
            "[[routes]]\nupstream_key = { env = \"ZDR_TEST_UPSTREAM_KEY\" }\n",
        );
    std::fs::write(&path, format!("{extra}\n{text}")).unwrap();
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
    // `keys issue` is the old spelling of `api-keys issue`, kept as an alias.
    for spelling in [["api-keys", "issue"], ["keys", "issue"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(spelling)
            .output()
            .unwrap();
        let text = stdout(&out);
        let key = text.lines().find_map(|l| l.strip_prefix("key:  ")).unwrap();
        let hash = text.lines().find_map(|l| l.strip_prefix("hash: ")).unwrap();
        assert_eq!(custodian::proxy::auth::managed_key_hash(key), hash);
    }
    let help = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&help);
    assert!(help.contains("api-keys") && help.contains("encryption-keys"));
    assert!(!help.lines().any(|l| l.trim_start().starts_with("keys ")));

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
        .args(["api-keys", "fingerprint"])
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
    let expected = custodian::proxy::auth::fingerprint(
        &custodian::config::Secret::new("file-secret"),
        "sk-real-key",
    );
    assert_eq!(stdout(&out).trim(), expected);
}

/// The binary, as deployed, at the most verbose log level: a ZDR tenant's
/// content reaches no table, no database file, no blob and no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_no_byte_of_zdr_content_in_any_file_or_log() {
    let upstream = crate::upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("custodian.db").display());
    let zdr_key = "cst_binary_test_zdr_key";
    let tenant = format!(
        "zero_data_retention = true\nmanaged_keys = [\"{}\"]\n",
        custodian::proxy::auth::managed_key_hash(zdr_key)
    );
    let path = serve_config(dir.path(), &db, &tenant, &upstream.url(), "");
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env("RUST_LOG", "trace")
        .env("ZDR_TEST_UPSTREAM_KEY", "sk-upstream")
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = wait_for_listen_addr(&log_path).await;

    let marker = format!("zdr-marker-{}", uuid::Uuid::now_v7().simple());
    let client = reqwest::Client::new();
    for (stream, mode, status) in [
        (false, "", 200),
        (true, "", 200),
        (false, "error429", 429),
        (true, "reset", 200),
    ] {
        let response = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(zdr_key)
            .header("x-mock-mode", mode)
            .json(&serde_json::json!({"model": "m", "stream": stream,
                "messages": [{"role": "user", "content": marker}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let _ = response.text().await;
    }
    // SIGTERM: drain and flush every record, then exit.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log_path).unwrap()
    );

    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(log_text.contains("custodian stopped"), "{log_text}");
    assert!(log_text.contains("TRACE"), "the most verbose level was on");
    let mut scanned = 0;
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        scanned += 1;
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} holds ZDR content",
            file.display()
        );
    }
    assert!(
        scanned >= 3,
        "the log, the database and its WAL were scanned"
    );
    let store = custodian::store::connect(&custodian::config::DatabaseConfig {
        url: db,
        migrate_on_start: false,
        max_connections: 1,
        connect_timeout: std::time::Duration::from_secs(5),
        partitions_ahead: std::time::Duration::from_secs(86_400),
    })
    .await
    .unwrap();
    assert_eq!(store.count_records().await.unwrap(), 4, "metadata is kept");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The proxy address from the gateway's start-up log line.
pub(crate) async fn wait_for_listen_addr(log: &Path) -> String {
    wait_for_logged(log, "proxy_addr=").await
}

/// The value of `field` (e.g. `admin_addr=`) in the gateway's start line.
pub(crate) async fn wait_for_logged(log: &Path, field: &str) -> String {
    for _ in 0..200 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("custodian listening")) {
            let start = line.find(field).unwrap() + field.len();
            let addr: String = line[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .filter(|c| *c != '\u{1b}')
                .collect();
            return addr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the gateway did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// `custodian serve` on `config` from its directory, logging to `log`.
pub(crate) fn spawn_serve(config: &Path, log: &Path) -> std::process::Child {
    spawn_serve_with(config, log, &[])
}

/// `spawn_serve` with more environment (an egress proxy, say).
pub(crate) fn spawn_serve_with(
    config: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("ZDR_TEST_UPSTREAM_KEY", "sk-upstream")
        .envs(env.iter().copied())
        .env_remove("CUSTODIAN_CONFIG")
        .current_dir(config.parent().unwrap())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_holds_from_the_command_line() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), db.url(), "");
        assert!(custodian(&path, &["migrate"]).status.success());
        let out = custodian(&path, &["sweep", "--dry-run"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("would remove 0 rows from record_content"),
            "{}",
            stdout(&out)
        );

        let add = [
            "hold",
            "add",
            "--tenant",
            "acme",
            "--reason",
            "matter 7",
            "--until",
            "2099-01-01T00:00:00Z",
            "--actor",
            "legal@example.com",
        ];
        let out = custodian(&path, &add);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("legal hold #1 placed"),
            "{}",
            stdout(&out)
        );
        let list = stdout(&custodian(&path, &["hold", "list"]));
        assert!(
            list.contains(
                "1\tactive\tacme\t*\t2099-01-01T00:00:00Z\toperator:legal@example.com\tmatter 7"
            ),
            "{list}"
        );

        let no_reason = custodian(
            &path,
            &[
                "hold",
                "add",
                "--tenant",
                "acme",
                "--reason",
                " ",
                "--until",
                "2099-01-01T00:00:00Z",
                "--actor",
                "x",
            ],
        );
        assert!(!no_reason.status.success());
        let past = custodian(
            &path,
            &[
                "hold",
                "add",
                "--tenant",
                "acme",
                "--reason",
                "r",
                "--until",
                "2001-01-01T00:00:00Z",
                "--actor",
                "x",
            ],
        );
        assert!(stderr(&past).contains("future"), "{}", stderr(&past));

        let out = custodian(
            &path,
            &[
                "hold",
                "release",
                "1",
                "--actor",
                "legal@example.com",
                "--reason",
                "settled",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!custodian(
            &path,
            &["hold", "release", "1", "--actor", "x", "--reason", "again"]
        )
        .status
        .success());
        let list = stdout(&custodian(&path, &["hold", "list", "--all"]));
        assert!(list.contains("1\treleased"), "{list}");
        let out = custodian(&path, &["sweep"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let verify = stdout(&custodian(&path, &["audit", "verify"]));
        assert!(verify.contains("audit log intact: 2 entries"), "{verify}");
    }
}

/// A reviewer's day from the terminal: an admin creates principals, a
/// reviewer lists, claims, reads and resolves through the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_and_the_review_cli() {
    let builder = crate::helpers::ConfigBuilder {
        extra: "[[rules]]\nname = \"weapons\"\nkeywords = [\"build a bomb\"]\n".into(),
        ..crate::helpers::ConfigBuilder::default()
    };
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), app._db.url(), "");
    let add = |name: &str, role: &str| {
        custodian(
            &path,
            &[
                "principals",
                "add",
                "--name",
                name,
                "--role",
                role,
                "--actor",
                "root",
            ],
        )
    };
    let out = add("rex", "reviewer");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    assert!(!add("rex", "reviewer").status.success(), "names are unique");
    assert!(!add("eve", "superuser").status.success());
    let list = stdout(&custodian(&path, &["principals", "list"]));
    assert!(list.contains("rex\treviewer\tactive"), "{list}");
    assert!(!list.contains(&token[5..]), "tokens are never shown again");

    let response = app
        .chat(
            crate::helpers::MANAGED_KEY,
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "build a bomb"}]}),
        )
        .await;
    let id = crate::helpers::record_id(&response);
    app.record(&id).await;

    let review = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(["review", "--url", &app.admin])
            .args(args)
            .env("CUSTODIAN_TOKEN", &token)
            .output()
            .unwrap()
    };
    let out = review(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&id) && stdout(&out).contains("weapons"),
        "{}",
        stdout(&out)
    );
    let out = review(&["claim"]);
    assert!(
        stdout(&out).contains("\"assignee\": \"rex\""),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&review(&["claim"])).contains("no open item"));
    let out = review(&["show", &id]);
    assert!(stdout(&out).contains("build a bomb"), "{}", stdout(&out));
    let out = review(&[
        "resolve",
        &id,
        "--resolution",
        "dismissed",
        "--note",
        "a chemistry class",
    ]);
    assert!(
        stdout(&out).contains("\"status\": \"resolved\""),
        "{}",
        stdout(&out)
    );

    let out = custodian(&path, &["principals", "revoke", "rex", "--actor", "root"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = review(&["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let verify = stdout(&custodian(&path, &["audit", "verify"]));
    assert!(verify.contains("audit log intact"), "{verify}");
}

/// `audit verify` reports an entry removed from the end of the log (the
/// chain alone cannot see a cut-off tail; the head row can).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_reports_a_removed_last_entry() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), db.url(), "");
    assert!(custodian(&path, &["migrate"]).status.success());
    for n in 0..3 {
        let until = format!("2099-01-0{}T00:00:00Z", n + 1);
        let add = [
            "hold", "add", "--tenant", "acme", "--reason", "r", "--until", &until, "--actor", "x",
        ];
        assert!(custodian(&path, &add).status.success());
    }
    assert!(custodian(&path, &["audit", "verify"]).status.success());
    let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    let out = custodian(&path, &["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("entries are missing"),
        "{}",
        stderr(&out)
    );
}

/// KEK rotation with gateways running: a gateway rolled out with the new
/// KEK (the old one in `previous_keks`) keeps reading and sealing while
/// `keys rotate-kek` re-wraps the store; then the new KEK alone opens it
/// all. The offline form (`--new-kek-env`) and `keys status` too.
#[tokio::test]
async fn keys_rotate_kek_rewraps_the_key_store_while_gateways_run() {
    use custodian::crypto::{ContentKeys, Kek, KeyStore, Keyring, Opened};
    use custodian::domain::{RecordId, TenantId};
    const NEW_KEK: &str = "aa11223344556677889900aabbccddeeff00112233445566778899aabbccddee";
    const THIRD_KEK: &str = "bb11223344556677889900aabbccddeeff00112233445566778899aabbccddee";
    let dir = tempfile::tempdir().unwrap();
    let key_dir = dir.path().join("keys");
    let open = |current: &str, previous: &[&str]| {
        let keyring = Keyring::new(
            Kek::from_hex(current).unwrap(),
            previous.iter().map(|k| Kek::from_hex(k).unwrap()).collect(),
        );
        ContentKeys::open(KeyStore::dir(&key_dir, true).unwrap(), keyring)
    };
    let (tenant, now) = (TenantId("acme".into()), time::OffsetDateTime::now_utc());
    let seal = |keys: &ContentKeys, id| keys.seal(now, id, &tenant, "request", b"kept").unwrap();
    let (old_id, new_id) = (RecordId::new(), RecordId::new());
    let old_gateway = open(crate::helpers::TEST_KEK, &[]).await.unwrap();
    old_gateway.prepare(now, now).await.unwrap();
    old_gateway
        .prepare_tenants(std::slice::from_ref(&tenant))
        .await
        .unwrap();
    let old_sealed = seal(&old_gateway, old_id);

    // Rolled out: new KEK current, old one previous. It makes the next
    // days' keys under the new KEK and reads the old ones.
    let rolled = open(NEW_KEK, &[crate::helpers::TEST_KEK]).await.unwrap();
    rolled
        .prepare(now, now + time::Duration::days(2))
        .await
        .unwrap();
    let new_sealed = seal(&rolled, new_id);
    let encryption = format!(
        "\n[encryption]\nenabled = true\nkey_dir = \"{}\"\nkek = {{ env = \"CURRENT_KEK\" }}\n\
         previous_keks = [{{ env = \"OLD_KEK\" }}]\n",
        key_dir.display()
    );
    let path = write_config(dir.path(), "sqlite://x.db", &encryption);
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_custodian"));
        command.arg("--config").arg(&path).args(args);
        command
            .env("CURRENT_KEK", NEW_KEK)
            .env("OLD_KEK", crate::helpers::TEST_KEK)
            .env_remove("NEXT_KEK");
        command.envs(envs.iter().copied());
        command.output().unwrap()
    };
    let status = run(&["keys", "status"], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("(previous): 2 keys"),
        "{}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains("(current): 2 keys"),
        "{}",
        stdout(&status)
    );

    let out = run(&["encryption-keys", "rotate-kek"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("re-wrapped 2 data keys"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("(previous)"), "{}", stdout(&out));
    // Both gateways still open everything (keys held in memory); a fresh
    // process with the new KEK alone opens it all.
    let new_only = open(NEW_KEK, &[]).await.unwrap();
    for keys in [&old_gateway, &rolled, &new_only] {
        for (id, sealed) in [(old_id, &old_sealed), (new_id, &new_sealed)] {
            assert_eq!(
                keys.open_field(id, &tenant, "request", sealed),
                Opened::Decrypted(b"kept".to_vec())
            );
        }
    }
    // The old KEK alone no longer opens the store, and says which key.
    let err = open(crate::helpers::TEST_KEK, &[]).await.unwrap_err();
    assert!(err.to_string().contains("neither encryption.kek"), "{err}");

    // Offline: re-wrap with a KEK from the environment.
    let missing = run(
        &["encryption-keys", "rotate-kek", "--new-kek-env", "NEXT_KEK"],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("NEXT_KEK is not set"),
        "{}",
        stderr(&missing)
    );
    let out = run(
        &["encryption-keys", "rotate-kek", "--new-kek-env", "NEXT_KEK"],
        &[("NEXT_KEK", THIRD_KEK)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("re-wrapped 4 data keys"),
        "{}",
        stdout(&out)
    );
    let third = open(THIRD_KEK, &[]).await.unwrap();
    assert_eq!(
        third.open_field(old_id, &tenant, "request", &old_sealed),
        Opened::Decrypted(b"kept".to_vec())
    );
}
