use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = gdprd::config::Cli::parse();
    if matches!(
        cli.command,
        gdprd::config::Command::Serve(_) | gdprd::config::Command::Worker(_)
    ) {
        keep_large_blocks_mapped();
    }
    gdprd::telemetry::init(&cli.global);
    match gdprd::commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gdprd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's allocator serves a block of 128 KiB or more from a mapping of its own, given back to
/// the system when freed, but it raises that threshold to the largest such block freed so far
/// (up to 32 MiB). After one large export, the next ones' blocks came from its heaps, which keep
/// what is freed: the server's resident memory grew with every large export. The threshold is
/// fixed at its initial value instead, for the long-running commands that carry exports (each
/// block that large is then mapped and unmapped: the seed, which allocates many, keeps glibc's
/// default).
fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a parameter of the allocator, under glibc's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
