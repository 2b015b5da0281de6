//! Test harness: a loopback upstream, a fresh database per test (a new
//! PostgreSQL database or a temporary SQLite file), and the whole gateway
//! started in-process on port 0.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use custodian::config::Config;
use custodian::domain::clock::{Clock, ManualClock, SystemClock};
use custodian::startup::Gateway;
use custodian::store::Store;
use sqlx::{Connection, Executor, PgConnection};

use crate::upstream::{self, Upstream};

pub const PG_ADMIN_URL_ENV: &str = "CUSTODIAN_TEST_PG_URL";
const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is removed after it.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        name: String,
        admin_url: String,
        url: String,
    },
}

pub fn pg_admin_url() -> String {
    std::env::var(PG_ADMIN_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("custodian.db").display());
                TestDb::Sqlite { _dir: dir, url }
            }
            Backend::Postgres => {
                let admin_url = pg_admin_url();
                let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is not reachable at {admin_url} ({e}). Start it with \
                         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                         or set {PG_ADMIN_URL_ENV}."
                    )
                });
                let name = format!("custodian_test_{}", uuid::Uuid::now_v7().simple());
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
                let url = match admin_url.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => panic!("{PG_ADMIN_URL_ENV} must end in /database"),
                };
                TestDb::Postgres {
                    name,
                    admin_url,
                    url,
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            name, admin_url, ..
        } = self
        {
            let (name, admin_url) = (name.clone(), admin_url.clone());
            // Drop runs outside any runtime we may block: use a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                        let _ = conn
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Builds a test configuration around a loopback upstream.
pub struct ConfigBuilder {
    pub extra: String,
    /// More keys for the `[auth]` table.
    pub auth: String,
    /// More keys for the `[server]` table.
    pub server: String,
    /// `server.admin_listen` (port 0 by default).
    pub admin_listen: Option<String>,
    /// `files.location`; `spawn_app_with` points it at a temporary directory.
    pub files_location: Option<String>,
    /// `spool.dir`; `spawn_app_with` points it at a temporary directory.
    pub spool_dir: Option<String>,
    /// More keys for the `[spool]` table.
    pub spool: String,
    /// More keys for the `[capture]` table.
    pub capture: String,
    /// Reach the test database by another URL (through a fault proxy).
    pub database_url: Option<String>,
    pub tenants: String,
    pub profiles: String,
    pub routes: Option<String>,
}

pub const MANAGED_KEY: &str = "cst_test_managed_key_acme";
pub const PASSTHROUGH_KEY: &str = "sk-passthrough-beta";
pub const ZDR_KEY: &str = "cst_test_managed_key_zdr";
pub const UPSTREAM_SECRET: &str = "sk-upstream-real-credential";
/// A tenant's own upstream credential (`TEST_TENANT_UPSTREAM_KEY`).
pub const TENANT_UPSTREAM_SECRET: &str = "sk-upstream-own-credential-of-a-tenant";
pub const FINGERPRINT_SECRET: &str = "fp-secret-for-tests";
/// The console's OpenID client secret (`TEST_OIDC_SECRET`).
pub const OIDC_CLIENT_SECRET: &str = "a-test-client-secret-of-the-console";
/// The key-encryption key tests that turn encryption on use.
pub const TEST_KEK: &str = "5c3f0e8a1b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60";

impl Default for ConfigBuilder {
    fn default() -> Self {
        let fp = custodian::proxy::auth::fingerprint(
            &custodian::config::Secret::new(FINGERPRINT_SECRET),
            PASSTHROUGH_KEY,
        );
        Self {
            extra: String::new(),
            auth: String::new(),
            server: String::new(),
            admin_listen: None,
            files_location: None,
            spool_dir: None,
            spool: String::new(),
            capture: String::new(),
            database_url: None,
            profiles: r#"
[profiles.api]
training_cutover = "2023-03-01T00:00:00Z"
content_retention = "30d"
metadata_retention = "365d"

[profiles.consumer]
content_retention = "7d"
metadata_retention = "90d"
"#
            .to_owned(),
            tenants: format!(
                r#"
[[tenants]]
id = "acme"
managed_keys = ["{managed}"]

[[tenants]]
id = "beta"
passthrough_fingerprints = ["{fp}"]

[[tenants]]
id = "zdr-co"
zero_data_retention = true
managed_keys = ["{zdr}"]
"#,
                managed = custodian::proxy::auth::managed_key_hash(MANAGED_KEY),
                zdr = custodian::proxy::auth::managed_key_hash(ZDR_KEY),
            ),
            routes: None,
        }
    }
}

impl ConfigBuilder {
    pub fn build(&self, upstream: &Upstream, db: &TestDb) -> Config {
        // `UPSTREAM_BASE` in custom routes stands for the mock's base URL.
        let custom = self
            .routes
            .as_ref()
            .map(|r| r.replace("UPSTREAM_BASE", &upstream.base()));
        let routes = custom.unwrap_or_else(|| {
            format!(
                r#"
[[routes]]
name = "openai"
prefix = "/v1/"
upstream = "{openai}"
profile = "api"
upstream_key = {{ env = "TEST_UPSTREAM_KEY" }}
# The loopback upstream's /v1/echo is no OpenAI endpoint.
unknown_endpoints = "forward"

[[routes]]
name = "anthropic"
prefix = "/anthropic/"
upstream = "{anthropic}"
profile = "api"
flavor = "anthropic"
upstream_key = {{ env = "TEST_UPSTREAM_KEY" }}
"#,
                openai = upstream.url(),
                anthropic = upstream.base(),
            )
        });
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "{admin_listen}"
max_request_body_bytes = 65536
shutdown_drain = "5s"
{server}

[upstream]
connect_timeout = "1s"
first_byte_timeout = "2s"
idle_timeout = "2s"

[database]
url = "{db}"
max_connections = 4

[capture]
max_body_bytes = 4096
{capture}

[consent]
refresh_interval = "100ms"
max_staleness = "5s"

[auth]
fingerprint_key = {{ env = "TEST_FINGERPRINT_KEY" }}
{auth}

[files]
location = "{files}"

[spool]
dir = "{spool_dir}"
{spool}

{extra}
{profiles}
{routes}
{tenants}
"#,
            db = self.database_url.as_deref().unwrap_or(db.url()),
            extra = self.extra.replace("UPSTREAM_BASE", &upstream.base()),
            auth = self.auth,
            capture = self.capture,
            server = self.server,
            admin_listen = self.admin_listen.as_deref().unwrap_or("127.0.0.1:0"),
            files = self
                .files_location
                .as_deref()
                .unwrap_or("target/test-files"),
            spool_dir = self.spool_dir.as_deref().unwrap_or("target/test-spool"),
            // Replayed quickly unless the test says otherwise.
            spool = match self.spool.contains("replay_interval") {
                true => self.spool.clone(),
                false => format!("replay_interval = \"100ms\"\n{}", self.spool),
            },
            profiles = self.profiles,
            tenants = self.tenants,
        );
        let env = vec![
            ("TEST_UPSTREAM_KEY".to_owned(), UPSTREAM_SECRET.to_owned()),
            (
                "TEST_FINGERPRINT_KEY".to_owned(),
                FINGERPRINT_SECRET.to_owned(),
            ),
            ("TEST_KEK".to_owned(), TEST_KEK.to_owned()),
            (
                "TEST_TENANT_UPSTREAM_KEY".to_owned(),
                TENANT_UPSTREAM_SECRET.to_owned(),
            ),
            ("TEST_OIDC_SECRET".to_owned(), OIDC_CLIENT_SECRET.to_owned()),
        ];
        Config::from_toml(Path::new("test.toml"), &text, env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
}

/// A gateway under test with its upstream and database.
pub struct TestApp {
    pub gateway: Option<Gateway>,
    pub upstream: Upstream,
    /// Kept so the database lives (and is dropped) with the app.
    pub _db: TestDb,
    pub store: Arc<dyn Store>,
    /// Where fine-tune file copies go.
    pub files_dir: tempfile::TempDir,
    /// The disk spool.
    pub spool_dir: tempfile::TempDir,
    pub config: Config,
    pub client: reqwest::Client,
    pub base: String,
    pub admin: String,
}

/// The gateway's warnings and errors are printed with a failing test's
/// output (libtest captures them otherwise); `TEST_LOG=custodian=debug`
/// shows more.
fn init_test_log() {
    let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "custodian=warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, ConfigBuilder::default(), Arc::new(SystemClock)).await
}

pub async fn spawn_app_with(
    backend: Backend,
    builder: ConfigBuilder,
    clock: Arc<dyn Clock>,
) -> TestApp {
    spawn_app_on(TestDb::new(backend).await, builder, clock).await
}

/// The gateway on a database the test made (to reach it another way too).
pub async fn spawn_app_on(db: TestDb, builder: ConfigBuilder, clock: Arc<dyn Clock>) -> TestApp {
    init_test_log();
    let upstream = upstream::spawn().await;
    let files_dir = tempfile::tempdir().unwrap();
    let mut builder = builder;
    builder.files_location = Some(files_dir.path().display().to_string());
    let spool_dir = tempfile::tempdir().unwrap();
    if builder.spool_dir.is_none() {
        builder.spool_dir = Some(spool_dir.path().display().to_string());
    }
    let config = builder.build(&upstream, &db);
    let gateway = Gateway::start(config.clone(), clock, true)
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gateway.proxy_addr);
    let admin = format!("http://{}", gateway.admin_addr);
    let store = Arc::clone(&gateway.store);
    TestApp {
        gateway: Some(gateway),
        upstream,
        _db: db,
        store,
        files_dir,
        spool_dir,
        config,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base,
        admin,
    }
}

/// Content keys on the key directory `dir`, under [`TEST_KEK`].
pub async fn test_keys(dir: &Path) -> Arc<custodian::crypto::ContentKeys> {
    use custodian::crypto::{ContentKeys, Kek, KeyStore, Keyring};
    let keyring = Keyring::new(Kek::from_hex(TEST_KEK).unwrap(), Vec::new());
    let store = KeyStore::dir(dir, true).unwrap();
    Arc::new(ContentKeys::open(store, keyring).await.unwrap())
}

pub fn manual_clock(at: time::OffsetDateTime) -> (ManualClock, Arc<dyn Clock>) {
    let clock = ManualClock::new(at);
    (clock.clone(), Arc::new(clock))
}

impl TestApp {
    /// The running gateway's content keys (encryption on).
    pub fn keys(&self) -> Arc<custodian::crypto::ContentKeys> {
        let gateway = self.gateway.as_ref().expect("the gateway runs");
        Arc::clone(gateway.keys.as_ref().expect("encryption is on"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stop the gateway: drains in-flight requests and flushes every record.
    pub async fn stop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await.expect("gateway stops cleanly");
        }
    }

    /// Wait (bounded) until at least `n` records are stored.
    pub async fn wait_for_records(&self, n: i64) -> i64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let count = self.store.count_records().await.unwrap();
            if count >= n || tokio::time::Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn chat(&self, key: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A GET with the acme tenant's managed key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(MANAGED_KEY)
            .send()
            .await
            .unwrap()
    }

    /// A chat completion with the upstream told how to behave (`x-mock-mode`).
    pub async fn chat_mode(
        &self,
        key: &str,
        body: &serde_json::Value,
        mode: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-mock-mode", mode)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The admin listener's Prometheus text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The one record with this id, after it has been written.
    /// The stored record, its content as a reader gets it (decompressed;
    /// sealed content is left as stored). `stored_record` for the bytes at rest.
    pub async fn record(&self, response_record_id: &str) -> custodian::domain::records::Record {
        let mut record = self.stored_record(response_record_id).await;
        if let Some(content) = record.content.as_mut().filter(|c| !c.sealed) {
            let opened =
                custodian::crypto::open_content(None, record.meta.id, &record.meta.tenant, content);
            let custodian::crypto::ContentView::Readable { request, response } = opened else {
                panic!("stored content does not open: {opened:?}");
            };
            content.request_body = request;
            content.response_body = response;
            content.compressed = false;
        }
        record
    }

    /// The record exactly as the store holds it.
    pub async fn stored_record(
        &self,
        response_record_id: &str,
    ) -> custodian::domain::records::Record {
        let id = custodian::domain::RecordId(response_record_id.parse().unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = self.store.get_record(id).await.unwrap() {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "record {id} never written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn record_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-custodian-record-id")
        .expect("record id receipt")
        .to_str()
        .unwrap()
        .to_owned()
}

/// One sweep at `at`, as the test's own: while the gateway's periodic
/// sweeper holds the lock (PostgreSQL lets one sweeper run at a time), wait
/// for it and sweep again, so that the test's sweep is never skipped.
pub async fn sweep_at(
    store: &dyn Store,
    at: time::OffsetDateTime,
) -> custodian::store::SweepReport {
    let clock = ManualClock::new(at);
    for _ in 0..200 {
        let report = custodian::jobs::sweeper::sweep_once(store, &clock, 1_000, false)
            .await
            .unwrap();
        if !report.skipped_locked {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("another sweeper held the lock for 5 s");
}

/// The sum of a Prometheus metric's samples whose labels include `label`
/// (e.g. `reason="spool_full"`).
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| {
            let labelled = l.starts_with(&format!("{name}{{"));
            (labelled || l.starts_with(&format!("{name} "))) && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Define a test once; run it against both stores.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Record a consent event the way an operator would: with its audit entry.
pub async fn append_consent(
    store: &dyn Store,
    event: &custodian::domain::ConsentEvent,
) -> Result<i64, custodian::store::StoreError> {
    let audit = custodian::domain::audit::AuditEvent {
        at: event.recorded_at,
        actor: event.actor.clone(),
        action: "consent.changed".into(),
        tenant: Some(event.tenant.clone()),
        subject: None,
        source: "test".into(),
        details: serde_json::json!({"via": "test"}),
    };
    store.record_consent(event, &audit).await
}

/// One `npm ci` at a time in this test binary.
static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Node packages of `tests/{source}` installed into `target/{target}`
/// from its lock file (again only when the lock file changed), with `files`
/// copied beside them; the folder. Needs Node.js, npm and the registry.
pub fn npm_installed(source: &str, target: &str, files: &[&str]) -> std::path::PathBuf {
    let _one = NPM.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (source, dir) = (
        root.join("tests").join(source),
        root.join("target").join(target),
    );
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["package.json", "package-lock.json"].iter().chain(files) {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let lock = std::fs::read_to_string(source.join("package-lock.json")).unwrap();
    let ready = dir.join(".installed");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(lock.as_str()) {
        let out = std::process::Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run npm (Node.js and npm are needed): {e}"));
        assert!(
            out.status.success(),
            "npm ci failed in {} (it needs Node.js, npm and the registry):\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&ready, lock).unwrap();
    }
    dir
}
