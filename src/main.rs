//! httpscope: see every HTTP exchange on a host.
//!
//! `httpscope analyze FILE...` replays captures and ETW files, `httpscope watch` follows live
//! traffic, `httpscope demo` shows both ends of a small HTTP API on 127.0.0.1. Every path runs
//! sources into one monitor loop (crate `httpscope-monitor`) and out through its exporters.

mod analyze;
mod cli;
mod config;
mod demo;
mod pipeline;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Analyze(a) => analyze::run(a),
        cli::Command::Watch(a) => watch::run(a),
        cli::Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("httpscope: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
