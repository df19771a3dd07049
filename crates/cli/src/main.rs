//! The `chaintrace` binary: `serve` runs the server; `trace`, `traces` and
//! `demo` talk to a running one.

mod client;
mod demo;
mod render;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// chaintrace: distributed tracing for LLM chains.
#[derive(Debug, Parser)]
#[command(name = "chaintrace", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: OTLP receivers, embedded store, query API.
    Serve(serve::ServeArgs),
    /// Show one trace as a Gantt tree.
    Trace(client::TraceArgs),
    /// List recent traces, newest first.
    Traces(client::TracesArgs),
    /// Send demo LLM-chain traces to a running server over OTLP/gRPC.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAINTRACE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Trace(args) => client::trace(args).await,
        Command::Traces(args) => client::traces(args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}
