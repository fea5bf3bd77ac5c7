//! The SQL the catalog generates, in pieces: names always quoted as identifiers, values always
//! bound as parameters. The normalizations here are the SQL twins of `index::normalize` and
//! must be spelled exactly as the expression indexes of migration 0004 spell them.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres};
use uuid::Uuid;

use super::{TableName, phone};
use crate::requests::terms::TermKind;

pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A constant of ours (a column name used as a JSON key), never a subject's value.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl TableName {
    pub(super) fn sql(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

/// How a column's value is normalized before it is compared with a subject's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Norm {
    /// Names and addresses: accents and case folded, white space collapsed.
    Fold,
    Email,
    /// Social handles: without a leading `@`, case-folded.
    Handle,
    /// Phone numbers: the digits, compared with [`phone::variants`].
    Digits,
    /// External ids: trimmed.
    Trim,
    /// Record ids of any type, as text.
    Text,
}

impl Norm {
    pub fn apply(self, column: &str) -> String {
        match self {
            Norm::Fold => format!("gdpr_fold({column})"),
            Norm::Email => format!("lower(btrim({column}))"),
            Norm::Handle => format!("lower(btrim(ltrim(btrim({column}), '@')))"),
            Norm::Digits => format!("gdpr_digits({column})"),
            Norm::Trim => format!("btrim({column})"),
            Norm::Text => format!("({column})::text"),
        }
    }

    /// The normalization of a column holding identifiers of `kind`, whatever the value.
    pub fn of(kind: TermKind) -> Norm {
        match kind {
            TermKind::Name | TermKind::Address => Norm::Fold,
            TermKind::Email => Norm::Email,
            TermKind::Phone => Norm::Digits,
            TermKind::Twitter
            | TermKind::Instagram
            | TermKind::Facebook
            | TermKind::AppleMessages
            | TermKind::Whatsapp => Norm::Handle,
            TermKind::ExternalId => Norm::Trim,
            TermKind::UserId
            | TermKind::ExternalContactId
            | TermKind::DialerContactId
            | TermKind::JourneyCookie => Norm::Text,
        }
    }
}

/// What a column holding `kind` is compared with to find normalized `values`: one list per
/// normalization. A WhatsApp id is a phone number when it starts with `+`, else a handle.
pub(super) fn needles(kind: TermKind, values: &[String]) -> Vec<(Norm, Vec<String>)> {
    let phones = |values: &mut dyn Iterator<Item = &String>| -> Vec<String> {
        let mut out: Vec<String> = values.flat_map(|v| phone::variants(v)).collect();
        out.sort();
        out.dedup();
        out
    };
    let lists = match kind {
        TermKind::Phone => vec![(Norm::Digits, phones(&mut values.iter()))],
        TermKind::Whatsapp => {
            let (numbers, handles): (Vec<&String>, Vec<&String>) =
                values.iter().partition(|v| v.starts_with('+'));
            vec![
                (Norm::Digits, phones(&mut numbers.into_iter())),
                (Norm::Handle, handles.into_iter().cloned().collect()),
            ]
        }
        _ => vec![(Norm::of(kind), values.to_vec())],
    };
    lists.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

pub(super) enum Bind {
    Uuid(Uuid),
    Text(String),
    Texts(Vec<String>),
    Bytes(Vec<u8>),
}

/// The parameters of one generated statement; `$1` is always the organization.
pub(super) struct Binds(Vec<Bind>);

impl Binds {
    pub fn new(org_id: Uuid) -> Binds {
        Binds(vec![Bind::Uuid(org_id)])
    }

    /// Adds a parameter and returns its placeholder.
    pub fn add(&mut self, value: Bind) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }

    /// The statement, prepared and kept by the connection. A service's statements are the same
    /// text for every subject with the same kinds of identifiers, so PostgreSQL plans each once
    /// per connection instead of on every job (planning was a third of the executor's time).
    /// The lists compared are a subject's identifiers, a handful, so one plan suits them all.
    pub fn query(self, sql: String) -> Query<'static, Postgres, PgArguments> {
        self.bind_to(sqlx::query(AssertSqlSafe(sql)))
    }

    /// A statement a connection runs once (creating a working table): not kept.
    pub fn once(self, sql: String) -> Query<'static, Postgres, PgArguments> {
        self.bind_to(sqlx::query(AssertSqlSafe(sql)).persistent(false))
    }

    fn bind_to(
        self,
        query: Query<'static, Postgres, PgArguments>,
    ) -> Query<'static, Postgres, PgArguments> {
        self.0.into_iter().fold(query, |q, b| match b {
            Bind::Uuid(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
            Bind::Texts(v) => q.bind(v),
            Bind::Bytes(v) => q.bind(v),
        })
    }
}

/// A foreign key between two tables and its `ON DELETE` action (`pg_constraint.confdeltype`).
pub(super) struct ForeignKey {
    pub from: TableName,
    pub to: TableName,
    pub on_delete: String,
}

/// The foreign keys that reference tables of these schemas.
pub(super) async fn foreign_keys(
    conn: &mut PgConnection,
    schemas: &[String],
) -> sqlx::Result<Vec<ForeignKey>> {
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT fn.nspname::text, f.relname::text, tn.nspname::text, t.relname::text,
                k.confdeltype::text
           FROM pg_catalog.pg_constraint k
           JOIN pg_catalog.pg_class f ON f.oid = k.conrelid
           JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
           JOIN pg_catalog.pg_class t ON t.oid = k.confrelid
           JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
          WHERE k.contype = 'f' AND tn.nspname = ANY($1)",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(fs, f, ts, t, on_delete)| ForeignKey {
            from: TableName {
                schema: fs,
                name: f,
            },
            to: TableName {
                schema: ts,
                name: t,
            },
            on_delete,
        })
        .collect())
}

/// The order in which to delete from `tables`: a table only once no table still to be deleted
/// from references it, the last declared first among those that are free. `Err` names a table
/// caught in a cycle of references.
pub(super) fn delete_order<'a>(
    tables: &'a [TableName],
    keys: &[ForeignKey],
) -> Result<Vec<usize>, &'a TableName> {
    let mut left: Vec<usize> = (0..tables.len()).collect();
    let mut order = Vec::with_capacity(tables.len());
    while !left.is_empty() {
        let referenced = |i: usize| {
            keys.iter().any(|k| {
                k.to == tables[i]
                    && k.from != k.to
                    && left.iter().any(|&j| j != i && tables[j] == k.from)
            })
        };
        let Some(pos) = left.iter().rposition(|&i| !referenced(i)) else {
            return Err(&tables[left[0]]);
        };
        order.push(left.remove(pos));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> TableName {
        TableName {
            schema: "s".into(),
            name: n.into(),
        }
    }

    fn fk(from: &str, to: &str) -> ForeignKey {
        ForeignKey {
            from: name(from),
            to: name(to),
            on_delete: "a".into(),
        }
    }

    #[test]
    fn identifiers_are_quoted_whatever_they_contain() {
        assert_eq!(ident("email"), "\"email\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn referencing_tables_are_deleted_from_first() {
        let tables = [name("participants"), name("conversations"), name("lines")];
        let keys = [
            fk("participants", "conversations"),
            fk("lines", "conversations"),
        ];
        assert_eq!(delete_order(&tables, &keys), Ok(vec![2, 0, 1]));
        assert_eq!(delete_order(&tables, &[]), Ok(vec![2, 1, 0]));
    }

    #[test]
    fn a_cycle_of_references_has_no_order() {
        let tables = [name("a"), name("b")];
        let keys = [fk("a", "b"), fk("b", "a")];
        assert!(delete_order(&tables, &keys).is_err());
    }

    #[test]
    fn whatsapp_numbers_and_handles_are_looked_for_apart() {
        let found = needles(
            TermKind::Whatsapp,
            &["+15550100001".to_owned(), "anag".to_owned()],
        );
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, Norm::Digits);
        assert!(found[0].1.contains(&"5550100001".to_owned()));
        assert_eq!(found[1], (Norm::Handle, vec!["anag".to_owned()]));
    }
}
