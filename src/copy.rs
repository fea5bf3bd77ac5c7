//! Rows for PostgreSQL's COPY, in its binary format.
//!
//! Binary rather than text: PostgreSQL then reads each value as it is stored instead of parsing
//! it (a uuid's 16 bytes instead of 36 characters of hex, a timestamp's microseconds instead of
//! a date in words), which takes half the time of a text COPY's load on its one backend. Each
//! value is encoded by sqlx's own encoder for its type; only the framing is COPY's.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, PgConnection, Postgres};
use uuid::Uuid;

/// One value of a row, of the column type it is written into.
#[derive(Clone, Copy)]
pub enum Field<'a> {
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

/// The rows of one table, in COPY's binary format, its header first. A value that cannot be
/// encoded (none of the types above fails short of 2 GiB) leaves its row half written: after an
/// error, the rows are not to be sent.
pub struct Rows {
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
    /// Rows with room for `bytes` of them.
    pub fn with_capacity(bytes: usize) -> Rows {
        let mut rows = Rows::default();
        rows.data.reserve(bytes);
        rows
    }

    pub fn is_empty(&self) -> bool {
        self.data.len() == HEADER.len()
    }

    /// The size of the rows, header left out.
    pub fn len(&self) -> usize {
        self.data.len() - HEADER.len()
    }

    /// Appends a row of `fields`.
    pub fn push(&mut self, fields: &[Field]) -> sqlx::Result<()> {
        self.begin(fields.len())?;
        for &field in fields {
            self.value(field)?;
        }
        Ok(())
    }

    /// Starts a row of `columns` values, each to be appended with [`Rows::value`].
    pub fn begin(&mut self, columns: usize) -> sqlx::Result<()> {
        let columns = i16::try_from(columns).map_err(|e| sqlx::Error::Encode(e.into()))?;
        self.data.extend_from_slice(&columns.to_be_bytes());
        self.count += 1;
        Ok(())
    }

    /// Appends a value: its length (-1 for NULL, with no bytes after), then its bytes.
    pub fn value(&mut self, field: Field) -> sqlx::Result<()> {
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
            IsNull::No => i32::try_from(self.data.len() - at - 4)
                .map_err(|_| sqlx::Error::Encode("a value of 2 GiB or more".into()))?,
        };
        self.data[at..at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// How many rows were appended.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The rows appended, without the header.
    #[cfg(test)]
    pub fn rows(&self) -> &[u8] {
        &self.data[HEADER.len()..]
    }

    /// Adds the rows of `other`.
    pub fn absorb(&mut self, other: Rows) {
        self.data.extend_from_slice(&other.data[HEADER.len()..]);
        self.count += other.count;
    }

    /// The whole COPY data, trailer included; the rows are emptied.
    pub fn take(&mut self) -> Vec<u8> {
        let mut rows = std::mem::take(self);
        rows.data.extend_from_slice(TRAILER);
        std::mem::take(&mut *rows.data)
    }
}

fn encode<'q, T: Encode<'q, Postgres>>(
    value: &T,
    out: &mut PgArgumentBuffer,
) -> sqlx::Result<IsNull> {
    value.encode_by_ref(out).map_err(sqlx::Error::Encode)
}

/// Sends `data` (header, rows and trailer) with `statement`, in one write.
pub async fn copy_in(conn: &mut PgConnection, statement: &str, data: Vec<u8>) -> sqlx::Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sqlx::{PgPool, Row};

    use super::*;

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
        first
            .push(&[
                id.into(),
                "Ana\tGarcía\n\\ \"x\"".into(),
                (-7).into(),
                false.into(),
                at.into(),
                Field::Jsonb(record),
                Field::Null,
            ])
            .unwrap();
        let mut second = Rows::default();
        second
            .push(&[
                Field::Null,
                "".into(),
                i32::MAX.into(),
                true.into(),
                Option::<DateTime<Utc>>::None.into(),
                Field::Jsonb("[]"),
                Some("last").into(),
            ])
            .unwrap();
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
