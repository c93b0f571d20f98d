//! Load benchmark: N simulated Telegram users against `aisha serve` (real child processes on
//! PostgreSQL), through the fake Bot API, with the FAL simulator beside it. Each user, at a
//! random moment within every second, does one interaction that needs no FAL time — /start,
//! /help, /avatars, /new, pressing the avatar-type button — and waits for the reply. Printed:
//! updates handled per second, reply latency p50/p99 (update sent → reply recorded by the fake),
//! the most messages sent and edited in any one second, and the servers' peak RSS, for N = 100
//! and 1,000.
//!
//! Run: `cargo bench --bench load` (PostgreSQL from `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres). `LOAD_USERS` (comma-separated) and
//! `LOAD_ROUNDS` (default 5) change the size; `LOAD_PERIOD_MS` (default 1000) the time between
//! one user's interactions; `LOAD_LIMITS=production` keeps Telegram's real send budgets
//! (30 messages a second overall) instead of the relaxed ones the fake allows. `LOAD_FLOOD=N`
//! adds one more user who sends N messages at once at the start (the others' latencies are
//! what is reported): `LOAD_USERS=100 LOAD_FLOOD=500 LOAD_LIMITS=production LOAD_PERIOD_MS=5000`.
//! `LOAD_INSTANCES` (comma-separated, default `0`) sets how many instances share the database:
//! `0` is one instance long-polling Telegram, `n` ≥ 1 is n instances in webhook mode behind a
//! round-robin load balancer, e.g. `LOAD_INSTANCES=0,1,3`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aisha::fal::{FalSimulator, SimConfig};
use fake_telegram::webhook_delivery::{DeliveryConfig, HttpProxy, Instances, WebhookDelivery};
use fake_telegram::{FakeTelegram, FakeUser};
use rand::Rng;

mod common;

const TOKEN: &str = "777000:load-test-token";
/// What the instances may hold of PostgreSQL's 100 connections together.
const CONNECTIONS: usize = 80;
/// The methods that put something in a chat: what Telegram's flood limits count.
const SENDS: [&str; 8] = [
    "sendMessage",
    "sendPhoto",
    "sendMediaGroup",
    "sendDocument",
    "sendInvoice",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
];

#[tokio::main]
async fn main() {
    let admin_url = common::admin_url();
    let sizes: Vec<usize> = std::env::var("LOAD_USERS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = common::env_number("LOAD_ROUNDS", 5);
    let period = Duration::from_millis(common::env_number("LOAD_PERIOD_MS", 1000));
    let limits = std::env::var("LOAD_LIMITS").unwrap_or_else(|_| "relaxed".into());
    let flood: usize = common::env_number("LOAD_FLOOD", 0);
    let setups: Vec<usize> = std::env::var("LOAD_INSTANCES")
        .unwrap_or_else(|_| "0".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "# load benchmark: {rounds} interactions per user, one per {} ms at a random moment, {limits} send budgets{}",
        period.as_millis(),
        if flood > 0 {
            format!(", one more user flooding {flood} messages at the start")
        } else {
            String::new()
        }
    );
    println!("| instances | users | updates | updates/s | reply p50 ms | reply p99 ms | max ms | most sends in a second | servers' peak RSS MB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &instances in &setups {
        for &users in &sizes {
            let load = Load {
                users,
                rounds,
                period,
                limits: &limits,
                flood,
            };
            run(&admin_url, instances, load).await;
        }
    }
}

/// One configuration's load.
struct Load<'a> {
    users: usize,
    rounds: usize,
    period: Duration,
    limits: &'a str,
    flood: usize,
}

/// `0` instances: one, long-polling.
fn describe(instances: usize) -> String {
    match instances {
        0 => "1 polling".into(),
        n => format!("{n} webhook"),
    }
}

/// Starts `aisha serve` on `port`, in webhook mode under `public_url` if given.
#[allow(clippy::too_many_arguments)]
fn spawn_server(
    database_url: &str,
    telegram: &FakeTelegram,
    sim: &FalSimulator,
    storage: &std::path::Path,
    port: u16,
    limits: &str,
    public_url: Option<&str>,
    connections: usize,
) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aisha"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("DATABASE_MAX_CONNECTIONS", connections.to_string())
        .env("TELOXIDE_TOKEN", TOKEN)
        .env(
            "TELEGRAM_API_URL",
            telegram.api_url().as_str().trim_end_matches('/'),
        )
        .env("FAL_MODE", "live")
        // A throwaway master key for the data this run seals.
        .env("DATA_KEY", "5e".repeat(32))
        .env("FAL_KEY", "load-fal-key")
        .env("FAL_QUEUE_URL", sim.queue_url())
        .env("FAL_REST_URL", sim.rest_url())
        .env("FAL_PLATFORM_URL", sim.platform_url())
        .env("FAL_JWKS_URL", sim.jwks_url())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("STORAGE_URL", format!("file://{}", storage.display()))
        .env("TELEGRAM_RATE_LIMITS", limits)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = public_url {
        command.env("PUBLIC_BASE_URL", url);
    }
    command.spawn().expect("start aisha serve")
}

/// The most `SENDS` calls the fake received within any one second from `since` on.
fn most_sends_in_a_second(telegram: &FakeTelegram, since: Instant) -> usize {
    let mut at: Vec<Instant> = telegram
        .requests()
        .into_iter()
        .filter(|r| SENDS.contains(&r.method.as_str()) && r.received_at >= since)
        .map(|r| r.received_at)
        .collect();
    at.sort_unstable();
    let mut most = 0;
    let mut first = 0;
    for last in 0..at.len() {
        while at[last] - at[first] >= Duration::from_secs(1) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

async fn run(admin_url: &str, instances: usize, load: Load<'_>) {
    let Load {
        users,
        rounds,
        period,
        limits,
        flood,
    } = load;
    let scratch = common::Scratch::create(
        admin_url,
        format!(
            "aisha_bench_load_{}_{instances}_{users}",
            std::process::id()
        ),
    )
    .await;

    let telegram = FakeTelegram::spawn(TOKEN).await.unwrap();
    let sim = FalSimulator::spawn(SimConfig::default().with_accepted_key("load-fal-key"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..instances.max(1))
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let balanced = Instances::new(ports.iter().map(|p| format!("http://127.0.0.1:{p}")));
    let (proxy, delivery) = if instances > 0 {
        let proxy = HttpProxy::spawn(balanced.clone()).await.unwrap();
        let delivery = WebhookDelivery::spawn(&telegram, balanced, DeliveryConfig::default());
        (Some(proxy), Some(delivery))
    } else {
        (None, None)
    };
    let connections = (CONNECTIONS / ports.len()).clamp(2, 32);
    let mut servers = Vec::with_capacity(ports.len());
    for &port in &ports {
        let mut server = spawn_server(
            &scratch.url,
            &telegram,
            &sim,
            dir.path(),
            port,
            limits,
            proxy.as_ref().map(HttpProxy::url),
            connections,
        );
        common::wait_healthy(port, &mut server).await;
        servers.push(server);
    }

    let people: Vec<FakeUser> = (0..users)
        .map(|i| {
            telegram
                .user(900_000 + i as i64, &format!("Load{i}"), "ru")
                .with_timeout(Duration::from_secs(60))
        })
        .collect();
    if flood > 0 {
        let flooder = telegram.user(899_999, "Flood", "ru");
        for n in 0..flood {
            flooder.send_text(&format!("flood {n}"));
        }
    }
    let start = Instant::now();
    let tasks = people
        .into_iter()
        .map(|user| tokio::spawn(async move { interact(user, rounds, period).await }));
    let mut timed: Vec<(&'static str, Duration)> = Vec::new();
    for t in futures::future::join_all(tasks).await {
        timed.extend(t.unwrap());
    }
    let mut latencies: Vec<Duration> = timed.iter().map(|(_, d)| *d).collect();
    let elapsed = start.elapsed();
    let peak_rss_mb = servers
        .iter()
        .map(|s| common::peak_rss_kb(s.id()).map_or(f64::NAN, |kb| kb as f64 / 1024.0))
        .sum::<f64>();
    for server in &mut servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    let most_sends = most_sends_in_a_second(&telegram, start);
    latencies.sort_unstable();
    let pick =
        |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "| {} | {users} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {most_sends} | {:.1} |",
        describe(instances),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pick(0.5),
        pick(0.99),
        pick(1.0),
        peak_rss_mb
    );
    // Where the time went, step by step (the first round is every user's first /start).
    let by_step: Vec<String> = SCRIPT
        .iter()
        .filter_map(|step| {
            let mut of: Vec<Duration> = timed
                .iter()
                .filter(|(s, _)| s == step)
                .map(|(_, d)| *d)
                .collect();
            if of.is_empty() {
                return None;
            }
            of.sort_unstable();
            let pick =
                |q: f64| of[((of.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
            Some(format!(
                "{step} {} p50 {:.1} p99 {:.1} ms",
                of.len(),
                pick(0.5),
                pick(0.99)
            ))
        })
        .collect();
    println!(
        "  by step: {}; load average after: {}",
        by_step.join(", "),
        load_average()
    );
    if let Some(delivery) = delivery {
        delivery.stop().await;
    }
    if let Some(proxy) = proxy {
        proxy.stop().await;
    }
    drop(telegram);
    drop(sim);
    scratch.drop().await;
}

/// What each user does, one step per period, round after round.
const SCRIPT: [&str; 5] = ["/start", "/help", "/avatars", "/new", "press"];

/// The 1, 5 and 15 minute load averages: how busy the shared cores were around the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One user's session: an interaction per `period`, each timed from send to the first reply.
async fn interact(
    user: FakeUser,
    rounds: usize,
    period: Duration,
) -> Vec<(&'static str, Duration)> {
    let mut out = Vec::new();
    let script = SCRIPT;
    let mut types = None;
    for round in 0..rounds {
        let pause = rand::thread_rng().gen_range(Duration::ZERO..period);
        tokio::time::sleep(pause).await;
        let step = script[round % script.len()];
        let t = Instant::now();
        let answered = match step {
            "press" => match types.take() {
                Some(screen) => {
                    let screen: fake_telegram::ChatMessage = screen;
                    user.press_button(screen.message_id, "t:p").is_ok()
                        && user
                            .wait_for_edit(screen.message_id, |m| {
                                m.text().is_some_and(|x| x.contains("👤"))
                            })
                            .await
                            .is_ok()
                }
                None => false,
            },
            command => {
                let before = user.transcript().len();
                user.send_command(command);
                let replied = user
                    .wait_until(|entries| {
                        entries
                            .iter()
                            .skip(before)
                            .any(|e| matches!(e, fake_telegram::Entry::Bot(_)))
                    })
                    .await
                    .is_ok();
                if command == "/new" {
                    types = user.wait_for_bot_text("🎯").await.ok();
                }
                replied
            }
        };
        if answered {
            out.push((step, t.elapsed()));
        }
        tokio::time::sleep(period - pause).await;
    }
    out
}
