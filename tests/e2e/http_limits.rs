//! The HTTP server's limits, on real sockets: slow and idle clients are closed within the header
//! timeout, many idle connections do not keep `/healthz` from answering, connections past the cap
//! are closed at once while the ops listener still answers, and oversized bodies get 413.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aisha::actors::ActorSettings;
use aisha::app::{AppError, AppOptions, Application};
use aisha::config::Config;
use aisha::fal::{FalSimulator, SimConfig};
use aisha::http::server::{refused_connections, ServerLimits};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many idle connections [`healthz_answers_beside_many_idle_connections`] holds open
/// (`HTTP_LIMITS_IDLE_CONNECTIONS`; each costs two descriptors in this process).
fn idle_connections() -> usize {
    std::env::var("HTTP_LIMITS_IDLE_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

struct Running {
    http: SocketAddr,
    ops: Option<SocketAddr>,
    _sim: FalSimulator,
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
}

impl Running {
    async fn start(limits: ServerLimits, with_ops: bool) -> Self {
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
        let ops = if with_ops {
            Some(
                app.listen_ops("127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        let sim = app.simulator.take().expect("simulated FAL");
        let http = app.http_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            http,
            ops,
            _sim: sim,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task.take().unwrap())
            .await
            .expect("the application stops within 15 s")
            .expect("no panic")
            .expect("no error");
    }
}

/// Reads until the server closes the connection; how long that took, and what it sent.
async fn until_closed(stream: &mut TcpStream, at_most: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + at_most).into(), stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {at_most:?}; it sent {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` on a fresh connection: the status code, or `None` when the server closed it first.
async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let (_, reply) = until_closed(&mut stream, Duration::from_secs(10)).await;
    let reply = String::from_utf8_lossy(&reply);
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Polls until `GET path` answers `code`, for at most 15 s.
async fn until_status(addr: SocketAddr, path: &str, code: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = get_status(addr, path).await;
        if last == Some(code) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("GET {path} on {addr} never answered {code}; last: {last:?}");
}

fn limits(header_timeout: Duration, max_connections: usize) -> ServerLimits {
    ServerLimits {
        header_timeout,
        max_connections,
        ..ServerLimits::default()
    }
}

#[tokio::test]
async fn half_sent_and_silent_requests_are_closed_within_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let app = Running::start(limits(timeout, 100), false).await;
    until_status(app.http, "/healthz", 200).await;

    let mut half = TcpStream::connect(app.http).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(app.http).await.unwrap();
    // A kept-alive connection that goes quiet after one answer.
    let mut kept = TcpStream::connect(app.http).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();

    let bound = timeout + Duration::from_secs(2);
    let ((half_after, half_sent), (silent_after, _), (kept_after, kept_sent)) = tokio::join!(
        until_closed(&mut half, bound),
        until_closed(&mut silent, bound),
        until_closed(&mut kept, bound),
    );
    assert!(
        !String::from_utf8_lossy(&half_sent).contains("200 OK"),
        "a half-sent request is not answered"
    );
    assert!(String::from_utf8_lossy(&kept_sent).starts_with("HTTP/1.1 200 OK"));
    for (what, after) in [
        ("half-sent", half_after),
        ("silent", silent_after),
        ("kept-alive", kept_after),
    ] {
        println!("{what} connection closed after {after:?}");
        assert!(after < bound, "{what}: {after:?}");
    }
    // The server still answers.
    assert_eq!(get_status(app.http, "/healthz").await, Some(200));
    app.shutdown().await;
}

#[tokio::test]
async fn healthz_answers_beside_many_idle_connections() {
    let n = idle_connections();
    let app = Running::start(limits(Duration::from_secs(60), n + 100), false).await;
    until_status(app.http, "/healthz", 200).await;

    let mut idle = Vec::with_capacity(n);
    let opened = Instant::now();
    for _ in 0..n {
        idle.push(TcpStream::connect(app.http).await.unwrap());
    }
    println!("{n} idle connections opened in {:?}", opened.elapsed());

    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let asked = Instant::now();
        let code = tokio::time::timeout(Duration::from_secs(5), get_status(app.http, "/healthz"))
            .await
            .expect("/healthz answers");
        let took = asked.elapsed();
        assert_eq!(code, Some(200));
        slowest = slowest.max(took);
    }
    println!("/healthz beside {n} idle connections: slowest of 5 answers {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    // Every idle connection is still open (none was refused).
    let mut probe = [0u8; 1];
    for stream in idle.iter().step_by((n / 50).max(1)) {
        assert!(
            stream.try_read(&mut probe).is_err(),
            "an idle connection under the cap was closed"
        );
    }
    drop(idle);
    app.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_while_the_ops_listener_answers() {
    let cap = 50;
    let app = Running::start(limits(Duration::from_secs(30), cap), true).await;
    let ops = app.ops.unwrap();
    until_status(ops, "/healthz", 200).await;
    // Health and metrics are only on the ops listener.
    assert_eq!(get_status(app.http, "/healthz").await, Some(404));
    assert_eq!(get_status(app.http, "/metrics").await, Some(404));
    until_status(ops, "/metrics", 200).await;

    let held: Vec<TcpStream> = futures::future::join_all(
        (0..cap).map(|_| async { TcpStream::connect(app.http).await.unwrap() }),
    )
    .await;
    let refused_before = refused_connections();
    // Once the server has accepted the held ones, every further connection is closed at once,
    // without an answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut extra = TcpStream::connect(app.http).await.unwrap();
        extra
            .write_all(b"GET /api/none HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok();
        let (after, sent) = until_closed(&mut extra, Duration::from_secs(5)).await;
        if sent.is_empty() {
            println!("a connection past the cap was closed after {after:?}");
            assert!(after < Duration::from_secs(1), "{after:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the cap never took effect");
    }
    assert!(refused_connections() > refused_before);

    let asked = Instant::now();
    assert_eq!(get_status(ops, "/healthz").await, Some(200));
    let took = asked.elapsed();
    println!("/healthz on the ops listener with the main one full: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Closing the held connections frees their places.
    drop(held);
    until_status(app.http, "/healthz", 404).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_webhook_limit_gets_413() {
    let app = Running::start(ServerLimits::default(), false).await;
    until_status(app.http, "/healthz", 200).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/webhooks/fal", app.http);
    let big = vec![b'x'; aisha::http::webhooks::MAX_WEBHOOK_BYTES + 1];
    let reply = client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 413);
    // The same without a declared length (chunked).
    let chunks = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))),
    );
    let reply = client
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 413);
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stops_coming_gets_408_within_the_body_timeout() {
    let app = Running::start(
        ServerLimits {
            body_timeout: Duration::from_secs(1),
            ..ServerLimits::default()
        },
        false,
    )
    .await;
    until_status(app.http, "/healthz", 200).await;
    let mut stream = TcpStream::connect(app.http).await.unwrap();
    stream
        .write_all(
            b"POST /webhooks/fal HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"status\":",
        )
        .await
        .unwrap();
    let (after, sent) = until_closed(&mut stream, Duration::from_secs(5)).await;
    let sent = String::from_utf8_lossy(&sent);
    println!(
        "a stalled body was answered {:?} after {after:?}",
        sent.lines().next()
    );
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    app.shutdown().await;
}
