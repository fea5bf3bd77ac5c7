//! The export archive: a ZIP with a manifest, one JSON file per service and one CSV file per
//! table (the data is tabular).
//!
//! A subject's export can hold tens of thousands of rows, so the archive never holds them as
//! values: each file is written into its compressor as the export's text is read, one row at a
//! time. Besides the export's text and the compressed archive, it holds one row at most.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use anyhow::Context;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::SerializeMap;
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

/// A service's tables, each kept as its JSON text. Serializes as the object of all of them,
/// each table transcoded from its text as it is written, never parsed as a whole.
struct Tables<'a>(BTreeMap<String, &'a RawValue>);

impl Serialize for Tables<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (table, raw) in &self.0 {
            let mut rows = serde_json::Deserializer::from_str(raw.get());
            map.serialize_entry(table, &serde_transcode::Transcoder::new(&mut rows))?;
        }
        map.end()
    }
}

/// Calls `each` with every row of a table's JSON text, in order, one parsed at a time, and
/// returns how many there were. A table is a list of rows; `null` is no rows.
fn for_each_row(
    raw: &RawValue,
    mut each: impl FnMut(Value) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    struct Rows<'f, F> {
        each: &'f mut F,
        /// What stopped `each`, kept whole (serde would keep its message only).
        failed: &'f mut Option<anyhow::Error>,
    }

    impl<'de, F: FnMut(Value) -> anyhow::Result<()>> Visitor<'de> for Rows<'_, F> {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of rows")
        }

        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut rows: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(row) = rows.next_element::<Value>()? {
                if let Err(e) = (self.each)(row) {
                    *self.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
                n += 1;
            }
            Ok(n)
        }
    }

    impl<'de, F: FnMut(Value) -> anyhow::Result<()>> DeserializeSeed<'de> for Rows<'_, F> {
        type Value = usize;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }

    let mut failed = None;
    let mut text = serde_json::Deserializer::from_str(raw.get());
    let rows = Rows {
        each: &mut each,
        failed: &mut failed,
    };
    let parsed = rows
        .deserialize(&mut text)
        .and_then(|n| text.end().map(|()| n));
    match (parsed, failed) {
        (_, Some(e)) => Err(e),
        (Ok(n), None) => Ok(n),
        (Err(e), None) => Err(not_what_it_should_be("not a list of rows", &e)),
    }
}

/// The error of an export that is not what it should be, saying where and never what: serde's
/// own message may quote a value, and an export's values are the subject's data.
fn not_what_it_should_be(what: &str, e: &serde_json::Error) -> anyhow::Error {
    anyhow::anyhow!("{what} (line {}, column {})", e.line(), e.column())
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
    for export in services {
        let tables = Tables(serde_json::from_str(export.data.get()).map_err(|e| {
            let what = format!(
                "the export of {} is not an object of tables",
                export.service
            );
            not_what_it_should_be(&what, &e)
        })?);
        let json_name = format!("{}.json", export.service);
        zip.start_file(&json_name, options)?;
        serde_json::to_writer_pretty(&mut zip, &tables)
            .with_context(|| format!("the export of {} written as JSON", export.service))?;
        let mut files = vec![json_name];
        let mut records = 0;
        for (table, raw) in &tables.0 {
            let which = || format!("the export of {}, table {table}", export.service);
            let columns = Columns::of(raw).with_context(which)?;
            if columns.rows == 0 {
                continue;
            }
            records += columns.rows;
            let csv_name = format!("{}/{}.csv", export.service, table);
            zip.start_file(&csv_name, options)?;
            write_csv(&columns.names, raw, &mut zip).with_context(which)?;
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

/// A table's CSV columns: those of its first row, then any others, in order of appearance.
struct Columns {
    names: Vec<String>,
    rows: usize,
}

impl Columns {
    fn of(raw: &RawValue) -> anyhow::Result<Columns> {
        let mut names: Vec<String> = Vec::new();
        let rows = for_each_row(raw, |row| {
            for key in row.as_object().map(Map::keys).into_iter().flatten() {
                if !names.contains(key) {
                    names.push(key.clone());
                }
            }
            Ok(())
        })?;
        Ok(Columns { names, rows })
    }
}

/// Writes a table's rows of JSON objects as CSV into `to` under `columns`: text as it is, other
/// values as JSON.
fn write_csv(columns: &[String], raw: &RawValue, to: impl Write) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(to);
    out.write_record(columns)?;
    for_each_row(raw, |row| {
        for column in columns {
            match row.get(column) {
                None | Some(Value::Null) => out.write_field("")?,
                Some(Value::String(s)) => out.write_field(s)?,
                Some(other) => out.write_field(other.to_string())?,
            }
        }
        out.write_record(None::<&[u8]>)?;
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn csv_of(text: &str) -> String {
        let rows = raw(text);
        let columns = Columns::of(&rows).unwrap();
        let mut csv = Vec::new();
        write_csv(&columns.names, &rows, &mut csv).unwrap();
        String::from_utf8(csv).unwrap()
    }

    /// The archive of one service, "crm", exporting `data`.
    fn crm_archive(data: &str) -> anyhow::Result<Vec<u8>> {
        let data = raw(data);
        let export = ServiceExport {
            service: "crm",
            purpose: "p",
            categories: &[],
            retention: "r",
            data: &data,
        };
        build(
            uuid::Uuid::nil(),
            "GDPR_EXPORT",
            "2026-01-01T00:00:00.000Z",
            &[export],
        )
    }

    #[test]
    fn csv_takes_every_column_and_quotes_what_needs_it() {
        let csv =
            csv_of(r#"[{"id": 1, "name": "Ana, García"}, {"id": 2, "email": "x@example.com"}]"#);
        assert_eq!(csv, "id,name,email\n1,\"Ana, García\",\n2,,x@example.com\n");
    }

    #[test]
    fn csv_writes_values_that_are_not_text_as_json() {
        let csv = csv_of(r#"[{"tags": ["a", "b"], "n": 1.5, "ok": true, "gone": null}]"#);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let mut sorted = header.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["gone", "n", "ok", "tags"]);
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(lines.next().unwrap().as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        let field = |name: &str| &record[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(field("tags"), r#"["a","b"]"#);
        assert_eq!(field("n"), "1.5");
        assert_eq!(field("ok"), "true");
        assert_eq!(field("gone"), "");
    }

    #[test]
    fn a_table_that_is_not_a_list_of_rows_is_an_error_naming_the_table_never_its_data() {
        let err = crm_archive(r#"{"demo.t": "ana@example.com"}"#).unwrap_err();
        let shown = format!("{err:#}");
        assert!(shown.contains("crm, table demo.t"), "{shown}");
        assert!(shown.contains("not a list of rows"), "{shown}");
        assert!(!shown.contains("ana@example.com"), "{shown}");
    }

    #[test]
    fn an_export_that_is_not_an_object_of_tables_is_an_error_never_showing_its_data() {
        let err = crm_archive(r#"["ana@example.com"]"#).unwrap_err();
        let shown = format!("{err:#}");
        assert!(
            shown.contains("the export of crm is not an object of tables"),
            "{shown}"
        );
        assert!(!shown.contains("ana@example.com"), "{shown}");
    }

    /// The archive as a user unpacks it: every file, its JSON the rows in order, one CSV line
    /// per row, and the manifest's count; a table of no rows gets no CSV file.
    #[test]
    fn an_archive_holds_every_row_as_json_and_as_csv() {
        let rows: Vec<String> = (0..2_000)
            .map(|i| format!(r#"{{"id": {i}, "note": "line {i}, with a comma"}}"#))
            .collect();
        let bytes = crm_archive(&format!(
            r#"{{"demo.t": [{}], "demo.empty": []}}"#,
            rows.join(", ")
        ))
        .unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort_unstable();
        assert_eq!(names, ["crm.json", "crm/demo.t.csv", "manifest.json"]);
        let read = |zip: &mut zip::ZipArchive<_>, name: &str| {
            let mut text = String::new();
            zip.by_name(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        let json: Value = serde_json::from_str(&read(&mut zip, "crm.json")).unwrap();
        assert_eq!(json["demo.empty"], Value::Array(Vec::new()));
        let exported = json["demo.t"].as_array().unwrap();
        assert_eq!(exported.len(), 2_000);
        assert_eq!(exported[1_999]["note"], "line 1999, with a comma");
        let csv = read(&mut zip, "crm/demo.t.csv");
        assert_eq!(csv.lines().count(), 2_001);
        assert_eq!(
            csv.lines().last().unwrap(),
            "1999,\"line 1999, with a comma\""
        );
        let manifest: Value = serde_json::from_str(&read(&mut zip, "manifest.json")).unwrap();
        assert_eq!(manifest["services"][0]["records"], 2_000);
        assert_eq!(manifest["services"][0]["files"][1], "crm/demo.t.csv");
    }
}
