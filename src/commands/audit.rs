//! `custodian audit`.

use super::*;

pub(super) async fn audit_verify(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            verifier.check(entry)?;
        }
    }
    // The head row is written with every entry: a log that ends before it
    // lost its tail.
    let (head_seq, head_hash) = store.audit_head().await?;
    let (seq, hash) = verifier
        .head()
        .unwrap_or((0, crate::domain::audit::GENESIS_HASH));
    if (seq, hash) != (head_seq, head_hash.as_str()) {
        bail!("the audit log ends at entry {seq} but its head records entry {head_seq}: entries are missing");
    }
    match verifier.head() {
        Some((seq, hash)) => println!(
            "audit log intact: {} entries, head #{seq} {hash}",
            verifier.checked()
        ),
        None => println!("audit log is empty"),
    }
    Ok(())
}
