//! The `chaintrace` binary: `serve` runs the server; `trace`, `traces` and
//! `demo` talk to a running one.

mod ask;
mod client;
mod demo;
mod gen;
mod render;
mod serve;
mod sql;

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
    /// Find traces with a TraceQL query.
    Search(ask::SearchArgs),
    /// Critical path, self times, parallelism what-if, tokens and cost of one trace.
    Analyze(ask::AnalyzeArgs),
    /// Per-operation and per-model figures: latency percentiles, errors, critical-path share, tokens, cost.
    Top(ask::TopArgs),
    /// Errors grouped by operation and error type.
    Errors(ask::TopArgs),
    /// Run read-only SQL over the spans table.
    Sql(sql::SqlArgs),
    /// Send demo LLM-chain traces to a running server over OTLP/gRPC.
    Demo(demo::DemoArgs),
    /// Send generated LLM-chain load to any OTLP endpoint and report throughput.
    Gen(gen::GenArgs),
}

/// Caps glibc's malloc arenas. With one arena per thread (glibc's default
/// is eight per core), memory freed by one thread after a block cut stays
/// reserved in another's arena, and RSS drifts far above what the store
/// holds. Two arenas keep the server within its memory budget at no
/// measurable throughput cost here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    cap_malloc_arenas();
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
        Command::Search(args) => ask::search(args).await,
        Command::Analyze(args) => ask::analyze(args).await,
        Command::Top(args) => ask::top(args).await,
        Command::Errors(args) => ask::errors(args).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Gen(args) => gen::run(args).await,
    }
}
