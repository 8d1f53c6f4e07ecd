//! The `hookfan` binary: parses the command line and calls into the library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use hookfan::telemetry::otel;

/// `hookfan --version`: the package version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOOKFAN_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(version = VERSION, about = "A durable fan-out router for Stream webhooks", long_about = None)]
struct Cli {
    /// Path to routes.yaml.
    #[arg(
        long,
        short,
        global = true,
        env = "HOOKFAN_CONFIG",
        default_value = "routes.yaml"
    )]
    config: PathBuf,
    /// Log lines as human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Receive, store and deliver webhooks (the default).
    Serve,
    /// Validate the config and print the route table.
    Check {
        /// Take every ${VAR} as set (to a placeholder that passes validation): lint a config
        /// without its secrets, e.g. in CI.
        #[arg(long)]
        no_env: bool,
        /// Print the verdict as JSON on stdout (every error and warning with its line,
        /// column, key path and a stable code), for editors and CI annotations.
        #[arg(long)]
        json: bool,
    },
    /// Show which routes take an event and, for each that does not, the first reason why.
    /// Verifies nothing and stores nothing; exits 2 when the event or the config cannot be
    /// read.
    Explain {
        /// The event's JSON body (gzip accepted), or - for standard input.
        file: PathBuf,
        /// The request path the event is taken as posted to (for routes with `paths`).
        #[arg(long, default_value = "/")]
        path: String,
        /// The verdicts as JSON (as the admin API's POST /api/explain answers).
        #[arg(long)]
        json: bool,
    },
    /// Write a commented starter routes.yaml to --config (never over an existing file).
    Init,
    /// Print the JSON Schema (draft 2020-12) of routes.yaml, for editors and linters.
    Schema,
    /// Print a shell completion script (e.g. `hookfan completions bash > /etc/bash_completion.d/hookfan`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per subcommand into a directory.
    Man {
        /// Write hookfan.1 and a page per subcommand (hookfan-check.1, ...) here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sign a sample event (or a JSON file) with the configured secret and POST it.
    Send {
        /// An event type such as message.new, or a path to a .json file.
        event: String,
        /// Where to POST (default: the configured listen address).
        #[arg(long)]
        to: Option<String>,
    },
    /// Exit 0 when the running daemon's /readyz answers 200, else print why and exit 1
    /// (for container HEALTHCHECKs; needs no app secrets).
    Healthcheck,
    /// Show each route's backlog, progress and last error (from the running daemon).
    Status,
    /// Stop the running daemon taking webhooks (its listener closes, sources stop, /readyz
    /// turns 503) and wait until everything is delivered: exit 0 once the spool is empty,
    /// else say what remains. For scaling in and retiring a replica's volume.
    Drain {
        /// Give up (exit 1, saying what is still pending) after this long; the daemon stays
        /// drained.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Forget the pending events of a route that no longer runs (removed or disabled).
    DropPending {
        #[arg(long)]
        route: String,
    },
    /// Inspect events that failed for good.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
    /// Check or repair the spool's files (the log in <data_dir>/spool).
    #[command(subcommand)]
    Spool(SpoolCmd),
}

#[derive(Subcommand)]
enum SpoolCmd {
    /// Report every checkpoint and segment and whether hookfan would open the spool (exit 0)
    /// or refuse it (exit 1, with the error it would give). Changes nothing; may run beside
    /// a running hookfan.
    Verify {
        /// The data directory (default: data_dir from --config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// With hookfan stopped: rebuild the spool from every intact record, move the old one
    /// aside (spool.corrupt-<secs>) and write what could not be kept to
    /// <data_dir>/spool-repair-<secs>.txt.
    Repair {
        /// The data directory (default: data_dir from --config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeadLetters {
    /// List dead letters.
    List {
        #[arg(long)]
        route: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show the dead letters of one webhook id with their bodies as received.
    Show {
        #[arg(long)]
        route: Option<String>,
        /// The dead letters with this X-Webhook-Id (one per route that gave up on it).
        #[arg(long = "id")]
        id: String,
        /// One JSON object per line (the admin API's answer, the body as a string).
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back into their route's queue with a fresh attempt count.
    Replay {
        #[arg(long)]
        route: Option<String>,
        /// Only the dead letters with this X-Webhook-Id (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
    /// Delete dead letters for good.
    Drop {
        #[arg(long)]
        route: Option<String>,
        /// Only the dead letters with this X-Webhook-Id (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Traces are the daemon's alone; the exporter starts before the log layer that feeds it.
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let traces = if serving {
        // The config's `tracing:` block; a config that does not load is serve's to report.
        let block = hookfan::config::load(&cli.config)
            .ok()
            .and_then(|c| c.tracing().cloned());
        match otel::wanted(|name| std::env::var(name).ok(), block.as_ref())
            .and_then(|w| otel::Tracing::start(&w))
        {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("hookfan: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let (tracing, tracer) = traces.unzip();
    if tracing.is_some() {
        // The recorder first: a counter taken before it exists counts nowhere.
        hookfan::telemetry::metrics_handle();
        otel::register_metrics();
    }
    hookfan::telemetry::init_logging(
        match cli.log_format {
            LogFormat::Text => hookfan::telemetry::LogFormat::Text,
            LogFormat::Json => hookfan::telemetry::LogFormat::Json,
        },
        tracer,
    );
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Check { no_env, json } => cli::check(&cli.config, no_env, json),
        Command::Init => cli::init(&cli.config),
        Command::Explain { file, path, json } => {
            if let Err(e) = cli::explain(&cli.config, &file, &path, json) {
                eprintln!("hookfan: {e:#}");
                return ExitCode::from(2);
            }
            Ok(())
        }
        Command::Schema => cli::schema(),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "hookfan",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { dir: None } => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(anyhow::Error::from),
        Command::Man { dir: Some(dir) } => clap_mangen::generate_to(Cli::command(), &dir)
            .map_err(|e| anyhow::anyhow!("cannot write man pages into {}: {e}", dir.display())),
        Command::DeadLetters(DeadLetters::List { route, json }) => {
            runtime().block_on(cli::dead_letters_list(&cli.config, route.as_deref(), json))
        }
        Command::DeadLetters(DeadLetters::Show { route, id, json }) => runtime().block_on(
            cli::dead_letters_show(&cli.config, route.as_deref(), &id, json),
        ),
        Command::Healthcheck => runtime().block_on(cli::healthcheck(&cli.config)),
        Command::Status => runtime().block_on(cli::status(&cli.config)),
        Command::Drain { timeout } => runtime().block_on(cli::drain(&cli.config, timeout)),
        Command::DropPending { route } => {
            runtime().block_on(cli::drop_pending(&cli.config, &route))
        }
        Command::DeadLetters(DeadLetters::Replay { route, ids }) => {
            runtime().block_on(cli::dead_letters_act(
                &cli.config,
                hookfan::spool::DeadLetterAction::Replay,
                route.as_deref(),
                ids,
            ))
        }
        Command::DeadLetters(DeadLetters::Drop { route, ids }) => {
            runtime().block_on(cli::dead_letters_act(
                &cli.config,
                hookfan::spool::DeadLetterAction::Drop,
                route.as_deref(),
                ids,
            ))
        }
        Command::Spool(SpoolCmd::Verify { data_dir, json }) => {
            cli::spool_verify(&cli.config, data_dir.as_deref(), json)
        }
        Command::Spool(SpoolCmd::Repair { data_dir }) => {
            cli::spool_repair(&cli.config, data_dir.as_deref())
        }
        Command::Serve => runtime().block_on(cli::serve(&cli.config)),
        Command::Send { event, to } => {
            runtime().block_on(cli::send(&cli.config, &event, to.as_deref()))
        }
    };
    if let Some(tracing) = tracing {
        tracing.shutdown(Duration::from_secs(1));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookfan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
