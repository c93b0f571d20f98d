//! What the benchmarks share: settings read from the environment, and a scratch PostgreSQL
//! database created for one run and dropped after it.

#![allow(dead_code)]

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Executor;

/// The server to bench against: `DATABASE_URL`, or the local default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A number from the environment, or `default` when it is unset or not a number.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A database of its own on the benchmark's server, so a run never sees another's rows.
pub struct Scratch {
    admin: PgPool,
    name: String,
    pub url: String,
}

impl Scratch {
    /// Creates (or re-creates) `name` on the server of `admin_url`.
    pub async fn create(admin_url: &str, name: String) -> Self {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .expect("connect to PostgreSQL (set DATABASE_URL)");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await
            .expect("drop an old scratch database");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the scratch database");
        let url = replace_db_name(admin_url, &name);
        Self { admin, name, url }
    }

    /// Drops the database, closing whatever connections are still open on it.
    pub async fn drop(self) {
        self.admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .expect("drop the scratch database");
    }
}

/// `url` with its database name replaced, keeping any query string.
fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Waits until a server started as a child process answers `GET /healthz` on `port`; panics if
/// it exits first or never does.
pub async fn wait_healthy(port: u16, server: &mut std::process::Child) {
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("aisha serve exited: {status}");
        }
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("aisha serve never became healthy");
}

/// The peak resident set (VmHWM) of process `pid`, in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

/// A `/proc/PID/status` figure (`VmRSS:`, `VmHWM:` …), in kB.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
