//! `custodian api-keys`: callers' API keys.

use super::*;
use crate::commands::cli::ApiKeysCommand;

pub(super) fn run(path: &Path, command: ApiKeysCommand) -> anyhow::Result<()> {
    match command {
        ApiKeysCommand::Issue => {
            let key = auth::issue_managed_key();
            println!("key:  {key}");
            println!("hash: {}", auth::managed_key_hash(&key));
            eprintln!("The key is shown once. Give it to the tenant; put the hash under its managed_keys.");
            Ok(())
        }
        ApiKeysCommand::Fingerprint => fingerprint(path),
    }
}

fn fingerprint(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let Some(secret) = config.auth.fingerprint_key.as_ref() else {
        bail!("auth.fingerprint_key is not configured");
    };
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let key = line.trim();
    if key.is_empty() {
        bail!("no key on standard input");
    }
    println!("{}", auth::fingerprint(secret, key));
    Ok(())
}
