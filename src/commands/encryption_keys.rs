//! `custodian encryption-keys`: the keys that seal content at rest.

use super::*;
use crate::commands::cli::EncryptionKeysCommand;

pub(super) async fn run(path: &Path, command: EncryptionKeysCommand) -> anyhow::Result<()> {
    match command {
        EncryptionKeysCommand::Status => keys_status(path).await,
        EncryptionKeysCommand::Verify { erased_tenant } => {
            keys_verify(path, erased_tenant.map(TenantId)).await
        }
        EncryptionKeysCommand::RotateKek { new_kek_env } => {
            rotate_kek(path, new_kek_env.as_deref()).await
        }
    }
}

async fn rotate_kek(path: &Path, new_kek_env: Option<&str>) -> anyhow::Result<()> {
    let config = load(path)?;
    let new = match new_kek_env {
        Some(var) => {
            let value = std::env::var(var)
                .with_context(|| format!("environment variable {var} is not set"))?;
            Some(crate::crypto::Kek::from_hex(&value)?)
        }
        None => None,
    };
    let keys = content_keys(&config, path, new).await?;
    let count = keys.rotate_kek().await?;
    let kek = keys.keyring().current().id();
    println!("re-wrapped {count} data keys with key-encryption key {kek}");
    if new_kek_env.is_some() {
        println!("set encryption.kek to it now (gateways holding only the old KEK cannot read these keys)");
    }
    print_census(&keys).await
}

/// The key store an operator's `keys` command works on (never created).
async fn content_keys(
    config: &Config,
    path: &Path,
    new_kek: Option<crate::crypto::Kek>,
) -> anyhow::Result<Arc<crate::crypto::ContentKeys>> {
    crate::startup::load_content_keys(config, None, new_kek, false)
        .await?
        .with_context(|| format!("encryption is not enabled in {}", path.display()))
}

async fn keys_status(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let keys = content_keys(&config, path, None).await?;
    print_census(&keys).await
}

async fn keys_verify(path: &Path, erased: Option<TenantId>) -> anyhow::Result<()> {
    let config = load(path)?;
    let keys = content_keys(&config, path, None).await?;
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    let report =
        crate::crypto::shred_check::check(store.as_ref(), &keys, now, erased.as_ref()).await?;
    println!("bodies checked: {}", report.rows);
    println!("  readable with the key store: {}", report.readable);
    println!("  expired (key destroyed): {}", report.expired);
    println!("  erased (tenant key destroyed): {}", report.erased);
    println!("  unreadable (do not open): {}", report.unreadable);
    println!("  stored in clear: {}", report.plain);
    println!(
        "past their expiry day and still readable: {}",
        report.past_expiry_readable
    );
    println!(
        "without a key before their expiry day: {}",
        report.key_missing_early
    );
    if report.key_missing_early > 0 {
        bail!(
            "{} bodies have no key before their expiry day: is this the key store that \
             sealed them?",
            report.key_missing_early
        );
    }
    if let Some(tenant) = &erased {
        println!(
            "bodies of erased tenant {tenant} still readable: {}",
            report.erased_readable
        );
        if report.erased_tenant_rows == 0 {
            bail!("this database holds no body of tenant {tenant}: the check proves nothing");
        }
        if report.erased_readable > 0 {
            bail!(
                "{} bodies of tenant {tenant} still open: sealed before tenant keys existed, \
                 or its key was kept (a legal hold)",
                report.erased_readable
            );
        }
    }
    if !report.holds() {
        bail!(
            "{} bodies past their expiry day still open (no sweep since the day ended, \
             a legal hold, or stored before encryption was on)",
            report.past_expiry_readable
        );
    }
    Ok(())
}

/// Which KEKs wrap the stored keys: a rotation is done when only the
/// current one does.
async fn print_census(keys: &crate::crypto::ContentKeys) -> anyhow::Result<()> {
    let census = keys.census().await?;
    for (kek, count) in &census.by_kek {
        println!("kek {kek} ({}): {count} keys", keys.keyring().role_of(kek));
    }
    let day = |d: i32| {
        time::OffsetDateTime::from_unix_timestamp(i64::from(d) * 86_400)
            .map(|t| t.date().to_string())
            .unwrap_or_default()
    };
    match (census.content_days.first(), census.content_days.last()) {
        (Some(first), Some(last)) => println!(
            "content keys: {} days, {} to {}",
            census.content_days.len(),
            day(*first),
            day(*last)
        ),
        _ => println!("content keys: none"),
    }
    println!("file keys: {}", census.files);
    Ok(())
}
