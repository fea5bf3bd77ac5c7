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

    /// The catalog of data services (TOML).
    #[arg(
        long,
        env = "GDPRD_CATALOG",
        default_value = "catalog/demo.toml",
        global = true
    )]
    pub catalog: PathBuf,
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
    /// Run the worker alone (any number of workers may share one database).
    Worker(WorkerSettings),
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

    /// Base URL clients reach this service at; result links are absolute URLs under it.
    /// Default: http:// and the listen address.
    #[arg(long, env = "GDPRD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Serve the API only; run workers separately (`gdprd worker`).
    #[arg(long, env = "GDPRD_NO_WORKER")]
    pub no_worker: bool,

    /// Connections kept for the subject search, besides the pool.
    ///
    /// A search is one short statement: more connections than PostgreSQL has cores for queue
    /// there instead of here, where the slowest searches wait longest.
    #[arg(long, env = "GDPRD_DB_SEARCH_CONNECTIONS", default_value_t = 4)]
    pub db_search_connections: u32,

    #[command(flatten)]
    pub http: HttpSettings,

    #[command(flatten)]
    pub worker: WorkerSettings,
}

impl ServeArgs {
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.listen.ip().is_unspecified() => {
                format!("http://127.0.0.1:{}", self.listen.port())
            }
            None => format!("http://{}", self.listen),
        }
    }
}

/// Settings of the worker.
#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    /// Units of work one worker runs at once: a job, or a request's jobs on gdprd's own tables
    /// together.
    #[arg(long, env = "GDPRD_WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Requests whose services all keep their tables in gdprd's database (each queued as one
    /// job, a bundle) that one unit of work runs in one transaction, when that many are waiting:
    /// a claim and a transaction for several requests instead of one each. Should any of them
    /// fail, each runs again alone.
    #[arg(long, env = "GDPRD_WORKER_BUNDLE_BATCH", default_value_t = 8)]
    pub bundle_batch: usize,

    /// Attempts of a job before it fails for good (and its request goes to ERROR).
    #[arg(long, env = "GDPRD_JOB_MAX_ATTEMPTS", default_value_t = 5)]
    pub job_max_attempts: i32,

    /// Delay before the first retry, in milliseconds; it doubles with every attempt.
    #[arg(long, env = "GDPRD_RETRY_BASE_MS", default_value_t = 1_000)]
    pub retry_base_ms: u64,

    /// Longest delay between retries, in milliseconds.
    #[arg(long, env = "GDPRD_RETRY_MAX_MS", default_value_t = 300_000)]
    pub retry_max_ms: u64,

    /// How long a worker holds a job before another may take it over, in seconds.
    #[arg(long, env = "GDPRD_JOB_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,

    /// How often an idle worker looks for work without being notified, in milliseconds.
    #[arg(long, env = "GDPRD_POLL_INTERVAL_MS", default_value_t = 1_000)]
    pub poll_interval_ms: u64,

    /// How long an export archive is kept, in seconds.
    #[arg(long, env = "GDPRD_EXPORT_TTL_SECS", default_value_t = 7 * 86_400)]
    pub export_ttl_secs: u64,

    /// Base URL HTTP data services reach gdprd at to post a job's result after answering 202
    /// (`…/api/v2/gdpr/callbacks/jobs/{jobId}`). Default with `serve`: its public URL.
    #[arg(long, env = "GDPRD_CALLBACK_BASE_URL")]
    pub callback_base_url: Option<String>,
    /// Attempts to deliver one completion notification before it fails for good.
    #[arg(long, env = "GDPRD_NOTIFY_MAX_ATTEMPTS", default_value_t = 12)]
    pub notify_max_attempts: i32,

    /// Longest pause between two attempts to deliver a notification, in seconds (the pauses
    /// double from GDPRD_RETRY_BASE_MS): receivers get about an hour and a half to come back.
    #[arg(long, env = "GDPRD_NOTIFY_RETRY_MAX_SECS", default_value_t = 1_800)]
    pub notify_retry_max_secs: u64,

    /// How long a notification receiver may take to answer, in seconds.
    #[arg(long, env = "GDPRD_NOTIFY_TIMEOUT_SECS", default_value_t = 10)]
    pub notify_timeout_secs: u64,

    #[command(flatten)]
    pub outbound: crate::outbound::GuardSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 4,
            bundle_batch: 8,
            job_max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            lease_secs: 60,
            poll_interval_ms: 1_000,
            export_ttl_secs: 7 * 86_400,
            callback_base_url: None,
            notify_max_attempts: 12,
            notify_retry_max_secs: 1_800,
            notify_timeout_secs: 10,
            outbound: crate::outbound::GuardSettings::default(),
        }
    }
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

    /// Token requests per minute and client (`POST /oauth/token`).
    #[arg(long, env = "GDPRD_RATE_TOKEN_PER_MIN", default_value_t = 300)]
    pub rate_token_per_min: u32,

    /// Reads per minute and client (subject search, request listing and polling, downloads).
    #[arg(long, env = "GDPRD_RATE_READ_PER_MIN", default_value_t = 1_200)]
    pub rate_read_per_min: u32,

    /// Request creations per minute and client (`POST /api/v2/gdpr/requests`).
    #[arg(long, env = "GDPRD_RATE_CREATE_PER_MIN", default_value_t = 120)]
    pub rate_create_per_min: u32,

    /// Index writes per minute and client.
    #[arg(long, env = "GDPRD_RATE_INDEX_PER_MIN", default_value_t = 600)]
    pub rate_index_per_min: u32,

    /// Longest time one HTTP request may take before it is answered 504, in seconds.
    #[arg(long, env = "GDPRD_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Most HTTP requests in flight at once; past it, requests are shed with 503.
    #[arg(long, env = "GDPRD_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,

    /// How long a result link stays valid, in seconds (a new one comes with every GET).
    #[arg(long, env = "GDPRD_RESULTS_URL_TTL_SECS", default_value_t = 3_600)]
    pub results_url_ttl_secs: u64,

    /// Most results per page of a subject search (the search has no paging parameters in the
    /// Genesys contract; `pageSize` is accepted as an extension up to this bound).
    #[arg(long, env = "GDPRD_SUBJECT_SEARCH_MAX_RESULTS", default_value_t = 100)]
    pub subject_search_max_results: i64,
}

impl HttpSettings {
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    pub fn rate_limits(&self) -> crate::ratelimit::Limits {
        crate::ratelimit::Limits {
            token: self.rate_token_per_min,
            read: self.rate_read_per_min,
            create: self.rate_create_per_min,
            index_write: self.rate_index_per_min,
        }
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
            results_url_ttl_secs: 3_600,
            rate_token_per_min: 300,
            rate_read_per_min: 1_200,
            rate_create_per_min: 120,
            rate_index_per_min: 600,
            request_timeout_secs: 30,
            max_in_flight: 512,
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
