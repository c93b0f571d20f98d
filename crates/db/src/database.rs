//! The database handle: a pool on SQLite or PostgreSQL, its migrations, and the connections and
//! transactions the write side and the read models run their statements on.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::{Backend, Conn, Transaction};

/// PostgreSQL connections a pool opens at most when not told otherwise.
pub const DEFAULT_CONNECTIONS: u32 = 32;

/// How long a transaction of ours may sit idle before PostgreSQL ends it
/// (`idle_in_transaction_session_timeout`): a stuck one cannot hold the feed back for ever.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A server on this host is reached without TLS unless the URL (or `PGSSLMODE`) asks for a
/// mode: the bytes never leave the machine, so TLS protects nothing there, and a profile under
/// load put a third of the server's CPU in it (libpq's default, `prefer`, uses TLS whenever
/// the server offers it).
fn plaintext_on_this_host(options: PgConnectOptions, url: &str) -> PgConnectOptions {
    let asked = std::env::var_os("PGSSLMODE").is_some() || names_ssl_mode(url);
    if !asked && is_this_host(options.get_host()) {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    }
}

/// Whether the URL's query names an SSL mode (`sslmode` or `ssl-mode`, as the driver reads).
fn names_ssl_mode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            key.eq_ignore_ascii_case("sslmode") || key.eq_ignore_ascii_case("ssl-mode")
        })
    })
}

/// A Unix socket, `localhost`, or a loopback address.
fn is_this_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why the database could not be opened, migrated or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Driver(#[from] sqlx::Error),
    #[error("database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database schema is not up to date ({pending} migrations pending): run `aisha migrate` first")]
    SchemaBehind { pending: usize },
    /// The URL's scheme only: the rest may hold a password.
    #[error("unsupported DATABASE_URL scheme `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

/// A connection pool to one of the two supported databases.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// SQLite's "database is locked" or "busy" (codes 5 and 6, with their extended forms).
fn is_sqlite_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

impl Database {
    /// Connects to `sqlite://PATH` (creating the file) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, true, DEFAULT_CONNECTIONS).await
    }

    /// As [`Database::connect`], with at most `max_connections` PostgreSQL connections (SQLite,
    /// one writer at a time, keeps its small pool).
    pub async fn connect_sized(url: &str, max_connections: u32) -> Result<Self, DbError> {
        Self::connect_with(url, true, max_connections).await
    }

    /// Connects to a database that must exist already (a SQLite file is not created): for the
    /// commands that only read, which must never leave a new file behind.
    pub async fn connect_existing(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, false, DEFAULT_CONNECTIONS).await
    }

    async fn connect_with(url: &str, create: bool, max_connections: u32) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(create)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // A new file's first connections race to switch it to WAL, and SQLite answers
            // "database is locked" at once (its busy handler does not cover that): try again.
            let mut attempt = 0;
            let pool = loop {
                match SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options.clone())
                    .await
                {
                    Ok(pool) => break pool,
                    Err(e) if attempt < 8 && is_sqlite_busy(&e) => {
                        attempt += 1;
                        tracing::debug!(attempt, error = %e, "SQLite file busy while opening; trying again");
                        tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let options = plaintext_on_this_host(options, url).options([(
                "idle_in_transaction_session_timeout",
                format!("{}s", IDLE_IN_TRANSACTION_TIMEOUT.as_secs()),
            )]);
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Self::Postgres(pool))
        } else {
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            Err(DbError::UnsupportedUrl(scheme.to_owned()))
        }
    }

    /// Brings the schema up to date; safe to run from several processes at once. PostgreSQL's
    /// migrator takes an advisory lock; SQLite's has none, so there each migration (its own
    /// transaction) may lose a race to another process applying the same one: then the attempt
    /// is rolled back whole and run again, and finds the migration applied.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => {
                let migrator = sqlx::migrate!("../../migrations/sqlite");
                let mut attempt = 0;
                loop {
                    match migrator.run(pool).await {
                        Ok(()) => break,
                        Err(e) if attempt < 8 => {
                            attempt += 1;
                            tracing::debug!(attempt, error = %e, "SQLite migration raced another process; trying again");
                            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Self::Postgres(pool) => {
                sqlx::migrate!("../../migrations/postgres")
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Versions of the migrations this build has that the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, DbError> {
        let migrator = match self {
            Self::Sqlite(_) => sqlx::migrate!("../../migrations/sqlite"),
            Self::Postgres(_) => sqlx::migrate!("../../migrations/postgres"),
        };
        let mut conn = self.acquire().await?;
        let applied: Vec<i64> = match conn
            .tx()
            .fetch_all(
                "SELECT version FROM _sqlx_migrations WHERE success = true",
                vec![],
            )
            .await
        {
            Ok(rows) => rows
                .iter()
                .map(|r| r.get::<i64>("version"))
                .collect::<Result<_, _>>()?,
            // No migration table: nothing applied yet.
            Err(_) => Vec::new(),
        };
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Fails with [`DbError::SchemaBehind`] unless every migration is applied: for the
    /// commands that must not change the schema.
    pub async fn require_current_schema(&self) -> Result<(), DbError> {
        let pending = self.pending_migrations().await?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(DbError::SchemaBehind {
                pending: pending.len(),
            })
        }
    }

    /// A pooled connection (`projections::gallery::page(&mut conn.tx(), …)`).
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => Conn::Sqlite(pool.acquire().await?),
            Self::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// A transaction that may only read first: on SQLite it takes the write lock at its first
    /// write, and fails at once if another writer got there meanwhile.
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => Transaction::Sqlite(pool.begin().await?),
            Self::Postgres(pool) => Transaction::Postgres(pool.begin().await?),
        })
    }

    /// A transaction that writes: on SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so it waits its turn instead of failing part way.
    pub async fn begin_write(&self) -> Result<Transaction, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => Transaction::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Transaction::Postgres(pool.begin().await?),
        })
    }

    /// The SQL dialect, for the statements that differ (see [`crate::for_backend`]).
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_on_this_host_is_reached_in_plaintext_and_only_unless_the_url_asks() {
        // (URL, names a mode, on this host)
        for (url, asks, here) in [
            ("postgres://u@127.0.0.1:5432/db", false, true),
            ("postgres://u@localhost/db", false, true),
            ("postgres://u@[::1]:5432/db", false, true),
            (
                "postgresql://u@127.0.0.2/db?application_name=x",
                false,
                true,
            ),
            ("postgres://u@127.0.0.1/db?sslmode=require", true, true),
            ("postgres://u@127.0.0.1/db?a=b&ssl-mode=prefer", true, true),
            ("postgres://u@db.example.com/db", false, false),
            ("postgres://u@10.0.0.5/db", false, false),
        ] {
            let options = PgConnectOptions::from_str(url).unwrap();
            assert_eq!(names_ssl_mode(url), asks, "{url}");
            assert_eq!(is_this_host(options.get_host()), here, "{url}");
        }
        assert!(is_this_host("/var/run/postgresql"), "a Unix socket");
    }
}
