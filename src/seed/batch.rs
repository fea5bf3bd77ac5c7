//! The rows of one chunk of people, in COPY's binary format (see [`crate::copy`]), table by
//! table.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::copy::{Field, Rows, copy_in};
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
                 instagram_handle, facebook_id, whatsapp_number, apple_opaque_id, external_id, \
                 created_at, modified_at) FROM STDIN"
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
    pub fn row(&mut self, table: Table, fields: &[Field]) -> sqlx::Result<()> {
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
        self.tables[table as usize].count()
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
        self.tables.iter().map(|t| t.rows().to_vec()).collect()
    }
}
