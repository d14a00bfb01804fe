//! The `nixtla` binary: parses the command line and hands over to the library.

use clap::Parser;
use nixtla::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => nixtla::healthcheck::run(args).await,
        None => nixtla::serve(cli.serve).await,
    }
}
