use std::process::ExitCode;

use clap::Parser;

// The data path allocates per request (headers, captures, records); mimalloc
// halves the allocator's share of CPU against glibc's malloc under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = custodian::commands::cli::Cli::parse();
    match custodian::commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
