//! The `allsource` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = allsource::cli::Cli::parse();
    cli.init_logs();
    allsource::cli::run(cli)
}
