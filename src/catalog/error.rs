/// Why a catalog was refused. gdprd does not start with a catalog it cannot trust: a typo in a
/// column name would otherwise surface as a failed erasure weeks later.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog is not valid: {0}")]
    Syntax(String),
    #[error("catalog declares no service")]
    Empty,
    /// A problem with one entry, e.g. `catalog service "consent", table demo.consent_records:
    /// unknown column "emial"`.
    #[error("catalog service {service:?}{}: {problem}", in_table(.table.as_deref()))]
    Entry {
        service: String,
        table: Option<String>,
        problem: String,
    },
    #[error("cannot check the catalog against the database: {0}")]
    Database(#[from] sqlx::Error),
}

fn in_table(table: Option<&str>) -> String {
    table.map(|t| format!(", table {t}")).unwrap_or_default()
}

/// Where in the catalog a problem is, to build [`CatalogError::Entry`].
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    pub service: &'a str,
    pub table: Option<&'a str>,
}

impl<'a> Place<'a> {
    pub fn service(service: &'a str) -> Place<'a> {
        Place {
            service,
            table: None,
        }
    }

    pub fn table(self, table: &'a str) -> Place<'a> {
        Place {
            table: Some(table),
            ..self
        }
    }

    pub fn error(self, problem: impl Into<String>) -> CatalogError {
        CatalogError::Entry {
            service: self.service.to_owned(),
            table: self.table.map(str::to_owned),
            problem: problem.into(),
        }
    }
}
