//! The data-service catalog: where each service keeps personal data, how a subject's rows are
//! found there, and what an access summary, an export, an update and an erasure do to them.
//!
//! Services are declared in a TOML file (`catalog/demo.toml` documents the format), parsed by
//! [`Catalog::load`], checked against the database by [`Catalog::validate`] and carried out by
//! [`execute`]. Adding a service is editing the file; nothing here names a service or a table.

mod error;
mod execute;
mod file;
mod phone;
mod spelling;
mod sql;
mod validate;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use serde::{Deserialize, Serialize};

pub use error::CatalogError;
pub use execute::{Action, ExecuteError, Outcome, execute, execute_unguarded, prepare};

use crate::requests::terms::TermKind;

/// Every data service gdprd answers for.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub services: Vec<Service>,
}

impl Catalog {
    /// Reads and parses a catalog file. The result is coherent in itself; whether its tables and
    /// columns exist is for [`Catalog::validate`] to say.
    pub fn load(path: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        text.parse()
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl FromStr for Catalog {
    type Err = CatalogError;

    fn from_str(text: &str) -> Result<Catalog, CatalogError> {
        file::parse(text)
    }
}

/// One place that holds personal data, made of one or more tables.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub erasure: Erasure,
    /// Why the data is processed, for the access summary.
    pub purpose: String,
    /// The categories of personal data held, for the access summary.
    pub categories: Vec<String>,
    /// How long the data is kept, for the access summary.
    pub retention: String,
    /// In declaration order: a linked table always comes after the table it links to. Empty
    /// for an HTTP service.
    pub tables: Vec<Table>,
    /// Where the service's data is reached.
    pub location: Location,
    /// The order erasure deletes the tables in (referencing tables first), from the database's
    /// foreign keys: found when the catalog is validated, or by the first erasure.
    pub delete_order: Arc<OnceLock<Vec<usize>>>,
}

/// Where a service's data is reached.
#[derive(Debug, Clone)]
pub enum Location {
    /// Tables in gdprd's own database.
    Local,
    /// Tables in another PostgreSQL database (the controller's application database).
    Database(Box<ExternalDatabase>),
    /// A system of its own, called over HTTP (docs: "HTTP data services" in the README).
    Http(HttpEndpoint),
}

/// Another PostgreSQL database, which belongs to one organization.
#[derive(Clone)]
pub struct ExternalDatabase {
    /// The organization the database's data belongs to: the service only gets that
    /// organization's requests.
    pub org_id: uuid::Uuid,
    /// Where the URL came from, for messages (`the environment variable X`, `database_url`).
    pub source: String,
    /// Holds the password: never printed.
    options: PgConnectOptions,
    pool: Arc<OnceLock<PgPool>>,
}

impl ExternalDatabase {
    /// `url` is a PostgreSQL URL; the error says what is wrong with it (never the URL).
    pub fn new(org_id: uuid::Uuid, source: String, url: &str) -> Result<ExternalDatabase, String> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|_| format!("{source} is not a valid PostgreSQL URL"))?;
        Ok(ExternalDatabase {
            org_id,
            source,
            options,
            pool: Arc::default(),
        })
    }

    /// The connection pool, opened on first use (connections are made as jobs need them).
    pub fn pool(&self) -> PgPool {
        self.pool
            .get_or_init(|| {
                crate::db::pool_options()
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_lazy_with(self.options.clone())
            })
            .clone()
    }
}

impl fmt::Debug for ExternalDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalDatabase")
            .field("org_id", &self.org_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// An HTTP data service: gdprd POSTs each job to `url`, signed with `secrets`.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    pub url: String,
    pub secrets: crate::outbound::signing::Secrets,
    /// How long one call may take.
    pub timeout: std::time::Duration,
    /// How long gdprd waits for the callback of a job the service accepted with 202 before it
    /// sends the job again.
    pub callback_timeout: std::time::Duration,
    /// The identifier types the service knows; empty for every type. Only these are sent.
    pub identifiers: Vec<TermKind>,
}

impl HttpEndpoint {
    pub fn knows(&self, kind: TermKind) -> bool {
        self.identifiers.is_empty() || self.identifiers.contains(&kind)
    }
}

impl Service {
    /// Whether the service holds data of this organization: an external database holds one
    /// organization's data; the others are shared by every organization.
    pub fn serves(&self, org_id: uuid::Uuid) -> bool {
        match &self.location {
            Location::Database(database) => database.org_id == org_id,
            Location::Local | Location::Http(_) => true,
        }
    }

    /// Whether a `GDPR_UPDATE` of this identifier type rewrites anything here.
    pub fn can_update(&self, kind: TermKind) -> bool {
        if let Location::Http(endpoint) = &self.location {
            return endpoint.knows(kind);
        }
        self.tables.iter().any(|t| {
            t.update
                .iter()
                .any(|column| t.kinds_of(column).contains(&kind))
        })
    }
}

/// What erasure does to a service's rows: fixed per service, as in Genesys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Erasure {
    Delete,
    Anonymize,
}

impl Erasure {
    pub fn as_str(self) -> &'static str {
        match self {
            Erasure::Delete => "delete",
            Erasure::Anonymize => "anonymize",
        }
    }
}

/// One table of a service.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: TableName,
    /// The column naming the organization a row belongs to (a uuid); `None` in an external
    /// database that belongs to one organization as a whole.
    pub org_column: Option<String>,
    /// The columns that identify a row within its table.
    pub key: Vec<String>,
    pub rows: Rows,
    /// How anonymization rewrites columns; empty for services that delete.
    pub anonymize: Vec<(String, Rule)>,
    pub retain: Option<Retain>,
    /// The columns an export contains; `None` for every column but the organization's.
    pub export: Option<Vec<String>>,
    /// The identifier columns a `GDPR_UPDATE` may rewrite (match columns).
    pub update: Vec<String>,
}

impl Table {
    /// The identifier types a column holds, if it is a match column.
    pub fn kinds_of(&self, column: &str) -> &[TermKind] {
        match &self.rows {
            Rows::Match(columns) => columns
                .iter()
                .find(|m| m.column == column)
                .map_or(&[], |m| m.kinds.as_slice()),
            Rows::Link(_) => &[],
        }
    }
}

/// How a table's rows of a subject are found.
#[derive(Debug, Clone)]
pub enum Rows {
    /// By the subject's identifiers in these columns.
    Match(Vec<MatchColumn>),
    /// Through the subject's rows of another table of the same service.
    Link(Link),
}

/// A column holding identifiers of one or more types (a participant's address is a phone
/// number or an email address).
#[derive(Debug, Clone)]
pub struct MatchColumn {
    pub column: String,
    pub kinds: Vec<TermKind>,
}

/// Rows whose `column` equals `parent_column` of the subject's rows of the table at index
/// `parent` of the same service.
#[derive(Debug, Clone)]
pub struct Link {
    pub column: String,
    pub parent: usize,
    pub parent_column: String,
}

/// How anonymization rewrites a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Set to NULL.
    Null,
    /// Replaced by the fixed text `[redacted]`.
    Redact,
    /// Replaced by a keyed hash of the normalized value, so that the same person always gives
    /// the same hash (consent can still be proven) while the value cannot be read back.
    Hash,
    /// Free text in which every known spelling of the subject's identifiers is replaced by
    /// `[redacted]`.
    RedactText,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::Null, Rule::Redact, Rule::Hash, Rule::RedactText];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Null => "null",
            Rule::Redact => "redact",
            Rule::Hash => "hash",
            Rule::RedactText => "redact_text",
        }
    }
}

/// Rows that erasure must leave alone while `column` (a boolean) is true, and why.
#[derive(Debug, Clone)]
pub struct Retain {
    pub column: String,
    pub reason: String,
}

/// A table's schema-qualified name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}
