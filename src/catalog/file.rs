//! The catalog file: TOML as written by people, turned into the checked model of `mod.rs`.
//! Everything that can be decided without the database is decided here, so that a mistake is
//! reported with the service and table it is in.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::{CatalogError, Place};
use super::{Catalog, Erasure, Link, MatchColumn, Retain, Rows, Rule, Service, Table, TableName};
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    name: String,
    #[serde(default = "default_org")]
    org: String,
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

fn default_org() -> String {
    "org_id".to_owned()
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
    if entry.table.is_empty() {
        return Err(place.error("declares no table"));
    }
    let mut tables: Vec<Table> = Vec::with_capacity(entry.table.len());
    for t in &entry.table {
        let table = table(place.table(&t.name), t, &tables, &entry.table, erasure)?;
        tables.push(table);
    }
    Ok(Service {
        name: entry.name,
        erasure,
        purpose: entry.purpose,
        categories: entry.categories,
        retention: entry.retention,
        tables,
    })
}

fn table(
    place: Place<'_>,
    entry: &TableEntry,
    earlier: &[Table],
    all: &[TableEntry],
    erasure: Erasure,
) -> Result<Table, CatalogError> {
    let name = table_name(&entry.name).ok_or_else(|| {
        place.error("a table is named schema.table (or table, for the public schema)")
    })?;
    if earlier.iter().any(|t| t.name == name) {
        return Err(place.error("declared twice in this service"));
    }
    if entry.org.trim().is_empty() {
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
    let anonymize = rules(place, entry, erasure, &key, &rows)?;
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
        org_column: entry.org.clone(),
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
        if key.contains(column) || column == &entry.org {
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
