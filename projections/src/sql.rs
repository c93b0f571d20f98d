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
/// anywhere else.
pub fn for_backend(backend: Backend, sql: &str) -> std::borrow::Cow<'_, str> {
    match backend {
        Backend::Postgres => sql.into(),
        Backend::Sqlite => sql.replace('$', "?").into(),
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
