//! Where wrapped data keys live, apart from the content they open: a
//! directory on local disk (one node) or a PostgreSQL database of its own
//! (several replicas). Keys are only ever created (never overwritten by a
//! different key), re-wrapped in place, or destroyed.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::CryptoError;

/// A data key as stored: wrapped by the KEK `kek_id`, bound to `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// `content-<day>` or `file-<record id>`.
    pub name: String,
    pub kek_id: String,
    /// Nonce ‖ ciphertext ‖ tag.
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// The key store.
#[derive(Debug, Clone)]
pub enum KeyStore {
    Dir(PathBuf),
    Postgres {
        pool: PgPool,
        /// Longest wait for one operation: a key store that stops answering
        /// (a black-holed connection) must not hold the upkeep, the sweeper
        /// or shutdown.
        deadline: Duration,
    },
}

impl KeyStore {
    /// The key directory `path`, made if `create` (the gateway), required
    /// otherwise (an operator's command run from the wrong directory must
    /// not find an empty key store and call everything expired).
    pub fn dir(path: &Path, create: bool) -> Result<Self, CryptoError> {
        let io = |e| CryptoError::Io(path.to_owned(), e);
        if create {
            std::fs::create_dir_all(path).map_err(io)?;
        } else if !path.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such key directory",
            )));
        }
        remove_leftovers(path)?;
        Ok(Self::Dir(path.to_owned()))
    }

    /// Connect to a PostgreSQL key store and create its table if missing.
    /// Refuses a database that holds the gateway's content: keys kept
    /// beside the content travel in the same backups and defeat the point.
    pub async fn postgres(url: &str, connect_timeout: Duration) -> Result<Self, CryptoError> {
        let options = PgConnectOptions::from_str(url)?.application_name("custodian-keys");
        let deadline = connect_timeout * 2;
        let pool = within(deadline, async {
            Ok(PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(connect_timeout)
                .connect_with(options)
                .await?)
        })
        .await?;
        let holds_content: bool = within(deadline, async {
            Ok(
                sqlx::query_scalar("SELECT to_regclass('record_content') IS NOT NULL")
                    .fetch_one(&pool)
                    .await?,
            )
        })
        .await?;
        if holds_content {
            return Err(CryptoError::KeysBesideContent);
        }
        sqlx::migrate!("./migrations/keys")
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)?;
        Ok(Self::Postgres { pool, deadline })
    }

    /// Where the keys are, for messages (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(path) => path.display().to_string(),
            Self::Postgres { .. } => "the PostgreSQL key store".into(),
        }
    }

    /// The PostgreSQL cluster the key store lives in, when it can be told.
    pub async fn cluster_id(&self) -> Option<String> {
        let Self::Postgres { pool, deadline } = self else {
            return None;
        };
        tokio::time::timeout(*deadline, crate::store::postgres_cluster_id(pool))
            .await
            .ok()
            .flatten()
    }

    /// The names of every key whose name starts with `prefix` (damaged
    /// ones included: they are destroyed like the others).
    pub async fn names(&self, prefix: &str) -> Result<Vec<String>, CryptoError> {
        match self {
            Self::Dir(dir) => {
                let (dir, prefix) = (dir.clone(), prefix.to_owned());
                blocking(move || dir_names(&dir, &prefix)).await
            }
            Self::Postgres { pool, deadline } => {
                within(*deadline, async {
                    Ok(sqlx::query_scalar(
                        "SELECT name FROM custodian_keys WHERE starts_with(name, $1) ORDER BY name",
                    )
                    .bind(prefix)
                    .fetch_all(pool)
                    .await?)
                })
                .await
            }
        }
    }

    /// Every key whose name starts with `prefix`. A damaged key file is
    /// left out (and logged), not fatal to the listing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<WrappedKey>, CryptoError> {
        match self {
            Self::Dir(dir) => {
                let (dir, prefix) = (dir.clone(), prefix.to_owned());
                blocking(move || dir_list(&dir, &prefix)).await
            }
            Self::Postgres { pool, deadline } => {
                let rows: Vec<(String, String, Vec<u8>)> = within(*deadline, async {
                    Ok(sqlx::query_as(
                        "SELECT name, kek_id, wrapped FROM custodian_keys \
                         WHERE starts_with(name, $1) ORDER BY name",
                    )
                    .bind(prefix)
                    .fetch_all(pool)
                    .await?)
                })
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, kek_id, wrapped)| WrappedKey {
                        name,
                        kek_id,
                        wrapped,
                    })
                    .collect())
            }
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<WrappedKey>, CryptoError> {
        match self {
            Self::Dir(dir) => {
                let path = key_path(dir, name);
                blocking(move || read_key_file(&path)).await
            }
            Self::Postgres { pool, deadline } => {
                let row: Option<(String, Vec<u8>)> =
                    within(*deadline, async {
                        Ok(sqlx::query_as(
                            "SELECT kek_id, wrapped FROM custodian_keys WHERE name = $1",
                        )
                        .bind(name)
                        .fetch_optional(pool)
                        .await?)
                    })
                    .await?;
                Ok(row.map(|(kek_id, wrapped)| WrappedKey {
                    name: name.to_owned(),
                    kek_id,
                    wrapped,
                }))
            }
        }
    }

    /// Store `key` unless a key of that name exists; the key stored either
    /// way (so replicas that race to create a day's key agree on one).
    pub async fn insert_if_absent(&self, key: WrappedKey) -> Result<WrappedKey, CryptoError> {
        match self {
            Self::Dir(dir) => {
                let dir = dir.clone();
                blocking(move || dir_insert_if_absent(&dir, key)).await
            }
            Self::Postgres { pool, deadline } => {
                within(*deadline, async {
                    Ok(sqlx::query(
                        "INSERT INTO custodian_keys (name, kek_id, wrapped) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(&key.name)
                    .bind(&key.kek_id)
                    .bind(&key.wrapped)
                    .execute(pool)
                    .await?)
                })
                .await?;
                self.get(&key.name)
                    .await?
                    .ok_or_else(|| CryptoError::Vanished(key.name.clone()))
            }
        }
    }

    /// Replace `old` with `new` (the same key re-wrapped) if the store
    /// still holds exactly `old`. A key destroyed (or destroyed and made
    /// again) meanwhile is left as it is. Whether it was replaced.
    pub async fn rewrap(&self, old: &WrappedKey, new: WrappedKey) -> Result<bool, CryptoError> {
        match self {
            Self::Dir(dir) => {
                let (dir, old) = (dir.clone(), old.clone());
                blocking(move || dir_rewrap(&dir, &old, new)).await
            }
            Self::Postgres { pool, deadline } => {
                let done = within(*deadline, async {
                    Ok(sqlx::query(
                        "UPDATE custodian_keys SET kek_id = $2, wrapped = $3 \
                         WHERE name = $1 AND wrapped = $4",
                    )
                    .bind(&new.name)
                    .bind(&new.kek_id)
                    .bind(&new.wrapped)
                    .bind(&old.wrapped)
                    .execute(pool)
                    .await?)
                })
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    }

    /// Destroy the keys named; how many there were.
    pub async fn delete(&self, names: Vec<String>) -> Result<usize, CryptoError> {
        if names.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Dir(dir) => {
                let dir = dir.clone();
                blocking(move || dir_delete(&dir, &names)).await
            }
            Self::Postgres { pool, deadline } => {
                let done = within(*deadline, async {
                    Ok(
                        sqlx::query("DELETE FROM custodian_keys WHERE name = ANY($1)")
                            .bind(&names)
                            .execute(pool)
                            .await?,
                    )
                })
                .await?;
                self.vacuum().await;
                Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
            }
        }
    }

    /// Deleted or re-wrapped rows leave their old versions in the table's
    /// pages until vacuumed; the table is tiny, so ask for it at once.
    /// Best effort: it needs the table's owner, and rows an older snapshot
    /// still sees stay until that snapshot ends.
    pub async fn vacuum(&self) {
        let Self::Postgres { pool, deadline } = self else {
            return;
        };
        let done = within(*deadline, async {
            Ok(sqlx::query("VACUUM custodian_keys").execute(pool).await?)
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "vacuuming the key store failed");
        }
    }
}

/// `work`, or a timeout error once `deadline` has passed.
async fn within<T>(
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T, CryptoError>>,
) -> Result<T, CryptoError> {
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| CryptoError::Timeout(deadline))?
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, CryptoError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CryptoError::Io(PathBuf::new(), std::io::Error::other(e)))?
}

fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

/// Holds the directory's lock: creation, re-wrapping and destruction by
/// several processes (the gateway, `custodian keys`) do not interleave, so
/// a re-wrap never brings back a key destroyed under it.
struct DirLock(std::fs::File);

impl DirLock {
    fn take(dir: &Path) -> Result<Self, CryptoError> {
        let path = dir.join(".lock");
        let io = |e| CryptoError::Io(path.clone(), e);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Self(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn read_key_file(path: &Path) -> Result<Option<WrappedKey>, CryptoError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CryptoError::Io(path.to_owned(), e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CryptoError::BadKeyFile(path.to_owned(), e.to_string()))
}

fn dir_names(dir: &Path, prefix: &str) -> Result<Vec<String>, CryptoError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CryptoError::Io(dir.to_owned(), e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|f| Some(f.strip_suffix(".key")?.to_owned()))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort_unstable();
    Ok(names)
}

fn dir_list(dir: &Path, prefix: &str) -> Result<Vec<WrappedKey>, CryptoError> {
    let mut keys = Vec::new();
    for name in dir_names(dir, prefix)? {
        // Destroyed between the listing and the read: not listed.
        match read_key_file(&key_path(dir, &name)) {
            Ok(key) => keys.extend(key),
            Err(e) => tracing::error!(error = %e, "key file left out"),
        }
    }
    Ok(keys)
}

/// Temporary files a crash left behind (each may hold a wrapped key).
fn remove_leftovers(dir: &Path) -> Result<(), CryptoError> {
    let _lock = DirLock::take(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| CryptoError::Io(dir.to_owned(), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Write `key` to a temporary file, durably; its path. Nothing is left
/// behind on failure.
fn write_temp(dir: &Path, key: &WrappedKey) -> Result<PathBuf, CryptoError> {
    use std::io::Write;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        key.name,
        uuid::Uuid::now_v7().simple()
    ));
    let text = serde_json::to_vec(key).map_err(|_| CryptoError::Seal)?;
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(&text)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(CryptoError::Io(tmp, e));
    }
    Ok(tmp)
}

/// Move `tmp` over `path` durably; `tmp` is gone either way.
fn install(dir: &Path, tmp: &Path, path: &Path) -> Result<(), CryptoError> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(CryptoError::Io(path.to_owned(), e));
    }
    sync_dir(dir)
}

fn dir_insert_if_absent(dir: &Path, key: WrappedKey) -> Result<WrappedKey, CryptoError> {
    let _lock = DirLock::take(dir)?;
    let path = key_path(dir, &key.name);
    if let Some(existing) = read_key_file(&path)? {
        return Ok(existing);
    }
    let tmp = write_temp(dir, &key)?;
    install(dir, &tmp, &path)?;
    Ok(key)
}

fn dir_rewrap(dir: &Path, old: &WrappedKey, new: WrappedKey) -> Result<bool, CryptoError> {
    let _lock = DirLock::take(dir)?;
    let path = key_path(dir, &new.name);
    if read_key_file(&path)?.as_ref() != Some(old) {
        return Ok(false);
    }
    let tmp = write_temp(dir, &new)?;
    install(dir, &tmp, &path)?;
    Ok(true)
}

fn dir_delete(dir: &Path, names: &[String]) -> Result<usize, CryptoError> {
    let _lock = DirLock::take(dir)?;
    let mut deleted = 0;
    for name in names {
        let path = key_path(dir, name);
        match std::fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CryptoError::Io(path, e)),
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError::Io(dir.to_owned(), e))
}
