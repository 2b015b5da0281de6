//! `custodian audit`.

use super::*;

pub(super) async fn audit_verify(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    match crate::attest::verify_chain(store.as_ref()).await? {
        Err(why) => bail!("{why}"),
        Ok((0, _, _)) => println!("audit log is empty"),
        Ok((entries, seq, hash)) => {
            println!("audit log intact: {entries} entries, head #{seq} {hash}")
        }
    }
    Ok(())
}
