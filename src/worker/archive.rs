//! The export archive: a ZIP with a manifest, one JSON file per service and one CSV file per
//! table (the data is tabular).

use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};
use zip::write::SimpleFileOptions;

/// One service's part of an export: its exported rows, table by table.
pub struct ServiceExport<'a> {
    pub service: &'a str,
    pub purpose: &'a str,
    pub categories: &'a [String],
    pub retention: &'a str,
    /// `{ "<table>": [ {column: value, …}, … ] }`
    pub data: &'a Value,
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
    // Each file is written straight into its compressor: the archive holds the rows once,
    // compressed, besides the service's export itself.
    for export in services {
        let json_name = format!("{}.json", export.service);
        zip.start_file(&json_name, options)?;
        serde_json::to_writer_pretty(&mut zip, export.data)?;
        let mut files = vec![json_name];
        let mut records = 0;
        for (table, rows) in export.data.as_object().into_iter().flatten() {
            let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
            if rows.is_empty() {
                continue;
            }
            records += rows.len();
            let csv_name = format!("{}/{}.csv", export.service, table);
            zip.start_file(&csv_name, options)?;
            write_csv(rows, &mut zip)?;
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
