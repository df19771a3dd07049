//! The `chaintrace` binary: `serve` runs the server; `trace`, `traces` and
//! `demo` talk to a running one.

mod ask;
mod client;
mod demo;
mod gen;
mod keys;
mod listener;
mod mcp;
mod progress;
mod render;
mod serve;
mod sessions;
mod sql;
mod tenants;
mod transfer;

use std::ffi::{c_int, c_long};
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
    Serve(Box<serve::ServeArgs>),
    /// Show one trace as a Gantt tree.
    Trace(client::TraceArgs),
    /// List recent traces, newest first.
    Traces(client::TracesArgs),
    /// List log records (OTLP logs): by trace, span, severity, service, text.
    Logs(client::LogsArgs),
    /// Find traces with a TraceQL query.
    Search(ask::SearchArgs),
    /// Critical path, self times, parallelism what-if, tokens and cost of one trace.
    Analyze(ask::AnalyzeArgs),
    /// Compare two traces span by span: durations, self times, tokens, cost, critical paths.
    Compare(ask::CompareArgs),
    /// Sessions of a range, or one session's turns as a transcript.
    Sessions(sessions::SessionsArgs),
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
    /// Import traces from files: OTLP JSON (`.json`, `.jsonl`), Jaeger JSON, JSON spans; gzip or plain.
    Import(transfer::ImportArgs),
    /// Export traces as OTLP JSON or Jaeger JSON.
    Export(transfer::ExportArgs),
    /// Make, list and revoke API keys in the file `serve --keys` reads.
    Keys(keys::KeysArgs),
    /// MCP server for coding agents over stdio, answering from a running server.
    Mcp(mcp::McpArgs),
}

/// The allocator of every chaintrace process: glibc's malloc, free and
/// consolidation were ~25 % of ingest CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the OS.
/// Its default (10 ms) gave back the memory of every block cut at once, and
/// the next cut faulted it in again: page faults (the kernel zeroing fresh
/// pages) were ~17 % of ingest CPU. mimalloc's timer starts at the first
/// free and then returns *all* memory free at that moment, so under steady
/// load every period gives back the working set and faults it in again: at
/// 10 s a 10 M-span benchmark took 589 transparent-huge-page faults against
/// 315 with no purging, each ~7 ms of zeroing on a VM whose host backs
/// memory on first touch. A minute keeps that to about one round a minute,
/// and RSS still falls a minute after a burst.
const ALLOCATOR_PURGE_DELAY_MS: c_long = 60_000;

extern "C" {
    /// `mi_option_set` from the mimalloc library linked in as the global
    /// allocator (libmimalloc-sys builds it; this crate only declares it).
    fn mi_option_set(option: c_int, value: c_long);

    /// `mi_collect` from the same library: frees and gives back to the
    /// system the memory this thread's heap holds unused.
    fn mi_collect(force: bool);
}

/// What [`chaintrace_model::memory::release_unused`] does here: the purge
/// delay above keeps freed memory per thread for a minute, so a large
/// transient job (a 16 MiB request of empty attributes, a search over
/// thousands of traces) gives its memory back when it ends instead.
fn release_unused() {
    // SAFETY: mi_collect only walks and trims the calling thread's heap.
    unsafe { mi_collect(true) }
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;

fn tune_allocator() {
    // mimalloc reads MIMALLOC_* variables itself: a purge delay set there wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set only stores a tuning value; mimalloc reads its
    // options at any time and this one takes effect on later frees.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) }
}

fn main() -> ExitCode {
    tune_allocator();
    chaintrace_model::memory::set_release_hook(release_unused);
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
        Command::Serve(args) => serve::run(*args).await,
        Command::Trace(args) => client::trace(args).await,
        Command::Traces(args) => client::traces(args).await,
        Command::Logs(args) => client::logs(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Search(args) => ask::search(args).await,
        Command::Analyze(args) => ask::analyze(args).await,
        Command::Compare(args) => ask::compare(args).await,
        Command::Sessions(args) => sessions::sessions(args).await,
        Command::Top(args) => ask::top(args).await,
        Command::Errors(args) => ask::errors(args).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Gen(args) => gen::run(args).await,
        Command::Import(args) => transfer::import(args).await,
        Command::Export(args) => transfer::export(args).await,
        Command::Keys(args) => keys::run(args),
        Command::Mcp(args) => mcp::run(args).await,
    }
}
