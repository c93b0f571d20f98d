//! The database layer of the bot and its read models: a deliberately small SQL surface shared by
//! PostgreSQL and SQLite, so each statement is written once whatever the backend.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, PgConnection, Postgres, Row, Sqlite, SqliteConnection, Type};

mod column;
mod database;
mod dialect;

use column::Column;
pub use database::{Database, DbError, DEFAULT_CONNECTIONS, IDLE_IN_TRANSACTION_TIMEOUT};
pub use dialect::{for_backend, placeholders};

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
    /// JSON already written out, stored as it is: `json` on PostgreSQL (which keeps the text),
    /// text on SQLite.
    JsonText(String),
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

/// An open transaction on either backend, owning its connection; dropped uncommitted, it rolls
/// back.
pub enum Transaction {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Transaction {
    /// The transaction as a [`Tx`], for the statements it runs.
    pub fn tx(&mut self) -> Tx<'_> {
        match self {
            Self::Postgres(t) => Tx::Postgres(t),
            Self::Sqlite(t) => Tx::Sqlite(t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(t) => t.commit().await,
            Self::Sqlite(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(t) => t.rollback().await,
            Self::Sqlite(t) => t.rollback().await,
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

/// How each backend takes a `uuid` column's value: PostgreSQL as a `uuid`, SQLite as the text
/// its tables hold (sqlx would bind SQLite a 16-byte blob).
/// JSON text bound as PostgreSQL's `json` type, byte for byte (its binary form is the text).
struct PgJsonText(String);

impl Type<Postgres> for PgJsonText {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        // `json`'s fixed OID.
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(114))
    }
}

impl sqlx::Encode<'_, Postgres> for PgJsonText {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

/// How each backend takes JSON text: PostgreSQL as `json`, SQLite as the text its tables hold.
trait BindJsonText {
    fn bind_json_text(self, value: String) -> Self;
}

impl<'q> BindJsonText for sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    fn bind_json_text(self, value: String) -> Self {
        self.bind(PgJsonText(value))
    }
}

impl<'q> BindJsonText for sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    fn bind_json_text(self, value: String) -> Self {
        self.bind(value)
    }
}

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
                Arg::JsonText(v) => BindJsonText::bind_json_text(q, v),
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
