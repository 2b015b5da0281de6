//! What runs periodically, all in one shape ([`spawn`]): a name, an
//! interval, whether it runs at once or after the first interval, and what
//! shutdown does to a run in progress. Each run is counted
//! (`custodian_job_runs_total{job,outcome}`) and a failed run logs one line
//! with the job's name; the work itself lives with its subject.
//!
//! The jobs: consent and suspension refreshers (`proxy::consent`,
//! `abuse::suspensions`), partition upkeep ([`upkeep`]), content key upkeep
//! ([`upkeep`]), the retention sweep ([`sweeper`]), the purge of expired
//! upstream objects (`proxy::ownership`) and the spool replay
//! (`recording::writer`).

pub mod sweeper;
pub mod upkeep;

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every job's name, for the metric's label set registered at start.
pub const NAMES: &[&str] = &[
    "consent_refresh",
    "suspensions_refresh",
    "partition_upkeep",
    "key_upkeep",
    "sweep",
    "object_purge",
    "spool_replay",
];

/// How a job runs.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub name: &'static str,
    pub interval: Duration,
    /// The first run at once (refreshers), or after one interval (upkeep
    /// that start-up has just done).
    pub at_once: bool,
    /// At shutdown: abandon a run in progress (the next start finishes
    /// it), or run once more and finish (the spool replay's last pass).
    pub last_run_at_shutdown: bool,
}

impl Job {
    pub const fn every(name: &'static str, interval: Duration) -> Self {
        Self {
            name,
            interval,
            at_once: true,
            last_run_at_shutdown: false,
        }
    }

    pub const fn after_first_interval(mut self) -> Self {
        self.at_once = false;
        self
    }

    pub const fn with_last_run_at_shutdown(mut self) -> Self {
        self.last_run_at_shutdown = true;
        self
    }
}

/// Run `run` as `job` says until `shutdown`.
pub fn spawn<F, Fut, E>(job: Job, shutdown: CancellationToken, mut run: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    // Validation refuses zero intervals; a tick never spins regardless.
    let job = Job {
        interval: job.interval.max(Duration::from_millis(1)),
        ..job
    };
    tokio::spawn(async move {
        let start = match job.at_once {
            true => tokio::time::Instant::now(),
            false => tokio::time::Instant::now() + job.interval,
        };
        let mut ticker = tokio::time::interval_at(start, job.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                () = shutdown.cancelled() => true,
            };
            if stopping && !job.last_run_at_shutdown {
                return;
            }
            let result = match stopping || job.last_run_at_shutdown {
                true => run().await,
                false => tokio::select! {
                    r = run() => r,
                    () = shutdown.cancelled() => return,
                },
            };
            finished(job.name, result);
            if stopping {
                return;
            }
        }
    })
}

fn finished<E: std::fmt::Display>(job: &'static str, result: Result<(), E>) {
    let outcome = match &result {
        Ok(()) => "ok",
        Err(_) => "error",
    };
    metrics::counter!("custodian_job_runs_total", "job" => job, "outcome" => outcome).increment(1);
    if let Err(e) = result {
        tracing::error!(job, error = %e, "periodic job failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    async fn runs(job: Job, wait: Duration) -> u32 {
        let shutdown = CancellationToken::new();
        let count = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&count);
        let task = spawn(job, shutdown.clone(), move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        });
        tokio::time::sleep(wait).await;
        shutdown.cancel();
        task.await.unwrap();
        count.load(Ordering::SeqCst)
    }

    /// Every job spawned is named in [`NAMES`], so its counters exist from
    /// the start.
    #[test]
    fn every_job_in_the_source_is_named() {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let named = regex::Regex::new(r#"Job::every\(\s*"([a-z_]+)""#).unwrap();
        let mut stack = vec![source];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for name in named.captures_iter(&text) {
                    seen += 1;
                    assert!(
                        NAMES.contains(&&name[1]),
                        "{} in {}",
                        &name[1],
                        path.display()
                    );
                }
            }
        }
        assert!(seen >= NAMES.len(), "only {seen} jobs found");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_runs_at_once_or_after_its_first_interval_and_once_more_at_shutdown_if_asked() {
        let every = Duration::from_secs(10);
        let wait = Duration::from_secs(25);
        assert_eq!(runs(Job::every("sweep", every), wait).await, 3);
        let later = Job::every("sweep", every).after_first_interval();
        assert_eq!(runs(later, wait).await, 2);
        assert_eq!(runs(later.with_last_run_at_shutdown(), wait).await, 3);
    }
}
