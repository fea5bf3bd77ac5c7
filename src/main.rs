use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = gdprd::config::Cli::parse();
    gdprd::telemetry::init(&cli.global);
    match gdprd::commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gdprd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
