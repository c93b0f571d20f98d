//! `aisha serve` as a real process, for the tests that kill it: a free port, the environment an
//! operator would set, stderr captured to a file, SIGKILL, SIGTERM and restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The work lease the test servers run with.
pub const WORK_LEASE_SECS: u64 = 3;

/// The same settings for another instance beside the first: its own port, and the first one's
/// webhook URL, as a load balancer in front of both would give them one public URL (a webhook
/// for a job the second submitted must still find a live instance after the second is gone).
pub fn second_instance(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let port = free_port();
    let mut env = env.clone();
    env.insert("HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
    env
}

/// The same settings behind a load balancer at `public_url`: Telegram's updates arrive by
/// webhook there, and so do FAL's, whichever instance is alive to take them.
pub fn in_webhook_mode(
    env: &BTreeMap<String, String>,
    public_url: &str,
) -> BTreeMap<String, String> {
    let mut env = env.clone();
    env.insert("PUBLIC_BASE_URL".into(), public_url.into());
    env.insert("FAL_WEBHOOK_BASE_URL".into(), public_url.into());
    env
}

/// A `aisha serve` child process and how to start it again.
pub struct ServerProcess {
    child: Option<Child>,
    env: BTreeMap<String, String>,
    log: PathBuf,
    pub http: String,
    pub starts: usize,
}

impl ServerProcess {
    /// Environment for a server on `database_url` that talks to the given fakes.
    pub fn env(
        database_url: &str,
        telegram_api_url: &str,
        sim: &aisha::fal::FalSimulator,
        storage_dir: &std::path::Path,
        secrets: &Secrets,
    ) -> BTreeMap<String, String> {
        let port = free_port();
        BTreeMap::from([
            ("DATABASE_URL".into(), database_url.into()),
            ("TELOXIDE_TOKEN".into(), secrets.bot_token.clone()),
            (
                "TELEGRAM_API_URL".into(),
                telegram_api_url.trim_end_matches('/').into(),
            ),
            ("FAL_MODE".into(), "live".into()),
            ("FAL_KEY".into(), secrets.fal_key.clone()),
            ("FAL_QUEUE_URL".into(), sim.queue_url()),
            ("FAL_REST_URL".into(), sim.rest_url()),
            ("FAL_PLATFORM_URL".into(), sim.platform_url()),
            ("FAL_JWKS_URL".into(), sim.jwks_url()),
            ("HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
            // FAL's webhooks reach us while Telegram updates are long-polled.
            (
                "FAL_WEBHOOK_BASE_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            // Short leases, so the work of a killed or paused process is taken over quickly.
            ("WORK_LEASE_SECS".into(), WORK_LEASE_SECS.to_string()),
            ("TRAINING_DEADLINE_SECS".into(), "90".into()),
            ("GENERATION_DEADLINE_SECS".into(), "90".into()),
            (
                "STORAGE_URL".into(),
                format!("file://{}", storage_dir.display()),
            ),
            ("ADMIN_TOKEN".into(), secrets.admin_token.clone()),
            ("DATA_KEY".into(), secrets.data_key.clone()),
            ("STATUS_POLL_AFTER_SECS".into(), "1".into()),
            ("STATUS_POLL_EVERY_SECS".into(), "1".into()),
            // The fake Bot API has no flood control; Telegram's limits would only queue replies.
            ("TELEGRAM_RATE_LIMITS".into(), "relaxed".into()),
            (
                "RUST_LOG".into(),
                "debug,sqlx=warn,hyper=info,reqwest=info,h2=info".into(),
            ),
        ])
    }

    /// Starts the server and waits until it answers `/healthz`.
    pub async fn start(env: BTreeMap<String, String>, log: PathBuf) -> Self {
        let http = format!("http://{}", env["HTTP_ADDR"]);
        let mut server = Self {
            child: None,
            env,
            log,
            http,
            starts: 0,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let child = Command::new(env!("CARGO_BIN_EXE_aisha"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start aisha serve");
        self.child = Some(child);
        self.starts += 1;
        self.wait_healthy().await;
    }

    pub async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "aisha serve exited with {status}; log:\n{}",
                        self.log_text()
                    );
                }
            }
            if let Ok(r) = client.get(format!("{}/healthz", self.http)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "aisha serve never became healthy; log:\n{}",
            self.log_text()
        );
    }

    /// SIGKILL: no shutdown hooks, no flushing — as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused process must be woken to die promptly.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process freezes mid-step, its connections and locks held, as under a
    /// debugger, a starved CPU or a VM pause.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the paused process carries on from where it stopped.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal} failed");
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// SIGTERM, as a deploy stops an instance; returns once the process exited, with how.
    /// Panics, with the log's tail, if it is still running after `within`.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("-TERM");
        let mut child = self.child.take().expect("a running server to terminate");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("the server's exit status") {
                return status;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "aisha serve still ran {within:?} after SIGTERM; log tail:\n{}",
                    tail(&self.log_text())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again after it exited (or was killed), and waits until it is healthy.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn().await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The secrets a test hands the server, to check they never reach its logs.
pub struct Secrets {
    pub bot_token: String,
    pub fal_key: String,
    pub admin_token: String,
    /// The master key of the personal data the process seals.
    pub data_key: String,
}

impl Secrets {
    /// Fresh secrets. The test process takes the same `DATA_KEY` as the servers it starts (each
    /// test runs in a process of its own), so what it reads from their database opens.
    pub fn generate() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let data_key = format!("{tag}{tag}");
        let installed = aisha::store::keys::install_master_keys(aisha::store::keys::MasterKeys {
            current: aisha::store::keys::MasterKey::parse(&data_key).expect("64 hex digits"),
            previous: None,
        });
        assert!(installed, "one set of secrets per test process");
        Self {
            bot_token: format!("424242:BOT{tag}"),
            fal_key: format!("falkey-{tag}:FALSECRET{tag}"),
            admin_token: format!("admin-{tag}"),
            data_key,
        }
    }

    /// Every secret, with the parts an accidental log would most likely show.
    pub fn needles(&self) -> Vec<String> {
        let token_secret = self
            .bot_token
            .split(':')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let fal_secret = self
            .fal_key
            .split(':')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        vec![
            self.bot_token.clone(),
            token_secret,
            self.fal_key.clone(),
            fal_secret,
            self.admin_token.clone(),
            self.data_key.clone(),
        ]
    }
}

/// The last 60 lines of a log.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
