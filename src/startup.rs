//! The one place that wires the gateway: store, background tasks, the two
//! listeners, and an orderly shutdown (stop accepting, drain in-flight
//! requests, flush the record queue).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::routing::any;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::abuse::classifier::Classifier;
use crate::abuse::suspensions::Suspensions;
use crate::config::Config;
use crate::crypto::{ContentKeys, Kek, KeyStore, Keyring};
use crate::domain::clock::Clock;
use crate::http::admin::{self, AdminState};
use crate::jobs::{self, sweeper, upkeep};
use crate::objects::copies::FileCopies;
use crate::proxy::auth::ApiKeys;
use crate::proxy::consent::ConsentCache;
use crate::proxy::self_service::{self, DataSharingState};
use crate::proxy::upstream::UpstreamClient;
use crate::proxy::{self, ProxyState, RouteRuntime};
use crate::recording::writer::{self, RecordSink};
use crate::store::{self, Store};
use crate::telemetry;

/// A running gateway.
pub struct Gateway {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub consent: Arc<ConsentCache>,
    /// The content keys, when encryption is on.
    pub keys: Option<Arc<ContentKeys>>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// Connect, migrate (unless `migrate` is false), bind and start serving.
    pub async fn start(
        config: Config,
        clock: Arc<dyn Clock>,
        migrate: bool,
    ) -> anyhow::Result<Self> {
        let store = store::connect(&config.database)
            .await
            .context("opening the store")?;
        Self::start_with_store(config, clock, store, migrate).await
    }

    pub async fn start_with_store(
        config: Config,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        migrate: bool,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        // Before anything records a metric (the first sweep, the key
        // upkeep): what happens before the recorder exists is lost.
        let metrics = telemetry::metrics_handle();
        telemetry::register_metrics(&config);
        if migrate {
            store.migrate().await.context("applying migrations")?;
        }
        upkeep::prepare_partitions(&config, store.as_ref(), clock.as_ref())
            .await
            .context("preparing partitions")?;
        // Before any record carries the version: each resolves to its policy.
        store
            .save_policy_document(&config.policy_version, &config.policy_document, clock.now())
            .await
            .context("storing the policy document")?;
        let keys = open_content_keys(&config, Some(store.as_ref()), clock.as_ref()).await?;
        let wiring = Wiring::load(config, clock, store, keys).await;
        let (recording, sink) = Recording::start(&wiring.config, &wiring.store)?;
        let files = FileCopies::open(&wiring.config.files, Arc::clone(&wiring.store))
            .context("opening the file copy store")?
            .with_keys(wiring.keys.clone());
        let proxy_state = wiring.proxy_state(files.clone(), sink)?;
        let background = wiring.spawn_jobs(files, &proxy_state);
        let (proxy_router, admin_router) = wiring.routers(proxy_state, metrics)?;
        let (proxy_listener, admin_listener) = bind(&wiring.config).await?;
        let proxy_addr = proxy_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        tracing::info!(%proxy_addr, %admin_addr, store = wiring.store.backend(), policy_version = %wiring.config.policy_version, "custodian listening");

        let limits = ListenerLimits::of(&wiring.config);
        let shutdown = wiring.shutdown.clone();
        let admin_task = tokio::spawn(serve(
            admin_listener,
            admin_router,
            limits,
            shutdown.clone(),
        ));
        let proxy_task = serve(proxy_listener, proxy_router, limits, shutdown.clone());
        let task = tokio::spawn(async move {
            proxy_task.await;
            let _ = admin_task.await;
            // Every exchange has ended (or the drain deadline passed): flush.
            recording.stop().await?;
            for task in background {
                let _ = task.await;
            }
            tracing::info!("custodian stopped");
            Ok(())
        });
        Ok(Self {
            proxy_addr,
            admin_addr,
            store: wiring.store,
            consent: wiring.consent,
            keys: wiring.keys,
            shutdown,
            task,
        })
    }

    /// A token that, when cancelled, starts the orderly shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shut down and wait until queued records are flushed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Wait until the gateway has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("gateway task panicked")?
    }
}

/// What the gateway's parts share: configuration, clock, store, the
/// request path's caches, the content keys and the shutdown signal.
struct Wiring {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    consent: Arc<ConsentCache>,
    suspensions: Arc<Suspensions>,
    keys: Option<Arc<ContentKeys>>,
    shutdown: CancellationToken,
}

impl Wiring {
    /// The caches loaded once before serving; a failure is not fatal
    /// (requests are tagged `consent_unavailable` until consent loads).
    async fn load(
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        keys: Option<Arc<ContentKeys>>,
    ) -> Self {
        let consent = Arc::new(ConsentCache::new(config.consent.max_staleness));
        if let Err(e) = consent.refresh(store.as_ref()).await {
            tracing::warn!(error = %e, "consent not loaded at start");
        }
        let suspensions = Arc::new(Suspensions::default());
        if let Err(e) = suspensions.refresh(store.as_ref()).await {
            tracing::warn!(error = %e, "suspensions not loaded at start");
        }
        Self {
            config,
            clock,
            store,
            consent,
            suspensions,
            keys,
            shutdown: CancellationToken::new(),
        }
    }

    fn proxy_state(&self, files: FileCopies, sink: RecordSink) -> anyhow::Result<ProxyState> {
        let config = &self.config;
        let classifier = config
            .classifier
            .clone()
            .map(|c| {
                Classifier::spawn(
                    c,
                    Arc::clone(&self.store),
                    Arc::clone(&self.clock),
                    self.shutdown.clone(),
                )
            })
            .transpose()
            .context("starting the classifier")?;
        Ok(ProxyState {
            keys: self.keys.clone(),
            routes: (0..config.routes.len())
                .map(|i| RouteRuntime::new(config, i))
                .collect(),
            api_keys: Arc::new(ApiKeys::new(config)),
            consent: Arc::clone(&self.consent),
            sink,
            upstream: UpstreamClient::new(&config.upstream)
                .context("building the upstream client")?,
            clock: Arc::clone(&self.clock),
            policy_version: http::HeaderValue::from_str(&config.policy_version)
                .context("policy version is not a header value")?,
            policy_version_str: Arc::from(config.policy_version.as_str()),
            rates: Arc::default(),
            limits: proxy::inspect::Limits::new(config),
            store: Arc::clone(&self.store),
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_concurrent_requests,
            )),
            suspensions: Arc::clone(&self.suspensions),
            classifier,
            files,
            config: Arc::clone(config),
        })
    }

    /// Every periodic job this configuration needs (see `jobs`).
    fn spawn_jobs(&self, files: FileCopies, proxy_state: &ProxyState) -> Vec<JoinHandle<()>> {
        let (config, store, clock, stop) = (&self.config, &self.store, &self.clock, &self.shutdown);
        let refresh = config.consent.refresh_interval;
        let mut jobs = vec![
            Arc::clone(&self.consent).spawn_refresher(Arc::clone(store), refresh, stop.clone()),
            Arc::clone(&self.suspensions).spawn_refresher(Arc::clone(store), refresh, stop.clone()),
            upkeep::spawn_partition_upkeep(
                Arc::clone(config),
                Arc::clone(store),
                Arc::clone(clock),
                stop.clone(),
            ),
        ];
        if let Some(keys) = &self.keys {
            jobs.push(upkeep::spawn_key_upkeep(
                Arc::clone(config),
                Arc::clone(keys),
                Arc::clone(clock),
                stop.clone(),
            ));
        }
        if !config.sweeper.enabled {
            return jobs;
        }
        jobs.push(sweeper::spawn(
            Arc::clone(store),
            Arc::clone(clock),
            config.sweeper.clone(),
            self.keys.clone(),
            Some((files, config.files.pending_max_age)),
            stop.clone(),
        ));
        // Upstream objects whose profile lets them expire are deleted
        // upstream by every replica's pass (idempotent: a second delete
        // finds nothing).
        let expiring = config
            .tenants
            .iter()
            .flat_map(|t| &t.policies)
            .any(|p| p.upstream_objects == crate::config::UpstreamObjects::Expire);
        if expiring {
            let state = proxy_state.clone();
            let job = jobs::Job::every("object_purge", config.sweeper.interval);
            jobs.push(jobs::spawn(job, stop.clone(), move || {
                let state = state.clone();
                async move {
                    proxy::ownership::purge_expired(&state, state.clock.now()).await;
                    Ok::<(), std::convert::Infallible>(())
                }
            }));
        }
        jobs
    }

    /// The review desk both admin faces (API and console) act through.
    fn desk(&self) -> crate::review::Desk {
        crate::review::Desk::new(
            Arc::clone(&self.config),
            Arc::clone(&self.store),
            Arc::clone(&self.clock),
            Arc::clone(&self.suspensions),
            self.keys.clone(),
        )
    }

    /// The proxy listener's routes (the data path and tenant self-service)
    /// and the admin listener's (health, metrics, the review API).
    fn routers(
        &self,
        proxy_state: ProxyState,
        metrics: Option<PrometheusHandle>,
    ) -> anyhow::Result<(Router, Router)> {
        let data_sharing_state = DataSharingState {
            config: Arc::clone(&self.config),
            api_keys: Arc::clone(&proxy_state.api_keys),
            store: Arc::clone(&self.store),
            consent: Arc::clone(&self.consent),
            clock: Arc::clone(&self.clock),
        };
        let files = proxy_state.files.clone();
        let proxy_router = Router::new()
            .route(
                self_service::PATH,
                any(self_service::handle).with_state(data_sharing_state),
            )
            .fallback(proxy::handle)
            .with_state(proxy_state);
        let admin_router = admin::router(AdminState {
            store: Arc::clone(&self.store),
            metrics,
        })
        .merge(crate::http::review::router(
            crate::http::review::ReviewState {
                desk: self.desk(),
                files: Some(files),
                tenants: self.config.tenants.iter().map(|t| t.id.clone()).collect(),
                end_user_key: self.config.auth.end_user_key.clone(),
            },
        ));
        // The console shares the admin listener (never the proxy's).
        let admin_router = match self.config.console.enabled {
            true => {
                let console =
                    crate::console::ConsoleState::new(self.desk(), self.config.console.clone())
                        .context("building the console's OpenID client")?;
                admin_router.merge(crate::console::router(console))
            }
            false => admin_router,
        };
        Ok((proxy_router, admin_router))
    }
}

/// The record pipeline: the writer and the spool replay, stopped after
/// the listeners so that every exchange's record is flushed.
struct Recording {
    writer: JoinHandle<()>,
    replay: JoinHandle<()>,
    stop: CancellationToken,
}

impl Recording {
    /// The pipeline, and the sink requests put their records in (the
    /// writer ends once every sink is gone: none may stay here).
    fn start(config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<(Self, RecordSink)> {
        let stop = CancellationToken::new();
        let durability = writer::durability(&config.spool)
            .with_context(|| format!("opening the spool {}", config.spool.dir.display()))?;
        let (sink, writer) = writer::spawn(
            Arc::clone(store),
            &config.writer,
            Arc::clone(&durability),
            stop.clone(),
        );
        // Stopped with the writer, after it: it replays what the writer
        // spooled at shutdown, if the store is back.
        let replay = writer::spawn_replay(
            Arc::clone(store),
            durability,
            config.writer.batch_size,
            config.spool.replay_interval,
            stop.clone(),
        );
        let recording = Self {
            writer,
            replay,
            stop,
        };
        Ok((recording, sink))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.writer.await.context("record writer panicked")?;
        let _ = self.replay.await;
        Ok(())
    }
}

async fn bind(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    let proxy = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding the proxy listener {}", config.server.listen))?;
    let admin = TcpListener::bind(config.server.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener {}", config.server.admin_listen))?;
    Ok((proxy, admin))
}

/// The content keys, when encryption is on, with the coming days' keys
/// made ahead so that no request waits for the key store. `content_store`
/// (when given) is checked to be apart from the key store.
pub async fn open_content_keys(
    config: &Config,
    content_store: Option<&dyn Store>,
    clock: &dyn Clock,
) -> anyhow::Result<Option<Arc<ContentKeys>>> {
    let Some(keys) = load_content_keys(config, content_store, None, true).await? else {
        return Ok(None);
    };
    upkeep::prepare_content_keys(config, &keys, clock)
        .await
        .context("making the coming days' content keys")?;
    Ok(Some(keys))
}

/// The content keys as the key store holds them (no key made), when
/// encryption is on. `new_kek` replaces `encryption.kek` as the current
/// KEK, the configured ones staying accepted (an offline rotation). A key
/// directory is made only if `create` (the gateway; never an operator's
/// command, which must find the real one).
pub async fn load_content_keys(
    config: &Config,
    content_store: Option<&dyn Store>,
    new_kek: Option<Kek>,
    create: bool,
) -> anyhow::Result<Option<Arc<ContentKeys>>> {
    let Some(encryption) = &config.encryption else {
        return Ok(None);
    };
    let store = match &encryption.key_store_url {
        Some(url) => KeyStore::postgres(url, config.database.connect_timeout)
            .await
            .context("opening the PostgreSQL key store (encryption.key_store_url)")?,
        None => KeyStore::dir(&encryption.key_dir, create)?,
    };
    if let (Some(content), Some(keys_at)) = (content_store, store.cluster_id().await) {
        if content.cluster_id().await.as_deref() == Some(keys_at.as_str()) {
            // pg_dump of the content database leaves the keys out, but a
            // physical backup or WAL archive of the cluster carries both.
            tracing::warn!(
                "the key store is in the same PostgreSQL cluster as the content: \
                 physical backups of the cluster hold both"
            );
        }
    }
    let mut keks = std::iter::once(&encryption.kek)
        .chain(&encryption.previous_keks)
        .map(|k| Kek::from_hex(k.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    let current = match new_kek {
        Some(new) => new,
        None => keks.remove(0),
    };
    let keys = ContentKeys::open(store, Keyring::new(current, keks))
        .await
        .context("loading the content keys")?;
    Ok(Some(Arc::new(keys)))
}

/// hyper's default header count.
const DEFAULT_MAX_HEADERS: usize = 100;
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 256;
/// What an HTTP/2 connection (prior knowledge) begins with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a new connection speaks HTTP/2 (its first bytes are the
/// preface); `None` when it sends nothing usable within `timeout`.
async fn speaks_http2(stream: &tokio::net::TcpStream, timeout: Duration) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if !H2_PREFACE.starts_with(&buf[..n]) {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A partial preface: wait for more (peek returns what is there).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Clone, Copy)]
struct ListenerLimits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
    drain: Duration,
}

impl ListenerLimits {
    fn of(config: &Config) -> Self {
        Self {
            header_read_timeout: config.server.header_read_timeout,
            max_header_bytes: config.server.max_header_bytes,
            max_headers: config.server.max_headers,
            drain: config.server.shutdown_drain,
        }
    }
}

/// Accept connections until `shutdown`, then let in-flight requests finish
/// (up to the drain deadline). Our own loop rather than `axum::serve`, which
/// has no header-read timeout: a client that never finishes its headers
/// (slowloris) is cut off.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    // hyper parses up to 100 headers on the stack; any other limit costs a
    // heap allocation per request, so it is set only when asked for.
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        http.max_headers(limits.max_headers);
    }
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_STREAMS)
        // A client that stops reading cannot hold a connection forever.
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The peer address, for handlers that audit where a change came from.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let (http1, h2, watcher) = (http.clone(), h2.clone(), graceful.watcher());
        tokio::spawn(async move {
            // HTTP/2 with prior knowledge (h2c) opens with its preface;
            // anything else is HTTP/1.1, with the limits above.
            let ended = match speaks_http2(&stream, limits.header_read_timeout).await {
                None => return,
                Some(true) => watcher
                    .watch(h2.serve_connection(TokioIo::new(stream), service))
                    .await
                    .map_err(|e| e.to_string()),
                Some(false) => watcher
                    .watch(http1.serve_connection(TokioIo::new(stream), service))
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!(deadline = ?limits.drain, "drain deadline passed; in-flight requests cut off");
        }
    }
}
