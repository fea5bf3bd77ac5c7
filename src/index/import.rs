//! Reading index records from JSON: NDJSON (one record per line) or a JSON array, with errors
//! that name the line (or array element) and the field. Shared by the HTTP endpoint and
//! `gdprd index import`.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::normalize::Normalizer;
use super::record::{IndexRecord, RecordKey};
use super::store::{StagedBatch, Staging};
use crate::wire::{GdprSubject, JsonError, parse_json};

/// What is wrong with one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {field}: {message}")]
pub struct RecordError {
    /// `line 12` for NDJSON, `record 12` for a JSON array (both 1-based).
    pub location: String,
    pub field: String,
    pub message: String,
}

/// Parses one NDJSON line (1-based `line`).
pub fn parse_line(line: usize, text: &str, n: &Normalizer) -> Result<IndexRecord, RecordError> {
    parse_record(format!("line {line}"), parse_json(text.as_bytes()), n)
}

/// Parses a JSON array of records.
pub fn parse_array(body: &[u8], n: &Normalizer) -> Result<Vec<IndexRecord>, RecordError> {
    let values: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).map_err(|e| RecordError {
            location: format!("line {}", e.line()),
            field: "body".into(),
            message: format!("not a JSON array of index records: {e}"),
        })?;
    values
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let subject = parse_json(raw.get().as_bytes());
            parse_record(format!("record {}", i + 1), subject, n)
        })
        .collect()
}

/// Parses an NDJSON body; blank lines are skipped.
pub fn parse_ndjson(body: &str, n: &Normalizer) -> Result<Vec<IndexRecord>, RecordError> {
    body.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_line(i + 1, line, n))
        .collect()
}

fn parse_record(
    location: String,
    subject: Result<GdprSubject, JsonError>,
    n: &Normalizer,
) -> Result<IndexRecord, RecordError> {
    let subject = subject.map_err(|e| match e {
        JsonError::Syntax(message) => RecordError {
            location: location.clone(),
            field: "record".into(),
            message: format!("not valid JSON: {message}"),
        },
        JsonError::Field { path, message } => RecordError {
            location: location.clone(),
            field: if path == "." { "record".into() } else { path },
            message,
        },
    })?;
    IndexRecord::parse(subject, n).map_err(|e| RecordError {
        location,
        field: e.field,
        message: e.message,
    })
}

/// Tracks record keys of one batch so that a record given twice is reported with both places.
#[derive(Default)]
pub struct DuplicateCheck {
    seen: HashMap<RecordKey, String>,
}

impl DuplicateCheck {
    pub fn check(&mut self, location: &str, record: &IndexRecord) -> Result<(), RecordError> {
        if let Some(first) = self.seen.insert(record.key.clone(), location.to_owned()) {
            return Err(RecordError {
                location: location.to_owned(),
                field: "subject".into(),
                message: format!(
                    "the same {} is also given at {first}",
                    record.key.kind.as_str()
                ),
            });
        }
        Ok(())
    }
}

/// Imports an NDJSON (or JSON array) file into an organization's index, all or nothing: one
/// transaction, COPY in batches, one set-based merge. The file is read, parsed and encoded on a
/// thread of its own, a batch or two ahead of COPY. Returns how many records were written.
pub async fn import_file(
    pool: &PgPool,
    org_id: Uuid,
    path: &Path,
    n: &Normalizer,
    show_progress: bool,
) -> anyhow::Result<u64> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    let progress = progress_bar(size, show_progress);
    let started = Instant::now();

    let mut tx = pool.begin().await?;
    let mut staging = Staging::begin(&mut tx, org_id).await?;
    let (sender, mut batches) = mpsc::channel(2);
    let reader = {
        let n = n.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || read_batches(file, org_id, &n, &progress, &sender))
    };
    // When COPY fails, the receiver is dropped here and the reader stops at its next batch.
    while let Some(batch) = batches.recv().await {
        staging.add_encoded(&mut tx, batch).await?;
    }
    reader.await??;
    progress.set_message("merging into the index");
    let written = staging.merge(&mut tx).await?;
    tx.commit().await?;
    progress.finish_and_clear();
    tracing::info!(
        records = written,
        seconds = started.elapsed().as_secs_f64(),
        "index import finished"
    );
    Ok(written)
}

/// Reads, parses and checks the records of `file`, and sends them encoded for COPY in batches.
/// Stops at the first bad record, or when nobody receives the batches any more.
fn read_batches(
    file: std::fs::File,
    org_id: Uuid,
    n: &Normalizer,
    progress: &ProgressBar,
    sender: &mpsc::Sender<StagedBatch>,
) -> anyhow::Result<()> {
    const BATCH: u64 = 20_000;
    let send = |batch: StagedBatch| {
        sender
            .blocking_send(batch)
            .map_err(|_| anyhow::anyhow!("the import was stopped"))
    };
    let mut duplicates = DuplicateCheck::default();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut first = true;
    let mut line = String::new();
    let mut line_no = 0usize;
    let mut batch = StagedBatch::with_capacity(org_id, BATCH as usize);
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            break;
        }
        progress.inc(read as u64);
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        if first && line.trim_start().starts_with('[') {
            // A JSON array: small enough files only; NDJSON is the format for large loads.
            let mut body = line.clone().into_bytes();
            reader.read_to_end(&mut body)?;
            let records = parse_array(&body, n)?;
            for (i, record) in records.iter().enumerate() {
                duplicates.check(&format!("record {}", i + 1), record)?;
            }
            return send(StagedBatch::encode(org_id, &records)?);
        }
        first = false;
        let record = parse_line(line_no, &line, n)?;
        duplicates.check(&format!("line {line_no}"), &record)?;
        batch.push(&record)?;
        if batch.len() == BATCH {
            send(std::mem::replace(
                &mut batch,
                StagedBatch::with_capacity(org_id, BATCH as usize),
            ))?;
        }
    }
    if !batch.is_empty() {
        send(batch)?;
    }
    Ok(())
}

fn progress_bar(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
