//! A deliberately small SQL surface shared by PostgreSQL and SQLite, so each projection's
//! statements are written once.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, PgConnection, Postgres, Row, Sqlite, SqliteConnection, Type};

/// Which database a transaction runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(i64),
    OptI64(Option<i64>),
    F64(f64),
    OptF64(Option<f64>),
    Bool(bool),
    Text(String),
    OptText(Option<String>),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    Date(NaiveDate),
    /// JSON: `jsonb` on PostgreSQL, text on SQLite.
    Json(serde_json::Value),
    /// A column of type `uuid` on PostgreSQL, text on SQLite (ids kept as text on both are
    /// [`Arg::Text`], which `From<Uuid>` gives).
    Uuid(Option<uuid::Uuid>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::I64(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::OptI64(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Self::F64(v)
    }
}
impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Self {
        Self::OptF64(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::OptText(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Self::Time(v)
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Self::OptTime(v)
    }
}
impl From<NaiveDate> for Arg {
    fn from(v: NaiveDate) -> Self {
        Self::Date(v)
    }
}
impl From<uuid::Uuid> for Arg {
    fn from(v: uuid::Uuid) -> Self {
        Self::Text(v.to_string())
    }
}

/// A connection inside an open transaction, on either backend.
pub enum Tx<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

/// A pooled connection on either backend, for the read queries the bot and the HTTP API run
/// outside the projection runner.
pub enum Conn {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Conn {
    /// The connection as a [`Tx`], so read queries share the projections' SQL surface.
    pub fn tx(&mut self) -> Tx<'_> {
        match self {
            Self::Postgres(c) => Tx::Postgres(c),
            Self::Sqlite(c) => Tx::Sqlite(c),
        }
    }
}

/// One result row, on either backend.
pub enum SqlRow {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl SqlRow {
    /// Decodes the column named `column`; any type both backends decode (integers, text, bool,
    /// `f64`, times, dates and their `Option`s) works.
    pub fn get<T>(&self, column: &str) -> Result<T, sqlx::Error>
    where
        T: for<'r> Decode<'r, Postgres>
            + Type<Postgres>
            + for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>,
    {
        match self {
            Self::Postgres(r) => r.try_get(column),
            Self::Sqlite(r) => r.try_get(column),
        }
    }
}

/// Bound values per statement in the batch helpers: below SQLite's default limit (32,766) and
/// PostgreSQL's (65,535), large enough that a batch takes few round trips.
pub const MAX_PARAMETERS: usize = 10_000;

/// `($first, …), (…), …`: `rows` tuples of `columns` numbered placeholders.
pub fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * columns + c).to_string());
        }
        out.push(')');
    }
    out
}

/// `$1`-style placeholders become SQLite's numbered `?1`; statements must not contain `$`
/// anywhere else. The clock is the database's, so instances on several machines agree on
/// leases whatever their own clocks say: `{now}` is the current time and `{now+$N}` the time
/// `$N` (a float, negative for the past) seconds from it; SQLite's is the RFC 3339 text its time
/// columns hold.
pub fn for_backend(backend: Backend, sql: &str) -> std::borrow::Cow<'_, str> {
    let sql: std::borrow::Cow<'_, str> = if sql.contains("{now") {
        clock(backend, sql).into()
    } else {
        sql.into()
    };
    match backend {
        Backend::Postgres => sql,
        Backend::Sqlite => sql.replace('$', "?").into(),
    }
}

const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'";

fn clock(backend: Backend, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(at) = rest.find("{now") {
        out.push_str(&rest[..at]);
        let token = &rest[at..];
        let Some(end) = token.find('}') else {
            out.push_str(token);
            return out;
        };
        match (&token[4..end], backend) {
            ("", Backend::Postgres) => out.push_str("now()"),
            ("", Backend::Sqlite) => {
                out.push_str(SQLITE_NOW);
                out.push(')');
            }
            (offset, Backend::Postgres) if offset.starts_with("+$") => {
                out.push_str(&format!(
                    "(now() + make_interval(secs => {}))",
                    &offset[1..]
                ));
            }
            (offset, Backend::Sqlite) if offset.starts_with("+$") => {
                out.push_str(&format!(
                    "{SQLITE_NOW}, printf('%+f seconds', {}))",
                    &offset[1..]
                ));
            }
            _ => out.push_str(&token[..=end]),
        }
        rest = &token[end + 1..];
    }
    out.push_str(rest);
    out
}

/// How each backend takes a `uuid` column's value: PostgreSQL as a `uuid`, SQLite as the text
/// its tables hold (sqlx would bind SQLite a 16-byte blob).
trait BindUuid {
    fn bind_uuid(self, value: Option<uuid::Uuid>) -> Self;
}

impl<'q> BindUuid for sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    fn bind_uuid(self, value: Option<uuid::Uuid>) -> Self {
        self.bind(value)
    }
}

impl<'q> BindUuid for sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    fn bind_uuid(self, value: Option<uuid::Uuid>) -> Self {
        self.bind(value.map(|id| id.to_string()))
    }
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::I64(v) => q.bind(v),
                Arg::OptI64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::OptF64(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::OptTime(v) => q.bind(v),
                Arg::Date(v) => q.bind(v),
                Arg::Json(v) => q.bind(sqlx::types::Json(v)),
                Arg::Uuid(v) => BindUuid::bind_uuid(q, v),
            };
        }
        q
    }};
}

impl Tx<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        let sql = for_backend(self.backend(), sql);
        match self {
            Self::Postgres(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected()),
            Self::Sqlite(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected()),
        }
    }

    /// Runs a query and returns every row.
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<SqlRow>, sqlx::Error> {
        let sql = for_backend(self.backend(), sql);
        match self {
            Self::Postgres(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(SqlRow::Postgres)
                .collect()),
            Self::Sqlite(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(SqlRow::Sqlite)
                .collect()),
        }
    }

    /// Runs a query and returns its first row, if any.
    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<SqlRow>, sqlx::Error> {
        let sql = for_backend(self.backend(), sql);
        match self {
            Self::Postgres(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_optional(&mut **c)
                .await?
                .map(SqlRow::Postgres)),
            Self::Sqlite(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_optional(&mut **c)
                .await?
                .map(SqlRow::Sqlite)),
        }
    }

    /// Reads one optional `i64` (the first column of the first row).
    pub async fn fetch_i64(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<i64>, sqlx::Error> {
        let sql = for_backend(self.backend(), sql);
        match self {
            Self::Postgres(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_optional(&mut **c)
                .await?
                .and_then(|r| r.get::<Option<i64>, _>(0))),
            Self::Sqlite(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_optional(&mut **c)
                .await?
                .and_then(|r| r.get::<Option<i64>, _>(0))),
        }
    }

    /// Inserts many rows with as few statements as the parameter limits allow:
    /// `{head} VALUES (…), (…) {tail}`, where `tail` may be an `ON CONFLICT` clause. Every row
    /// must have the same number of values.
    pub async fn insert_rows(
        &mut self,
        head: &str,
        rows: Vec<Vec<Arg>>,
        tail: &str,
    ) -> Result<u64, sqlx::Error> {
        let Some(width) = rows.first().map(Vec::len) else {
            return Ok(0);
        };
        if let Self::Postgres(conn) = self {
            if let Some(columns) = Column::transpose(&rows, width) {
                let sql = format!(
                    "{head} SELECT * FROM UNNEST({}) {tail}",
                    Column::casts(&columns)
                );
                let mut query = sqlx::query(&sql);
                for column in columns {
                    query = column.bind(query);
                }
                return Ok(query.execute(&mut **conn).await?.rows_affected());
            }
        }
        let per_statement = (MAX_PARAMETERS / width.max(1)).max(1);
        let mut changed = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Arg>> = rows.by_ref().take(per_statement).collect();
            let sql = format!(
                "{head} VALUES {} {tail}",
                placeholders(chunk.len(), width, 1)
            );
            changed += self
                .execute(&sql, chunk.into_iter().flatten().collect())
                .await?;
        }
        Ok(changed)
    }

    /// Runs a query once per chunk of `keys`, with `{keys}` in `sql` replaced by the chunk's
    /// placeholders (`$1, $2, …`), and returns every row.
    pub async fn fetch_in(
        &mut self,
        sql: &str,
        keys: Vec<Arg>,
    ) -> Result<Vec<SqlRow>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let Self::Postgres(conn) = self {
            if let Some(column) = Column::transpose_one(&keys) {
                let sql = sql.replace(
                    "{keys}",
                    &format!("SELECT unnest($1::{}[])", column.pg_type()),
                );
                return Ok(column
                    .bind(sqlx::query(&sql))
                    .fetch_all(&mut **conn)
                    .await?
                    .into_iter()
                    .map(SqlRow::Postgres)
                    .collect());
            }
        }
        let mut out = Vec::new();
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let chunk: Vec<Arg> = keys.by_ref().take(MAX_PARAMETERS).collect();
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.extend(self.fetch_all(&sql.replace("{keys}", &list), chunk).await?);
        }
        Ok(out)
    }

    /// Runs a statement once per chunk of `keys`, as [`Tx::fetch_in`] does.
    pub async fn execute_in(&mut self, sql: &str, keys: Vec<Arg>) -> Result<u64, sqlx::Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        if let Self::Postgres(conn) = self {
            if let Some(column) = Column::transpose_one(&keys) {
                let sql = sql.replace(
                    "{keys}",
                    &format!("SELECT unnest($1::{}[])", column.pg_type()),
                );
                return Ok(column
                    .bind(sqlx::query(&sql))
                    .execute(&mut **conn)
                    .await?
                    .rows_affected());
            }
        }
        let mut changed = 0;
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let chunk: Vec<Arg> = keys.by_ref().take(MAX_PARAMETERS).collect();
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            changed += self.execute(&sql.replace("{keys}", &list), chunk).await?;
        }
        Ok(changed)
    }

    /// Reads one optional timestamp (the first column of the first row).
    pub async fn fetch_time(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let sql = for_backend(self.backend(), sql);
        match self {
            Self::Postgres(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_optional(&mut **c)
                .await?
                .and_then(|r| r.get::<Option<DateTime<Utc>>, _>(0))),
            Self::Sqlite(c) => Ok(bind_all!(sqlx::query(&sql), args)
                .fetch_optional(&mut **c)
                .await?
                .and_then(|r| r.get::<Option<DateTime<Utc>>, _>(0))),
        }
    }
}

/// One column of many rows' values, bound as one PostgreSQL array: `INSERT … SELECT * FROM
/// UNNEST($1::bigint[], $2::text[], …)` and `IN (SELECT unnest($1::text[]))` have one statement
/// text whatever the row count, so each is prepared once per connection and planned cheaply,
/// where a `VALUES` list of thousands of placeholders is parsed and planned anew every time.
enum Column {
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Date(Vec<Option<NaiveDate>>),
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

impl Column {
    /// An empty column of the value's type.
    /// An empty column for values like `arg`; `None` for kinds bound row by row (JSON).
    fn like(arg: &Arg, capacity: usize) -> Option<Self> {
        Some(match arg {
            Arg::I64(_) | Arg::OptI64(_) => Self::I64(Vec::with_capacity(capacity)),
            Arg::F64(_) | Arg::OptF64(_) => Self::F64(Vec::with_capacity(capacity)),
            Arg::Bool(_) => Self::Bool(Vec::with_capacity(capacity)),
            Arg::Text(_) | Arg::OptText(_) => Self::Text(Vec::with_capacity(capacity)),
            Arg::Time(_) | Arg::OptTime(_) => Self::Time(Vec::with_capacity(capacity)),
            Arg::Date(_) => Self::Date(Vec::with_capacity(capacity)),
            Arg::Json(_) | Arg::Uuid(_) => return None,
        })
    }

    /// Appends a value; `false` when it is not of the column's type.
    fn push(&mut self, arg: &Arg) -> bool {
        match (self, arg) {
            (Self::I64(c), Arg::I64(v)) => c.push(Some(*v)),
            (Self::I64(c), Arg::OptI64(v)) => c.push(*v),
            (Self::F64(c), Arg::F64(v)) => c.push(Some(*v)),
            (Self::F64(c), Arg::OptF64(v)) => c.push(*v),
            (Self::Bool(c), Arg::Bool(v)) => c.push(Some(*v)),
            (Self::Text(c), Arg::Text(v)) => c.push(Some(v.clone())),
            (Self::Text(c), Arg::OptText(v)) => c.push(v.clone()),
            (Self::Time(c), Arg::Time(v)) => c.push(Some(*v)),
            (Self::Time(c), Arg::OptTime(v)) => c.push(*v),
            (Self::Date(c), Arg::Date(v)) => c.push(Some(*v)),
            _ => return false,
        }
        true
    }

    /// The rows as columns; `None` when a column mixes types (then the caller binds row by row).
    fn transpose(rows: &[Vec<Arg>], width: usize) -> Option<Vec<Self>> {
        let first = rows.first()?;
        let mut columns: Vec<Self> = first
            .iter()
            .map(|a| Self::like(a, rows.len()))
            .collect::<Option<_>>()?;
        for row in rows {
            if row.len() != width {
                return None;
            }
            for (column, arg) in columns.iter_mut().zip(row) {
                if !column.push(arg) {
                    return None;
                }
            }
        }
        Some(columns)
    }

    /// A list of keys as one column.
    fn transpose_one(keys: &[Arg]) -> Option<Self> {
        let mut column = Self::like(keys.first()?, keys.len())?;
        keys.iter().all(|k| column.push(k)).then_some(column)
    }

    fn pg_type(&self) -> &'static str {
        match self {
            Self::I64(_) => "bigint",
            Self::F64(_) => "float8",
            Self::Bool(_) => "boolean",
            Self::Text(_) => "text",
            Self::Time(_) => "timestamptz",
            Self::Date(_) => "date",
        }
    }

    /// `$1::bigint[], $2::text[], …` for the columns in order.
    fn casts(columns: &[Self]) -> String {
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", i + 1, c.pg_type()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        match self {
            Self::I64(v) => query.bind(v),
            Self::F64(v) => query.bind(v),
            Self::Bool(v) => query.bind(v),
            Self::Text(v) => query.bind(v),
            Self::Time(v) => query.bind(v),
            Self::Date(v) => query.bind(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_the_databases_in_either_dialect() {
        let sql = "UPDATE t SET at = {now}, until = {now+$2} WHERE id = $1";
        assert_eq!(
            for_backend(Backend::Postgres, sql),
            "UPDATE t SET at = now(), until = (now() + make_interval(secs => $2)) WHERE id = $1"
        );
        assert_eq!(
            for_backend(Backend::Sqlite, sql),
            "UPDATE t SET at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'), \
             until = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', printf('%+f seconds', ?2)) \
             WHERE id = ?1"
        );
    }
}
