//! `custodian export`.

use super::*;

pub(super) async fn export_training(path: &Path, args: ExportTrainingArgs) -> anyhow::Result<()> {
    let config = load(path)?;
    if config.database.max_connections < 2 {
        // The record stream holds one connection while checkpoints write.
        bail!("export needs database.max_connections of at least 2");
    }
    let parse = |s: &str| config::parse_instant(s).map_err(anyhow::Error::msg);
    let options = ExportOptions {
        since: parse(&args.since).context("--since")?,
        until: match args.until.as_deref() {
            None => None,
            Some("now") => Some(SystemClock.now()),
            Some(s) => Some(parse(s).context("--until")?),
        },
        out: args.out,
        include_exported: args.include_exported,
        overwrite: args.overwrite,
        actor: format!("operator:{}", args.actor.unwrap_or_else(login_name)),
        source: cli_source(),
        keys: crate::startup::load_content_keys(&config, None, None, false).await?,
    };
    let store = open_store(&config).await?;
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let manifest = crate::export::run(store.as_ref(), &options, &SystemClock, &bar).await?;
    println!(
        "exported {} lines ({} bytes) to {}",
        manifest.lines,
        manifest.bytes,
        options.out.display()
    );
    for (basis, n) in &manifest.exported_by_basis {
        println!("  exported  {basis}: {n}");
    }
    for (reason, n) in &manifest.skipped {
        println!("  skipped   {reason}: {n}");
    }
    for (basis, n) in &manifest.not_usable_by_basis {
        println!("  not usable {basis}: {n}");
    }
    println!(
        "manifest: {}",
        crate::export::manifest_path(&options.out).display()
    );
    Ok(())
}
