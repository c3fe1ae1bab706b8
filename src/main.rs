//! Entry point: parse the command line, set up logging, run, turn the outcome into an exit code.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use mailreplica::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    // A watch is a service: its passes and outages are logged at info by default.
    let quiet = if matches!(cli.command, cli::Command::Watch(_)) {
        1
    } else {
        0
    };
    let level = match cli.verbose + quiet {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("mailreplica={level}")));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match cli.log_format {
        cli::args::LogFormat::Text => logs.init(),
        cli::args::LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(75);
        }
    };
    let code = runtime.block_on(cli::run(cli));
    std::process::exit(code as i32);
}
