//! The export archive: a ZIP with a manifest, one JSON file per service and one CSV file per
//! table (the data is tabular).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use zip::write::SimpleFileOptions;

/// One service's part of an export: its exported rows, table by table.
pub struct ServiceExport<'a> {
    pub service: &'a str,
    pub purpose: &'a str,
    pub categories: &'a [String],
    pub retention: &'a str,
    /// `{ "<table>": [ {column: value, …}, … ] }`, as JSON text.
    pub data: &'a RawValue,
}

/// A service's tables, each kept as its JSON text until it is written: only one table's rows
/// are ever parsed at a time. Serializes as the object of all of them.
struct Tables<'a>(BTreeMap<String, &'a RawValue>);

impl Tables<'_> {
    /// The rows of one table (anything but a list of rows is no rows).
    fn rows(raw: &RawValue) -> serde_json::Result<Vec<Value>> {
        Ok(match serde_json::from_str(raw.get())? {
            Value::Array(rows) => rows,
            _ => Vec::new(),
        })
    }
}

impl Serialize for Tables<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (table, raw) in &self.0 {
            let rows: Value = serde_json::from_str(raw.get()).map_err(S::Error::custom)?;
            map.serialize_entry(table, &rows)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    request_id: String,
    request_type: &'a str,
    created_date: &'a str,
    generated_date: String,
    format: &'static str,
    services: Vec<ManifestService<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestService<'a> {
    service: &'a str,
    purpose: &'a str,
    categories: &'a [String],
    retention: &'a str,
    records: usize,
    files: Vec<String>,
}

pub fn build(
    request_id: uuid::Uuid,
    request_type: &str,
    created_date: &str,
    services: &[ServiceExport<'_>],
) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip_time(chrono::Utc::now()));
    let mut manifest = Manifest {
        request_id: request_id.to_string(),
        request_type,
        created_date,
        generated_date: crate::requests::model::timestamp(chrono::Utc::now()),
        format: "gdprd export 1: one JSON file per service, one CSV file per table",
        services: Vec::new(),
    };
    // Each file is written straight into its compressor, and each table's rows are parsed for
    // its JSON and again for its CSV, one table at a time: besides the export's text, the
    // archive holds one table's rows at most.
    for export in services {
        let tables = Tables(
            serde_json::from_str(export.data.get())
                .with_context(|| format!("the export of {} is not an object", export.service))?,
        );
        let json_name = format!("{}.json", export.service);
        zip.start_file(&json_name, options)?;
        serde_json::to_writer_pretty(&mut zip, &tables)?;
        let mut files = vec![json_name];
        let mut records = 0;
        for (table, raw) in &tables.0 {
            let rows = Tables::rows(raw)?;
            if rows.is_empty() {
                continue;
            }
            records += rows.len();
            let csv_name = format!("{}/{}.csv", export.service, table);
            zip.start_file(&csv_name, options)?;
            write_csv(&rows, &mut zip)?;
            files.push(csv_name);
        }
        manifest.services.push(ManifestService {
            service: export.service,
            purpose: export.purpose,
            categories: export.categories,
            retention: export.retention,
            records,
            files,
        });
    }
    zip.start_file("manifest.json", options)?;
    serde_json::to_writer_pretty(&mut zip, &manifest)?;
    Ok(zip.finish()?.into_inner())
}

/// The archive's file times; ZIP stores local date and time without a zone, we store UTC.
fn zip_time(now: chrono::DateTime<chrono::Utc>) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    zip::DateTime::from_date_and_time(
        now.year().clamp(1980, 2107) as u16,
        now.month() as u8,
        now.day() as u8,
        now.hour() as u8,
        now.minute() as u8,
        now.second() as u8,
    )
    .unwrap_or_default()
}

/// Writes rows of JSON objects as CSV into `to`: the columns of the first row (then any others,
/// in order), text as it is, other values as JSON.
fn write_csv(rows: &[Value], to: impl Write) -> anyhow::Result<()> {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        for key in row.as_object().map(Map::keys).into_iter().flatten() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let mut out = csv::Writer::from_writer(to);
    out.write_record(&columns)?;
    for row in rows {
        for column in &columns {
            match row.get(column) {
                None | Some(Value::Null) => out.write_field("")?,
                Some(Value::String(s)) => out.write_field(s)?,
                Some(other) => out.write_field(other.to_string())?,
            }
        }
        out.write_record(None::<&[u8]>)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_takes_every_column_and_quotes_what_needs_it() {
        let rows = vec![
            json!({"id": 1, "name": "Ana, García"}),
            json!({"id": 2, "email": "x@example.com"}),
        ];
        let mut csv = Vec::new();
        write_csv(&rows, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv, "id,name,email\n1,\"Ana, García\",\n2,,x@example.com\n");
    }
}
