//! Configuration: command-line flags, each also readable from an environment variable
//! (`gdprd --help` and `gdprd <command> --help` list them all).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gdprd",
    version,
    about = "Self-hosted GDPR data-subject requests, speaking the Genesys Cloud GDPR API"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Most connections the pool opens to PostgreSQL.
    #[arg(
        long,
        env = "GDPRD_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before failing, in seconds.
    #[arg(
        long,
        env = "GDPRD_DB_ACQUIRE_TIMEOUT_SECS",
        default_value_t = 5,
        global = true
    )]
    pub db_acquire_timeout_secs: u64,

    /// Region (ISO 3166-1 alpha-2) assumed for phone numbers written without a country code.
    #[arg(
        long,
        env = "GDPRD_DEFAULT_REGION",
        default_value = "US",
        global = true
    )]
    pub default_region: String,

    /// Log format.
    #[arg(long, env = "GDPRD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `gdprd=debug`).
    #[arg(long, env = "GDPRD_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (and the worker, unless --no-worker).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// Fill the demo organization with deterministic synthetic people across every demo service.
    Seed(SeedArgs),
    /// Manage API clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage the subject index.
    #[command(subcommand)]
    Index(IndexCommand),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "GDPRD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub http: HttpSettings,
}

/// Settings of the HTTP API.
#[derive(Debug, Clone, Args)]
pub struct HttpSettings {
    /// Lifetime of a bearer token, in seconds.
    #[arg(long, env = "GDPRD_TOKEN_TTL_SECS", default_value_t = 86_400)]
    pub token_ttl_secs: u64,

    /// Largest body accepted by POST /api/v2/gdpr/index/subjects, in bytes.
    #[arg(long, env = "GDPRD_INDEX_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub index_max_body_bytes: usize,

    /// Most records accepted by one POST /api/v2/gdpr/index/subjects (use `gdprd index import`
    /// for larger loads).
    #[arg(long, env = "GDPRD_INDEX_MAX_RECORDS", default_value_t = 10_000)]
    pub index_max_records: usize,

    /// Largest body accepted by every other endpoint, in bytes.
    #[arg(long, env = "GDPRD_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Most results per page of a subject search (the search has no paging parameters in the
    /// Genesys contract; `pageSize` is accepted as an extension up to this bound).
    #[arg(long, env = "GDPRD_SUBJECT_SEARCH_MAX_RESULTS", default_value_t = 100)]
    pub subject_search_max_results: i64,
}

impl HttpSettings {
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            token_ttl_secs: 86_400,
            index_max_body_bytes: 16 * 1024 * 1024,
            index_max_records: 10_000,
            max_body_bytes: 256 * 1024,
            subject_search_max_results: 100,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// How many people to create.
    #[arg(long, default_value_t = 10_000)]
    pub subjects: u64,
    /// Seed of the generator: the same seed gives the same people.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Organization to fill.
    #[arg(long, default_value = crate::org::DEMO_ORG)]
    pub org: String,
    /// Seed even when the organization already holds demo data (adds to it).
    #[arg(long)]
    pub force: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create an API client and print its id and secret (shown only this once) as JSON.
    Create {
        /// A name for the client, shown as `createdBy.name` of its requests.
        #[arg(long)]
        name: String,
        /// Comma-separated permissions: gdpr:subject:view, gdpr:request:add, gdpr:request:view,
        /// gdpr:index:write.
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
        /// Organization of the client; created when new.
        #[arg(long, default_value = crate::org::DEMO_ORG)]
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Import index records from an NDJSON file (one GDPRSubject-shaped record per line) or a
    /// JSON array, all or nothing.
    Import {
        file: PathBuf,
        /// Organization whose index receives the records.
        #[arg(long, default_value = crate::org::DEMO_ORG)]
        org: String,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
}
