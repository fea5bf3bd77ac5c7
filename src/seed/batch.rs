//! The rows of one chunk of people, in COPY's binary format, table by table.
//!
//! Binary rather than text: PostgreSQL then reads each value as it is stored instead of parsing
//! it (a uuid's 16 bytes instead of 36 characters of hex, a timestamp's microseconds instead of
//! a date in words), and the seed's load phase, on one backend, takes half the time. Each value
//! is encoded by sqlx's own encoder for its type; only the framing is COPY's.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, PgConnection, Postgres};
use uuid::Uuid;

use crate::index::IndexRecord;

/// Every table the seed writes, in an order that satisfies their foreign keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    DirectoryUsers,
    ExternalContacts,
    DialerContacts,
    Conversations,
    Participants,
    TranscriptLines,
    Attachments,
    JourneyVisitors,
    JourneySessions,
    JourneyEvents,
    ConsentRecords,
    Subjects,
    SubjectIdentifiers,
}

const TABLES: usize = 13;

impl Table {
    pub const ALL: [Table; TABLES] = [
        Table::DirectoryUsers,
        Table::ExternalContacts,
        Table::DialerContacts,
        Table::Conversations,
        Table::Participants,
        Table::TranscriptLines,
        Table::Attachments,
        Table::JourneyVisitors,
        Table::JourneySessions,
        Table::JourneyEvents,
        Table::ConsentRecords,
        Table::Subjects,
        Table::SubjectIdentifiers,
    ];

    /// The table's qualified name.
    pub fn name(self) -> &'static str {
        match self {
            Table::DirectoryUsers => "demo.directory_users",
            Table::ExternalContacts => "demo.external_contacts",
            Table::DialerContacts => "demo.dialer_contacts",
            Table::Conversations => "demo.conversations",
            Table::Participants => "demo.conversation_participants",
            Table::TranscriptLines => "demo.transcript_lines",
            Table::Attachments => "demo.attachments",
            Table::JourneyVisitors => "demo.journey_visitors",
            Table::JourneySessions => "demo.journey_sessions",
            Table::JourneyEvents => "demo.journey_events",
            Table::ConsentRecords => "demo.consent_records",
            Table::Subjects => "subjects",
            Table::SubjectIdentifiers => "subject_identifiers",
        }
    }

    /// Every statement names `org_id` first: [`Batch::row`] writes it. The column types are
    /// those of the values the rows give them (see [`Field`]).
    fn copy_statement(self) -> &'static str {
        match self {
            Table::DirectoryUsers => {
                "COPY demo.directory_users (org_id, id, name, email, phone, title, department, \
                 active, created_at) FROM STDIN"
            }
            Table::ExternalContacts => {
                "COPY demo.external_contacts (org_id, id, canonical_contact_id, name, title, \
                 work_email, personal_email, work_phone, cell_phone, address, twitter_handle, \
                 instagram_handle, facebook_id, whatsapp_number, external_id, created_at, \
                 modified_at) FROM STDIN"
            }
            Table::DialerContacts => {
                "COPY demo.dialer_contacts (org_id, id, contact_list_id, name, phone, alt_phone, \
                 email, address, callable, last_attempt_at, last_result) FROM STDIN"
            }
            Table::Conversations => {
                "COPY demo.conversations (org_id, id, channel, queue_name, started_at, ended_at) \
                 FROM STDIN"
            }
            Table::Participants => {
                "COPY demo.conversation_participants (org_id, id, conversation_id, purpose, name, \
                 address, user_id) FROM STDIN"
            }
            Table::TranscriptLines => {
                "COPY demo.transcript_lines (org_id, id, conversation_id, seq, speaker, body) \
                 FROM STDIN"
            }
            Table::Attachments => {
                "COPY demo.attachments (org_id, id, conversation_id, uploaded_by, file_name, \
                 content_type, content, created_at) FROM STDIN"
            }
            Table::JourneyVisitors => {
                "COPY demo.journey_visitors (org_id, cookie_id, name, email, phone, first_seen, \
                 last_seen) FROM STDIN"
            }
            Table::JourneySessions => {
                "COPY demo.journey_sessions (org_id, id, cookie_id, started_at, ip_address, \
                 user_agent, referrer) FROM STDIN"
            }
            Table::JourneyEvents => {
                "COPY demo.journey_events (org_id, id, session_id, cookie_id, event_type, \
                 page_url, input_text, created_at) FROM STDIN"
            }
            Table::ConsentRecords => {
                "COPY demo.consent_records (org_id, id, email, phone, cookie_id, purpose, \
                 granted, source, recorded_at) FROM STDIN"
            }
            Table::Subjects => {
                "COPY subjects (org_id, id, kind, ref_key, record, canonical_contact_id) FROM STDIN"
            }
            Table::SubjectIdentifiers => {
                "COPY subject_identifiers (org_id, id_type, value, subject_id, kind, ref_key) \
                 FROM STDIN"
            }
        }
    }
}

/// One value of a row, of the column type it is written into.
#[derive(Clone, Copy)]
pub(super) enum Field<'a> {
    Null,
    Uuid(Uuid),
    Text(&'a str),
    Int(i32),
    Bool(bool),
    Time(DateTime<Utc>),
    /// A `jsonb` value, as JSON text.
    Jsonb(&'a str),
}

impl From<Uuid> for Field<'_> {
    fn from(id: Uuid) -> Self {
        Field::Uuid(id)
    }
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(text: &'a str) -> Self {
        Field::Text(text)
    }
}

impl<'a> From<&'a String> for Field<'a> {
    fn from(text: &'a String) -> Self {
        Field::Text(text)
    }
}

impl From<i32> for Field<'_> {
    fn from(n: i32) -> Self {
        Field::Int(n)
    }
}

impl From<bool> for Field<'_> {
    fn from(b: bool) -> Self {
        Field::Bool(b)
    }
}

impl From<DateTime<Utc>> for Field<'_> {
    fn from(t: DateTime<Utc>) -> Self {
        Field::Time(t)
    }
}

impl<'a, T: Into<Field<'a>>> From<Option<T>> for Field<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Field::Null, Into::into)
    }
}

/// What every COPY in binary format starts with: its signature, no flags, no extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// And ends with: a row of -1 columns.
const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// The rows of one table, in COPY's binary format, its header first.
struct Rows {
    data: PgArgumentBuffer,
    count: u64,
}

impl Default for Rows {
    fn default() -> Self {
        let mut data = PgArgumentBuffer::default();
        data.extend_from_slice(HEADER);
        Rows { data, count: 0 }
    }
}

impl Rows {
    fn is_empty(&self) -> bool {
        self.data.len() == HEADER.len()
    }

    /// The size of the rows, header left out.
    fn len(&self) -> usize {
        self.data.len() - HEADER.len()
    }

    /// Starts a row of `columns` values, each to be appended with [`Rows::value`].
    fn begin(&mut self, columns: usize) -> anyhow::Result<()> {
        self.data
            .extend_from_slice(&i16::try_from(columns)?.to_be_bytes());
        self.count += 1;
        Ok(())
    }

    /// Appends a value: its length (-1 for NULL, with no bytes after), then its bytes.
    fn value(&mut self, field: Field) -> anyhow::Result<()> {
        let at = self.data.len();
        self.data.extend_from_slice(&[0; 4]);
        let written = match field {
            Field::Null => IsNull::Yes,
            Field::Uuid(id) => encode(&id, &mut self.data)?,
            Field::Text(text) => encode(&text, &mut self.data)?,
            Field::Int(n) => encode(&n, &mut self.data)?,
            Field::Bool(b) => encode(&b, &mut self.data)?,
            Field::Time(t) => encode(&t, &mut self.data)?,
            Field::Jsonb(json) => {
                // jsonb's binary format: a version byte, then the JSON text.
                self.data.push(1);
                self.data.extend_from_slice(json.as_bytes());
                IsNull::No
            }
        };
        let length = match written {
            IsNull::Yes => -1,
            IsNull::No => i32::try_from(self.data.len() - at - 4)?,
        };
        self.data[at..at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// Adds the rows of `other`.
    fn absorb(&mut self, other: Rows) {
        self.data.extend_from_slice(&other.data[HEADER.len()..]);
        self.count += other.count;
    }

    /// The whole COPY data, trailer included; the rows are emptied.
    fn take(&mut self) -> Vec<u8> {
        let mut rows = std::mem::take(self);
        rows.data.extend_from_slice(TRAILER);
        std::mem::take(&mut *rows.data)
    }
}

fn encode<'q, T: Encode<'q, Postgres>>(
    value: &T,
    out: &mut PgArgumentBuffer,
) -> anyhow::Result<IsNull> {
    value
        .encode_by_ref(out)
        .map_err(|e| anyhow::anyhow!("a generated value cannot be encoded: {e}"))
}

/// Sends `data` (header, rows and trailer) with `statement`, in one write.
async fn copy_in(conn: &mut PgConnection, statement: &str, data: Vec<u8>) -> sqlx::Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

/// The rows of a chunk of people, ready to be sent with COPY.
pub(super) struct Batch {
    org_id: Uuid,
    pub people: u64,
    tables: [Rows; TABLES],
}

impl Batch {
    pub fn new(org_id: Uuid) -> Batch {
        Batch {
            org_id,
            people: 0,
            tables: Default::default(),
        }
    }

    /// Appends a row of `table`; `fields` are its columns after `org_id`.
    pub fn row(&mut self, table: Table, fields: &[Field]) -> anyhow::Result<()> {
        let rows = &mut self.tables[table as usize];
        rows.begin(fields.len() + 1)?;
        rows.value(Field::Uuid(self.org_id))?;
        for &field in fields {
            rows.value(field)?;
        }
        Ok(())
    }

    /// Appends an index record with its identifiers. The ids are fresh, so the record goes
    /// straight into the index without the merge an import needs.
    pub fn index(&mut self, id: Uuid, record: &IndexRecord) -> anyhow::Result<()> {
        let json = serde_json::to_string(&record.subject)?;
        let kind = record.key.kind.as_str();
        self.row(
            Table::Subjects,
            &[
                id.into(),
                kind.into(),
                (&record.key.key).into(),
                Field::Jsonb(&json),
                record.canonical_contact_id.as_ref().into(),
            ],
        )?;
        for (id_type, value) in &record.identifiers {
            self.row(
                Table::SubjectIdentifiers,
                &[
                    id_type.as_str().into(),
                    value.as_str().into(),
                    id.into(),
                    kind.into(),
                    (&record.key.key).into(),
                ],
            )?;
        }
        Ok(())
    }

    pub fn rows(&self, table: Table) -> u64 {
        self.tables[table as usize].count
    }

    pub fn index_records(&self) -> u64 {
        self.rows(Table::Subjects)
    }

    /// Rows of the demo services (the index not counted).
    pub fn service_rows(&self) -> u64 {
        Table::ALL
            .into_iter()
            .filter(|t| !matches!(t, Table::Subjects | Table::SubjectIdentifiers))
            .map(|t| self.rows(t))
            .sum()
    }

    /// Sends every table with COPY, in foreign-key order.
    pub async fn write(mut self, conn: &mut PgConnection) -> sqlx::Result<()> {
        for table in Table::ALL {
            let rows = &mut self.tables[table as usize];
            if !rows.is_empty() {
                let statement = format!("{} (FORMAT binary)", table.copy_statement());
                copy_in(conn, &statement, rows.take()).await?;
            }
        }
        Ok(())
    }

    /// Adds the rows of `other`.
    pub fn absorb(&mut self, other: Batch) {
        for (mine, theirs) in self.tables.iter_mut().zip(other.tables) {
            mine.absorb(theirs);
        }
        self.people += other.people;
    }

    /// Sends, with COPY into tables this transaction emptied (so that the rows are written
    /// already frozen), the rows of every table that holds at least `at_least` bytes of them, and
    /// the index records before identifiers that refer to them; every row when `at_least` is 0.
    /// Few large statements rather than one per table and chunk: each statement ends with a short
    /// write after a long one, which over TCP can wait for a delayed acknowledgement (40 ms on
    /// Linux) as long as the driver leaves Nagle's algorithm on, as sqlx 0.9.0 does.
    pub async fn flush_frozen(
        &mut self,
        conn: &mut PgConnection,
        at_least: usize,
    ) -> sqlx::Result<()> {
        let identifiers_due =
            self.tables[Table::SubjectIdentifiers as usize].len() >= at_least.max(1);
        for table in Table::ALL {
            let rows = &mut self.tables[table as usize];
            let due =
                rows.len() >= at_least.max(1) || (table == Table::Subjects && identifiers_due);
            if due && !rows.is_empty() {
                let statement = format!("{} (FORMAT binary, FREEZE)", table.copy_statement());
                copy_in(conn, &statement, rows.take()).await?;
            }
        }
        Ok(())
    }

    /// Each table's rows, without the header: two batches' rows are the same when these are.
    #[cfg(test)]
    pub fn tables(&self) -> Vec<Vec<u8>> {
        self.tables
            .iter()
            .map(|t| t.data[HEADER.len()..].to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sqlx::{PgPool, Row};

    use super::*;

    fn push(rows: &mut Rows, fields: &[Field]) {
        rows.begin(fields.len()).unwrap();
        for &field in fields {
            rows.value(field).unwrap();
        }
    }

    /// Every kind of value goes through COPY's binary format and reads back as it was, rows of
    /// two batches absorbed into one included.
    #[sqlx::test]
    async fn rows_in_binary_format_read_back_as_they_were_written(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query(
            "CREATE TEMPORARY TABLE copied (id uuid, name text, seq int4, active bool, \
             at timestamptz, record jsonb, note text)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let at = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 58).unwrap()
            + chrono::Duration::microseconds(123_456);
        let record = r#"{"name": "Ana García", "phoneNumbers": ["+34 600 000 000"]}"#;
        let mut first = Rows::default();
        push(
            &mut first,
            &[
                id.into(),
                "Ana\tGarcía\n\\ \"x\"".into(),
                (-7).into(),
                false.into(),
                at.into(),
                Field::Jsonb(record),
                Field::Null,
            ],
        );
        let mut second = Rows::default();
        push(
            &mut second,
            &[
                Field::Null,
                "".into(),
                i32::MAX.into(),
                true.into(),
                Option::<DateTime<Utc>>::None.into(),
                Field::Jsonb("[]"),
                Some("last").into(),
            ],
        );
        first.absorb(second);
        assert_eq!(first.count, 2);
        let copied = copy_in(
            &mut conn,
            "COPY copied FROM STDIN (FORMAT binary)",
            first.take(),
        )
        .await
        .unwrap();
        assert_eq!(copied, 2);
        assert!(first.is_empty(), "the rows were taken");

        let rows = sqlx::query(
            "SELECT id, name, seq, active, at, record::text AS record, note FROM copied \
             ORDER BY seq",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let row = &rows[0];
        assert_eq!(row.get::<Option<Uuid>, _>("id"), Some(id));
        assert_eq!(row.get::<String, _>("name"), "Ana\tGarcía\n\\ \"x\"");
        assert_eq!(row.get::<i32, _>("seq"), -7);
        assert!(!row.get::<bool, _>("active"));
        assert_eq!(row.get::<Option<DateTime<Utc>>, _>("at"), Some(at));
        assert_eq!(
            row.get::<String, _>("record"),
            r#"{"name": "Ana García", "phoneNumbers": ["+34 600 000 000"]}"#
        );
        assert_eq!(row.get::<Option<String>, _>("note"), None);
        let row = &rows[1];
        assert_eq!(row.get::<Option<Uuid>, _>("id"), None);
        assert_eq!(row.get::<String, _>("name"), "");
        assert_eq!(row.get::<i32, _>("seq"), i32::MAX);
        assert!(row.get::<bool, _>("active"));
        assert_eq!(row.get::<Option<DateTime<Utc>>, _>("at"), None);
        assert_eq!(row.get::<String, _>("record"), "[]");
        assert_eq!(
            row.get::<Option<String>, _>("note").as_deref(),
            Some("last")
        );
    }
}
