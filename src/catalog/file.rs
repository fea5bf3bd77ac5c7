//! The catalog file: TOML as written by people, turned into the checked model of `mod.rs`.
//! Everything that can be decided without the database is decided here, so that a mistake is
//! reported with the service and table it is in.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::{CatalogError, Place};
use std::time::Duration;

use super::{
    Catalog, Erasure, ExternalDatabase, HttpEndpoint, Link, Location, MatchColumn, Retain, Rows,
    Rule, Service, Table, TableName,
};
use crate::outbound::signing::Secrets;
use crate::requests::terms::TermKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: String,
    erasure: String,
    purpose: String,
    categories: Vec<String>,
    retention: String,
    #[serde(default)]
    table: Vec<TableEntry>,
    organization: Option<String>,
    database_url: Option<String>,
    database_url_env: Option<String>,
    http: Option<HttpEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpEntry {
    url: String,
    secrets: Option<Vec<String>>,
    secret_env: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_callback_timeout")]
    callback_timeout_secs: u64,
    #[serde(default)]
    identifiers: Vec<String>,
}

fn default_timeout() -> u64 {
    10
}

fn default_callback_timeout() -> u64 {
    3_600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    name: String,
    org: Option<String>,
    key: Option<OneOrMany>,
    #[serde(rename = "match")]
    matches: Option<BTreeMap<String, OneOrMany>>,
    link: Option<LinkEntry>,
    #[serde(default)]
    anonymize: BTreeMap<String, String>,
    retain_when: Option<String>,
    retain_reason: Option<String>,
    export: Option<Vec<String>>,
    #[serde(default)]
    update: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkEntry {
    column: String,
    parent: String,
    parent_column: String,
}

/// `key = "id"` and `key = ["org_id", "cookie_id"]` alike; so for identifier types.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn clone_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The value of `{what}` or of the environment variable `{what}_env`, whichever is given.
fn value_or_env(
    place: Place<'_>,
    what: &str,
    value: &Option<String>,
    env: &Option<String>,
) -> Result<Option<(String, String)>, CatalogError> {
    match (value, env) {
        (Some(_), Some(_)) => Err(place.error(format!("give {what} or {what}_env, not both"))),
        (Some(value), None) => Ok(Some((what.to_owned(), value.clone()))),
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => {
                Ok(Some((format!("the environment variable {var}"), value)))
            }
            _ => Err(place.error(format!(
                "{what}_env names the environment variable {var}, which is not set"
            ))),
        },
        (None, None) => Ok(None),
    }
}

fn location(place: Place<'_>, entry: &ServiceEntry) -> Result<Location, CatalogError> {
    let organization = match &entry.organization {
        Some(id) => Some(uuid::Uuid::parse_str(id.trim()).map_err(|_| {
            place.error(format!(
                "organization {id:?} is not an organization id (a uuid, as `gdprd clients \
                 create` prints it)"
            ))
        })?),
        None => None,
    };
    let database = value_or_env(
        place,
        "database_url",
        &entry.database_url,
        &entry.database_url_env,
    )?;
    match (&entry.http, database) {
        (Some(_), Some(_)) => {
            Err(place.error("a service is either `http` or has a database_url, not both"))
        }
        (Some(http), None) => {
            if !entry.table.is_empty() {
                return Err(place
                    .error("an HTTP service declares no table: the service finds its own rows"));
            }
            if organization.is_some() {
                return Err(place.error("organization is for services with a database_url"));
            }
            Ok(Location::Http(endpoint(place, http)?))
        }
        (None, Some((source, url))) => {
            let org_id = organization.ok_or_else(|| {
                place.error(
                    "a service with a database_url needs `organization`: the id of the \
                     organization whose data that database holds",
                )
            })?;
            let database =
                ExternalDatabase::new(org_id, source, &url).map_err(|e| place.error(e))?;
            Ok(Location::Database(Box::new(database)))
        }
        (None, None) => {
            if organization.is_some() {
                return Err(place.error("organization is for services with a database_url"));
            }
            Ok(Location::Local)
        }
    }
}

fn endpoint(place: Place<'_>, http: &HttpEntry) -> Result<HttpEndpoint, CatalogError> {
    if http.url.trim().is_empty() {
        return Err(place.error("http.url is empty"));
    }
    let secrets = match (&http.secrets, &http.secret_env) {
        (Some(_), Some(_)) => {
            return Err(place.error("give http.secrets or http.secret_env, not both"));
        }
        (Some(list), None) => Secrets::from_list(list.clone()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) => Secrets::parse(&value),
            Err(_) => {
                return Err(place.error(format!(
                    "http.secret_env names the environment variable {var}, which is not set"
                )));
            }
        },
        (None, None) => {
            return Err(place.error(
                "an HTTP service needs a signing secret: http.secret_env (or http.secrets), \
                 whsec_ followed by base64",
            ));
        }
    }
    .map_err(|e| place.error(format!("http: {e}")))?;
    if http.timeout_secs == 0 || http.callback_timeout_secs == 0 {
        return Err(place.error("http timeouts are whole seconds above zero"));
    }
    let identifiers = http
        .identifiers
        .iter()
        .map(|k| {
            TermKind::parse(k).ok_or_else(|| {
                let known = TermKind::ALL.map(TermKind::as_str).join(", ");
                place.error(format!(
                    "unknown identifier type {k:?} in http.identifiers (known: {known})"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpEndpoint {
        url: http.url.trim().to_owned(),
        secrets,
        timeout: Duration::from_secs(http.timeout_secs),
        callback_timeout: Duration::from_secs(http.callback_timeout_secs),
        identifiers,
    })
}

pub(super) fn parse(text: &str) -> Result<Catalog, CatalogError> {
    let file: File = toml::from_str(text).map_err(|e| CatalogError::Syntax(e.to_string()))?;
    if file.service.is_empty() {
        return Err(CatalogError::Empty);
    }
    let mut services: Vec<Service> = Vec::with_capacity(file.service.len());
    for entry in file.service {
        if services.iter().any(|s| s.name == entry.name) {
            return Err(Place::service(&entry.name).error("declared twice"));
        }
        services.push(service(entry)?);
    }
    Ok(Catalog { services })
}

fn service(entry: ServiceEntry) -> Result<Service, CatalogError> {
    let place = Place::service(&entry.name);
    if entry.name.trim().is_empty() {
        return Err(place.error("a service needs a name"));
    }
    let erasure = match entry.erasure.as_str() {
        "delete" => Erasure::Delete,
        "anonymize" => Erasure::Anonymize,
        other => {
            return Err(place.error(format!(
                "unknown erasure {other:?} (use \"delete\" or \"anonymize\")"
            )));
        }
    };
    for (field, value) in [("purpose", &entry.purpose), ("retention", &entry.retention)] {
        if value.trim().is_empty() {
            return Err(place.error(format!("{field} is empty: the access summary shows it")));
        }
    }
    if entry.categories.is_empty() {
        return Err(place.error("categories is empty: the access summary shows them"));
    }
    let location = location(place, &entry)?;
    if entry.table.is_empty() && !matches!(location, Location::Http(_)) {
        return Err(place.error("declares no table"));
    }
    let default_org = match location {
        Location::Local => Some("org_id"),
        Location::Database(_) | Location::Http(_) => None,
    };
    let mut tables: Vec<Table> = Vec::with_capacity(entry.table.len());
    for t in &entry.table {
        let table = table(
            place.table(&t.name),
            t,
            &tables,
            &entry.table,
            erasure,
            default_org,
        )?;
        tables.push(table);
    }
    Ok(Service {
        name: entry.name,
        erasure,
        purpose: entry.purpose,
        categories: entry.categories,
        retention: entry.retention,
        tables,
        location,
        delete_order: Default::default(),
    })
}

fn table(
    place: Place<'_>,
    entry: &TableEntry,
    earlier: &[Table],
    all: &[TableEntry],
    erasure: Erasure,
    default_org: Option<&str>,
) -> Result<Table, CatalogError> {
    let name = table_name(&entry.name).ok_or_else(|| {
        place.error("a table is named schema.table (or table, for the public schema)")
    })?;
    if earlier.iter().any(|t| t.name == name) {
        return Err(place.error("declared twice in this service"));
    }
    let org_column = entry.org.as_deref().or(default_org).map(str::to_owned);
    if org_column.as_ref().is_some_and(|c| c.trim().is_empty()) {
        return Err(place.error("org names no column"));
    }
    let key = entry
        .key
        .as_ref()
        .map_or_else(|| vec!["id".to_owned()], |k| k.clone_vec());
    if key.is_empty() {
        return Err(place.error("key names no column"));
    }
    let rows = match (&entry.matches, &entry.link) {
        (Some(_), Some(_)) => {
            return Err(place.error("declare either `match` or `link`, not both"));
        }
        (None, None) => {
            return Err(place.error(
                "declare `match` (the columns holding identifiers) or `link` (rows reached \
                 through another table of the service)",
            ));
        }
        (Some(columns), None) => Rows::Match(match_columns(place, columns)?),
        (None, Some(link)) => Rows::Link(link_to(place, link, earlier, all)?),
    };
    let anonymize = rules(place, entry, erasure, &key, org_column.as_deref(), &rows)?;
    let retain = match (&entry.retain_when, &entry.retain_reason) {
        (None, None) => None,
        (Some(column), Some(reason)) if !reason.trim().is_empty() => Some(Retain {
            column: column.clone(),
            reason: reason.clone(),
        }),
        (Some(_), _) => {
            return Err(place
                .error("retain_when needs retain_reason: the subject is told why rows are kept"));
        }
        (None, Some(_)) => {
            return Err(place.error("retain_reason without retain_when"));
        }
    };
    if entry.export.as_ref().is_some_and(Vec::is_empty) {
        return Err(place
            .error("export is empty: leave it out to export every column but the organization's"));
    }
    for column in &entry.update {
        let matched = matches!(&rows, Rows::Match(m) if m.iter().any(|m| &m.column == column));
        if !matched || key.contains(column) {
            return Err(place.error(format!(
                "update column {column:?} is not a match column (only identifiers are rewritten)"
            )));
        }
    }
    Ok(Table {
        name,
        org_column,
        key,
        rows,
        anonymize,
        retain,
        export: entry.export.clone(),
        update: entry.update.clone(),
    })
}

fn table_name(written: &str) -> Option<TableName> {
    let (schema, name) = written.split_once('.').unwrap_or(("public", written));
    let ok = |s: &str| !s.is_empty() && s.trim() == s;
    (ok(schema) && ok(name)).then(|| TableName {
        schema: schema.to_owned(),
        name: name.to_owned(),
    })
}

fn match_columns(
    place: Place<'_>,
    columns: &BTreeMap<String, OneOrMany>,
) -> Result<Vec<MatchColumn>, CatalogError> {
    if columns.is_empty() {
        return Err(place.error("match names no column"));
    }
    columns
        .iter()
        .map(|(column, kinds)| {
            let kinds = kinds.clone_vec();
            if kinds.is_empty() {
                return Err(place.error(format!("match column {column:?} has no identifier type")));
            }
            let kinds = kinds
                .iter()
                .map(|k| {
                    TermKind::parse(k).ok_or_else(|| {
                        let known = TermKind::ALL.map(TermKind::as_str).join(", ");
                        place.error(format!(
                            "unknown identifier type {k:?} for column {column:?} (known: {known})"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(MatchColumn {
                column: column.clone(),
                kinds,
            })
        })
        .collect()
}

fn link_to(
    place: Place<'_>,
    link: &LinkEntry,
    earlier: &[Table],
    all: &[TableEntry],
) -> Result<Link, CatalogError> {
    let parent_name = table_name(&link.parent);
    let parent = parent_name
        .as_ref()
        .and_then(|p| earlier.iter().position(|t| &t.name == p));
    match parent {
        Some(parent) => Ok(Link {
            column: link.column.clone(),
            parent,
            parent_column: link.parent_column.clone(),
        }),
        None if parent_name.is_some() && all.iter().any(|t| table_name(&t.name) == parent_name) => {
            Err(place.error(format!(
                "links to {}, which is declared after it: declare a table before the tables \
                 linked to it",
                link.parent
            )))
        }
        None => Err(place.error(format!(
            "links to {}, which is not a table of this service",
            link.parent
        ))),
    }
}

fn rules(
    place: Place<'_>,
    entry: &TableEntry,
    erasure: Erasure,
    key: &[String],
    org_column: Option<&str>,
    rows: &Rows,
) -> Result<Vec<(String, Rule)>, CatalogError> {
    if erasure == Erasure::Delete && !entry.anonymize.is_empty() {
        return Err(place.error(
            "anonymize rules on a service whose erasure is \"delete\" (its rows are deleted \
             whole)",
        ));
    }
    let mut rules = Vec::with_capacity(entry.anonymize.len());
    for (column, rule) in &entry.anonymize {
        let rule = Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == rule)
            .ok_or_else(|| {
                let known = Rule::ALL.map(Rule::as_str).join(", ");
                place.error(format!(
                    "unknown anonymize rule {rule:?} for column {column:?} (known: {known})"
                ))
            })?;
        if key.contains(column) || org_column == Some(column.as_str()) {
            return Err(place.error(format!(
                "cannot anonymize {column:?}: key and organization columns identify the row"
            )));
        }
        rules.push((column.clone(), rule));
    }
    if let (Erasure::Anonymize, Rows::Match(columns)) = (erasure, rows) {
        for m in columns.iter().filter(|m| !key.contains(&m.column)) {
            match rules.iter().find(|(c, _)| c == &m.column) {
                None => {
                    return Err(place.error(format!(
                        "match column {:?} has no anonymize rule: anonymized rows would still \
                         carry the subject's identifier",
                        m.column
                    )));
                }
                Some((_, Rule::RedactText)) => {
                    return Err(place.error(format!(
                        "match column {:?}: redact_text is for free text; use null, redact or \
                         hash",
                        m.column
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(rules)
}
