//! `devcmd`: the server and its administration.
//!
//! - `devcmd serve`: the platform's command API over HTTP (default
//!   `127.0.0.1:8743`) on the embedded durable store (default `./devcmd-data`).
//! - `devcmd app add|list|remove`: the applications allowed to call it, kept
//!   in the same data directory. The directory belongs to one process at a
//!   time: stop the server to change apps, or declare them in the config file.

mod apps;
mod config;
mod history_sweep;
mod serve;
mod sim;
mod sim_live;
mod ticker;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// devcmd: commands for millions of IoT devices, behind the platform's /iocm/app API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API.
    Serve(ServeArgs),
    /// Manage applications (stop the server first).
    #[command(subcommand)]
    App(AppCommand),
    /// Simulate a device fleet against the core in virtual time and report.
    Sim(sim::SimArgs),
}

/// Where the state lives.
#[derive(Debug, Args)]
struct DataArgs {
    /// Data directory [default: ./devcmd-data, or the config file's].
    #[arg(long, env = "DEVCMD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, env = "DEVCMD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on [default: 127.0.0.1:8743]; port 0 picks a free one.
    #[arg(long, env = "DEVCMD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Answer business errors with honest 4xx statuses instead of the platform's 200.
    #[arg(long, env = "DEVCMD_STRICT_HTTP_STATUS")]
    strict_http_status: bool,
    /// Reach devices over MQTT through this broker (`mqtt://host:port`),
    /// with the platform's device topics. Off by default.
    #[arg(long, env = "DEVCMD_MQTT_URL")]
    mqtt_url: Option<String>,
    /// Keep everything in memory only: nothing survives a restart. For load
    /// tests and pure-model runs; apps come from the config file.
    #[arg(long, env = "DEVCMD_IN_MEMORY")]
    in_memory: bool,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "DEVCMD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "DEVCMD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Add an application; prints its secret once when generated.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// Its appId.
        id: String,
        /// Its secret [default: 32 random characters, printed once].
        #[arg(long, env = "DEVCMD_APP_SECRET")]
        secret: Option<String>,
        /// Calls per period (its own quota; with --quota-period-s).
        #[arg(long, requires = "quota_period_s")]
        quota_calls: Option<u32>,
        /// The quota's period in seconds.
        #[arg(long, requires = "quota_calls")]
        quota_period_s: Option<u32>,
        /// Apps allowed to act on its devices through ?appId= (repeatable).
        #[arg(long = "authorize")]
        authorized_apps: Vec<String>,
    },
    /// List applications (never their secrets).
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Remove an application.
    Remove {
        #[command(flatten)]
        data: DataArgs,
        /// Its appId.
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::App(cmd) => apps::run(cmd),
        Command::Sim(args) => sim::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devcmd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A failure of a command, for the user.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DataArgs {
    /// The config file (or an empty one) and the data directory it all resolves to.
    fn resolve(&self) -> Result<(config::ConfigFile, PathBuf), Failure> {
        let file = match &self.config {
            Some(p) => config::ConfigFile::load(p)?,
            None => config::ConfigFile::default(),
        };
        let dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(devcmd_store::DEFAULT_DATA_DIR));
        Ok((file, dir))
    }
}

/// Opens the store, or says clearly why not (most often: a server holds it).
fn open_store(
    dir: &std::path::Path,
) -> Result<(std::sync::Arc<devcmd_store::FjallStore>, devcmd_store::Recovered), Failure> {
    devcmd_store::FjallStore::open(dir, devcmd_store::StoreConfig::default()).map_err(|e| {
        Failure::Store(format!(
            "{e}\n(one process per data directory: is `devcmd serve` running on {}? stop it first, \
             or declare apps in the config file)",
            dir.display()
        ))
    })
}
