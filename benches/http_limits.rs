//! Idle-connection flood: the application (SQLite, the default HTTP limits, `/healthz` and
//! `/metrics` on their own listener) while child processes hold `HTTP_BENCH_CONNECTIONS` idle
//! connections (default 20,000, opened by `HTTP_BENCH_CLIENTS` children, default 4, so that no
//! process needs more descriptors than `ulimit -n`) to the main listener. Printed: how many
//! connections the server refused past `HTTP_MAX_CONNECTIONS` (default 10,000), `/healthz`
//! latency on the ops listener during the flood, and how long until the main listener answers
//! again (idle connections are closed after the header timeout, default 10 s).
//!
//! Run: `cargo bench --bench http_limits`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aisha::actors::ActorSettings;
use aisha::app::{AppOptions, Application};
use aisha::config::Config;
use aisha::fal::SimConfig;
use aisha::http::server::{refused_connections, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: opens `n` idle connections to `addr`, says how many it opened, holds them until
/// its stdin closes.
fn client(addr: &str, n: usize) {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => open.push(stream),
            Err(e) => {
                eprintln!("connect failed after {}: {e}", open.len());
                break;
            }
        }
    }
    println!("{}", open.len());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

async fn healthz(addr: SocketAddr) -> Option<(u16, Duration)> {
    let asked = Instant::now();
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .ok()?
        .ok()?;
    let code = String::from_utf8_lossy(&reply).get(9..12)?.parse().ok()?;
    Some((code, asked.elapsed()))
}

#[tokio::main]
async fn main() {
    if let Ok(addr) = std::env::var("HTTP_BENCH_CLIENT_OF") {
        return client(&addr, env_number("HTTP_BENCH_CLIENT_CONNECTIONS", 0));
    }
    let total = env_number("HTTP_BENCH_CONNECTIONS", 20_000);
    let clients = env_number("HTTP_BENCH_CLIENTS", 4).max(1);
    let limits = ServerLimits {
        max_connections: env_number(
            "HTTP_MAX_CONNECTIONS",
            aisha::http::server::DEFAULT_MAX_CONNECTIONS,
        ),
        header_timeout: Duration::from_secs(env_number("HTTP_HEADER_TIMEOUT_SECS", 10) as u64),
        ..ServerLimits::default()
    };
    let soft = aisha::http::server::raise_open_file_limit();

    let dir = tempfile::tempdir().unwrap();
    let config = Config::offline(
        format!("sqlite://{}", dir.path().join("aisha.db").display()),
        &dir.path().join("photos"),
    );
    let options = AppOptions {
        actor_settings: ActorSettings::fast(),
        simulator: SimConfig::default(),
        notifier: None,
    };
    let mut app = Application::build(config, options).await.unwrap();
    app.http_limits = limits;
    let ops = app
        .listen_ops("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = app.http_addr();
    let _sim = app.simulator.take();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    while healthz(ops).await.map(|(code, _)| code) != Some(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "# {total} idle connections from {clients} processes; cap {}, header timeout {:?}, open-file limit {soft:?}",
        limits.max_connections, limits.header_timeout
    );

    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..clients {
        let n = total / clients + usize::from(i < total % clients);
        children.push(
            Command::new(std::env::current_exe().unwrap())
                .env("HTTP_BENCH_CLIENT_OF", http.to_string())
                .env("HTTP_BENCH_CLIENT_CONNECTIONS", n.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let mut opened = 0;
    for child in &mut children {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        opened += line.trim().parse::<usize>().unwrap_or(0);
    }
    println!("opened {opened} connections in {:?}", started.elapsed());
    // Let the server accept (and refuse) the backlog.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("refused past the cap: {}", refused_connections());

    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    for _ in 0..20 {
        if let Some((200, took)) = healthz(ops).await {
            answered += 1;
            slowest = slowest.max(took);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("/healthz on the ops listener: {answered}/20 answered 200, slowest {slowest:?}");
    let main_now = healthz(http).await;
    println!("/healthz on the main listener while full: {main_now:?} (404 expected once free: it is on the ops listener)");
    let waiting = Instant::now();
    loop {
        if let Some((404, _)) = healthz(http).await {
            println!(
                "main listener answers again {:?} later (idle connections closed by the header timeout)",
                waiting.elapsed()
            );
            break;
        }
        if waiting.elapsed() > limits.header_timeout * 3 {
            println!("main listener still full after {:?}", waiting.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
