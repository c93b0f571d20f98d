//! What a FAL webhook or result may make us do, over real HTTP: a validly signed webhook that is
//! not about our job changes nothing (and is answered so FAL stops retrying); a result naming a
//! file off FAL's media hosts, or at a private address in live mode, fails the generation and
//! nothing is fetched; a JWKS with keys of other types still verifies; a JWKS host that hangs
//! costs a webhook at most the wait bound.
//!
//! Nothing here connects anywhere but 127.0.0.1 (live-mode address checks use literal addresses
//! and `localhost`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::{Action, AvatarEvent};
use aisha::actors::notify::NotifyError;
use aisha::actors::{ActorSettings, Notification, Notifier, Services};
use aisha::app::{AppOptions, Application};
use aisha::config::{Config, FalMode, FalSettings};
use aisha::fal::webhook::{VerifierConfig, WebhookHeaders};
use aisha::fal::{
    FalClient, FalClientConfig, FalError, FalSimulator, MediaPolicy, RetryPolicy, SimConfig,
    WebhookError, WebhookSigner, WebhookVerifier,
};
use aisha::store::AvatarStore;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use futures::future::BoxFuture;
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

use crate::support::{by_owner, run, trained_avatar};

const SEED: [u8; 32] = [41; 32];
const SIM_USER: &str = "sim-user";

/// Records every notification instead of sending it.
#[derive(Default)]
struct Inbox(Mutex<Vec<Notification>>);

impl Notifier for Inbox {
    fn notify<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(n.clone());
            Ok(())
        })
    }
}

impl Inbox {
    /// What users were told about generations (the setup's training is told too).
    fn about_generations(&self) -> Vec<Notification> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|n| {
                matches!(
                    n,
                    Notification::GenerationCompleted { .. }
                        | Notification::GenerationFailed { .. }
                )
            })
            .cloned()
            .collect()
    }
}

/// Polls `condition` until it holds; panics after 20 s.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(dir: &TempDir, mode: FalMode) -> Config {
    let mut config = Config::offline(
        format!("sqlite://{}", dir.path().join("aisha.db").display()),
        &dir.path().join("photos"),
    );
    config.fal = FalSettings {
        key: (mode == FalMode::Live).then(|| "trust-test-key".into()),
        mode: Some(mode),
        // Live mode here never submits work: nothing listens there.
        queue_url: "http://127.0.0.1:9/queue".into(),
        rest_url: "http://127.0.0.1:9/rest".into(),
        ..config.fal
    };
    config
}

/// The whole application on a temporary SQLite database.
struct App {
    http: String,
    store: Arc<AvatarStore>,
    services: Services,
    sim: Option<FalSimulator>,
    inbox: Arc<Inbox>,
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl App {
    async fn start(dir: TempDir, config: Config, sim: SimConfig) -> Self {
        let inbox = Arc::new(Inbox::default());
        let options = AppOptions {
            actor_settings: ActorSettings::fast(),
            simulator: sim,
            notifier: Some(inbox.clone()),
        };
        let mut app = Application::build(config, options).await.unwrap();
        let sim = app.simulator.take();
        let store = app.store.clone();
        let services = app.services.clone();
        let http = format!("http://{}", app.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            http,
            store,
            services,
            sim,
            inbox,
            _dir: dir,
            stop: Some(stop),
        }
    }

    /// Simulated FAL whose jobs stay queued until resumed, signing with [`SEED`].
    async fn simulated() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir, FalMode::Simulated);
        let sim = SimConfig::default()
            .with_signing_seed(SEED)
            .with_check_references(false)
            .paused();
        Self::start(dir, config, sim).await
    }

    fn sim(&self) -> &FalSimulator {
        self.sim.as_ref().expect("simulated mode")
    }

    /// A trained avatar with one generation submitted to FAL: (avatar, generation, request id).
    async fn pending_generation(&self) -> (Uuid, Uuid, String) {
        let avatar_id = trained_avatar(&self.store).await;
        let generation_id = Uuid::new_v4();
        run(
            &self.store,
            avatar_id,
            by_owner(Action::Generate {
                generation_id,
                prompt: "a portrait by the sea".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let avatar = self.store.load(avatar_id).await.unwrap();
            if let Some(Some(job)) = avatar.pending_generation(generation_id) {
                return (avatar_id, generation_id, job.request_id.clone());
            }
            assert!(
                Instant::now() < deadline,
                "the generation was never submitted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn history_len(&self, avatar_id: Uuid) -> usize {
        self.store.history(avatar_id).await.unwrap().len()
    }

    /// The value of `webhook_verifications_total{result="…"}` on `/metrics` (0 when absent).
    async fn verifications(&self, result: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("webhook_verifications_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |value| value.trim().parse::<f64>().unwrap() as u64)
    }

    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn header_map(headers: &WebhookHeaders) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers.pairs() {
        map.insert(name, value.parse().unwrap());
    }
    map
}

fn generator_body(request_id: &str, image_urls: &[&str]) -> Vec<u8> {
    let images: Vec<_> = image_urls
        .iter()
        .map(|url| json!({"url": url, "width": 64, "height": 64, "content_type": "image/png"}))
        .collect();
    serde_json::to_vec(&json!({
        "request_id": request_id, "gateway_request_id": request_id, "status": "OK",
        "payload": {"images": images, "seed": 7, "has_nsfw_concepts": [false], "prompt": "x"}
    }))
    .unwrap()
}

/// POSTs `body`, signed by `signer` for `request_id`, to `url`; the answer's status.
async fn deliver(url: &str, signer: &WebhookSigner, request_id: &str, body: &[u8]) -> u16 {
    let headers = signer.sign(request_id, Utc::now().timestamp(), body);
    reqwest::Client::new()
        .post(url)
        .headers(header_map(&headers))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn with_token(url: &str, token: Option<&str>) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        if let Some(token) = token {
            query.append_pair("token", token);
        }
    }
    parsed.to_string()
}

/// A local HTTP server: `router` at `http://ADDR`, with every request counted.
async fn serve(router: Router) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, hits)
}

/// A TCP listener that accepts connections, counts them and never answers.
async fn silent_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, accepted)
}

/// A JWKS document: an RSA and an EC key (which verify nothing here) before `signer`'s.
fn mixed_jwks(signer: &WebhookSigner) -> serde_json::Value {
    json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
         "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
         "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "ec-1",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        signer.jwk(true),
    ]})
}

/// A JWKS server that serves `document` until told to hang.
async fn jwks_server(document: serde_json::Value) -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let hang = Arc::new(AtomicBool::new(false));
    let hanging = hang.clone();
    let router = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let document = document.clone();
            let hanging = hanging.clone();
            async move {
                if hanging.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                axum::Json(document)
            }
        }),
    );
    let (addr, hits) = serve(router).await;
    (format!("http://{addr}/.well-known/jwks.json"), hits, hang)
}

#[tokio::test]
async fn a_signed_webhook_for_a_job_we_did_not_submit_changes_nothing() {
    let app = App::simulated().await;
    let (avatar_id, generation_id, request_id) = app.pending_generation().await;
    let url = app
        .services
        .generation_webhook(avatar_id, generation_id)
        .expect("a webhook URL");
    let ours = WebhookSigner::from_seed(SEED, SIM_USER);
    // Same key (every FAL customer's webhooks are signed by FAL), another FAL account.
    let theirs = WebhookSigner::from_seed(SEED, "someone-else");
    let before = app.history_len(avatar_id).await;
    let (foreign_users, foreign_targets) = (
        app.verifications("foreign_user").await,
        app.verifications("foreign_target").await,
    );
    let image = format!("{}/files/not-ours.png", app.sim().base_url());

    // Another request, at our URL with its right token.
    let other = generator_body("another-request", &[&image]);
    assert_eq!(deliver(&url, &ours, "another-request", &other).await, 200);
    // Our request, signed for another FAL user.
    let body = generator_body(&request_id, &[&image]);
    assert_eq!(deliver(&url, &theirs, &request_id, &body).await, 200);
    // Our request, at a URL with a wrong token, or none.
    let wrong = with_token(&url, Some("0000"));
    assert_eq!(deliver(&wrong, &ours, &request_id, &body).await, 200);
    let missing = with_token(&url, None);
    assert_eq!(deliver(&missing, &ours, &request_id, &body).await, 200);

    assert_eq!(
        app.history_len(avatar_id).await,
        before,
        "nothing was recorded"
    );
    let avatar = app.store.load(avatar_id).await.unwrap();
    assert!(matches!(
        avatar.pending_generation(generation_id),
        Some(Some(_))
    ));
    assert!(app.inbox.about_generations().is_empty());
    assert_eq!(app.verifications("foreign_user").await - foreign_users, 1);
    assert_eq!(
        app.verifications("foreign_target").await - foreign_targets,
        2
    );

    // The genuine delivery still lands.
    app.sim().resume_jobs();
    until("the generation to complete", || {
        app.inbox
            .about_generations()
            .iter()
            .any(|n| matches!(n, Notification::GenerationCompleted { generation_id: g, .. } if *g == generation_id))
    })
    .await;
    app.stop();
}

#[tokio::test]
async fn an_image_off_the_allow_list_fails_the_generation_and_nothing_is_fetched() {
    let app = App::simulated().await;
    let (avatar_id, generation_id, request_id) = app.pending_generation().await;
    let url = app
        .services
        .generation_webhook(avatar_id, generation_id)
        .unwrap();
    // Loopback is allowed in simulated mode, but this host is neither the simulator nor FAL's.
    let (elsewhere, hits) = serve(Router::new().route("/{*path}", get(|| async { "png" }))).await;
    let off_list = format!("http://{elsewhere}/files/x.png");
    let genuine = format!("{}/files/also-there.png", app.sim().base_url());
    let body = generator_body(&request_id, &[&genuine, &off_list]);
    let signer = WebhookSigner::from_seed(SEED, SIM_USER);
    assert_eq!(deliver(&url, &signer, &request_id, &body).await, 200);

    until("the failure to be told", || {
        !app.inbox.about_generations().is_empty()
    })
    .await;
    let told = app.inbox.about_generations();
    assert!(
        matches!(&told[..], [Notification::GenerationFailed { generation_id: g, reason, .. }]
            if *g == generation_id && reason.contains("FAL returned an image from an unexpected address")
                && reason.contains("unexpected_media_address")),
        "{told:?}"
    );
    let history = app.store.history(avatar_id).await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(&e.event, AvatarEvent::GenerationFailed { generation_id: g, .. } if *g == generation_id)));
    assert!(!history
        .iter()
        .any(|e| matches!(&e.event, AvatarEvent::GenerationCompleted { .. })));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was fetched");

    // Downloads refuse it too, without connecting.
    let fal = app.services.fal.clone();
    assert!(matches!(
        fal.download(&off_list).await,
        Err(FalError::UnexpectedMediaUrl { .. })
    ));
    assert!(matches!(
        fal.download("https://fal.media.evil.example/x.png").await,
        Err(FalError::UnexpectedMediaUrl { .. })
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    app.stop();
}

#[tokio::test]
async fn live_rules_refuse_loopback_private_and_link_local_addresses_without_connecting() {
    let (addr, accepted) = silent_listener().await;
    let port = addr.port();
    let hosts: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "10.0.0.7",
        "169.254.169.254",
        "::1",
    ]
    .map(String::from)
    .to_vec();
    let client = FalClient::new(
        FalClientConfig::new("https://queue.fal.run", "https://rest.fal.ai", None)
            .with_retry(RetryPolicy::none())
            .with_media_policy(MediaPolicy::live(&hosts)),
    )
    .unwrap();
    for url in [
        format!("https://127.0.0.1:{port}/x.png"),
        format!("https://localhost:{port}/x.png"),
        format!("https://[::1]:{port}/x.png"),
        "https://10.0.0.7/x.png".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        // Listed, but not https.
        format!("http://localhost:{port}/x.png"),
        // Not listed at all.
        format!("https://127.0.0.2:{port}/x.png"),
        "https://evilfal.media/x.png".to_owned(),
    ] {
        let checked = client.check_media_url(&url).await;
        assert!(
            matches!(checked, Err(FalError::UnexpectedMediaUrl { .. })),
            "{url}: {checked:?}"
        );
        let fetched = client.download(&url).await;
        assert!(
            matches!(fetched, Err(FalError::UnexpectedMediaUrl { .. })),
            "{url}: {fetched:?}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");

    // FAL's own media hosts pass the checks that need no network.
    let fal = MediaPolicy::live(&[]);
    fal.check("https://v3.fal.media/files/monkey/abc.png")
        .unwrap();
    fal.check("https://v3b.fal.media/files/b/0a98/x.png")
        .unwrap();
    assert!(fal.check("https://storage.googleapis.com/x.png").is_err());
}

#[tokio::test]
async fn redirects_are_followed_only_onto_allowed_hosts() {
    let (other, other_hits) =
        serve(Router::new().route("/{*path}", get(|| async { "elsewhere" }))).await;
    let away = format!("http://localhost:{}/x.png", other.port());
    let router = Router::new()
        .route(
            "/start",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/final")]).into_response() }),
        )
        .route("/final", get(|| async { "the image" }))
        .route(
            "/away",
            get(move || {
                let away = away.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, away)]).into_response() }
            }),
        )
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response() }),
        );
    let (addr, hits) = serve(router).await;
    let client = FalClient::new(
        FalClientConfig::new("http://127.0.0.1:9/queue", "http://127.0.0.1:9/rest", None)
            .with_retry(RetryPolicy::none())
            .with_media_policy(MediaPolicy::simulated(&["127.0.0.1".to_owned()])),
    )
    .unwrap();

    let bytes = client
        .download(&format!("http://{addr}/start"))
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"the image");

    let refused = client.download(&format!("http://{addr}/away")).await;
    assert!(
        matches!(&refused, Err(FalError::UnexpectedMediaUrl { url, .. }) if url.contains("localhost")),
        "{refused:?}"
    );
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );

    let before = hits.load(Ordering::SeqCst);
    let looping = client.download(&format!("http://{addr}/loop")).await;
    assert!(
        matches!(&looping, Err(FalError::UnexpectedMediaUrl { reason, .. }) if reason.contains("redirects")),
        "{looping:?}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst) - before,
        4,
        "the first answer and three redirects"
    );
}

#[tokio::test]
async fn a_jwks_with_an_rsa_key_next_to_the_ed25519_one_still_verifies() {
    let signer = WebhookSigner::from_seed(SEED, "our-user");
    let (jwks_url, fetches, _) = jwks_server(mixed_jwks(&signer)).await;
    let body = br#"{"request_id":"r-1","gateway_request_id":"r-1","status":"OK","payload":{}}"#;

    let verifier = WebhookVerifier::new(jwks_url.clone());
    let headers = signer
        .sign("r-1", Utc::now().timestamp(), body)
        .to_header_map();
    let hook = verifier.verify_now(&headers, body).await.unwrap();
    assert_eq!(hook.request_id, "r-1");

    // Through the service in live mode, with our FAL user pinned.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, FalMode::Live);
    config.fal.jwks_url = jwks_url.into();
    config.fal.user_id = Some("our-user".into());
    let app = App::start(dir, config, SimConfig::default()).await;
    let url = format!("{}/webhooks/fal", app.http);
    // Verified, then refused for naming no avatar: 400, not 401 or 503.
    assert_eq!(deliver(&url, &signer, "r-1", body).await, 400);
    // The same key for another FAL user: ignored, and FAL told to stop.
    let theirs = WebhookSigner::from_seed(SEED, "their-user");
    assert_eq!(deliver(&url, &theirs, "r-1", body).await, 200);
    // A key the JWKS does not list.
    let forger = WebhookSigner::generate("our-user");
    assert_eq!(deliver(&url, &forger, "r-1", body).await, 401);
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch per verifier");
    app.stop();
}

#[tokio::test]
async fn a_hanging_jwks_host_delays_webhooks_at_most_the_bound() {
    let (addr, accepted) = silent_listener().await;
    let jwks_url = format!("http://{addr}/.well-known/jwks.json");
    let signer = WebhookSigner::from_seed(SEED, "our-user");
    let body = br#"{"request_id":"r-1","gateway_request_id":"r-1","status":"OK","payload":{}}"#;

    // The verifier alone, with a short bound: six webhooks at once, one fetch, none waits long.
    let bound = Duration::from_millis(400);
    let verifier = Arc::new(WebhookVerifier::with_config(
        VerifierConfig::new(jwks_url.clone()).with_max_wait(bound),
    ));
    let started = Instant::now();
    let waits: Vec<_> = (0..6)
        .map(|_| {
            let verifier = verifier.clone();
            let headers = signer
                .sign("r-1", Utc::now().timestamp(), body)
                .to_header_map();
            tokio::spawn(async move {
                let began = Instant::now();
                let result = verifier.verify_now(&headers, body).await;
                (result, began.elapsed())
            })
        })
        .collect();
    for wait in waits {
        let (result, took) = wait.await.unwrap();
        assert!(
            matches!(result, Err(WebhookError::KeysUnavailable(_))),
            "{result:?}"
        );
        assert!(
            took < bound + Duration::from_millis(600),
            "a webhook waited {took:?}"
        );
    }
    assert!(started.elapsed() < bound * 3, "they waited side by side");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one fetch at a time");

    // The service, with its default bound (3 s): six webhooks answered 503 within it, together.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, FalMode::Live);
    config.fal.jwks_url = jwks_url.into();
    let app = App::start(dir, config, SimConfig::default()).await;
    let url = format!("{}/webhooks/fal", app.http);
    let started = Instant::now();
    let posts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            let signer = WebhookSigner::from_seed(SEED, "our-user");
            tokio::spawn(async move { deliver(&url, &signer, "r-1", body).await })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.unwrap(), 503);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "six webhooks took {took:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one more fetch, for the service"
    );
    app.stop();
}

#[tokio::test]
async fn while_a_refresh_hangs_webhooks_verify_with_the_cached_keys() {
    let signer = WebhookSigner::from_seed(SEED, "our-user");
    let (jwks_url, fetches, hang) = jwks_server(mixed_jwks(&signer)).await;
    let bound = Duration::from_millis(500);
    let verifier = Arc::new(WebhookVerifier::with_config(
        VerifierConfig::new(jwks_url)
            .with_min_refresh_interval(Duration::ZERO)
            .with_max_wait(bound),
    ));
    let body = br#"{"request_id":"r-1","gateway_request_id":"r-1","status":"OK","payload":{}}"#;
    let genuine = || {
        signer
            .sign("r-1", Utc::now().timestamp(), body)
            .to_header_map()
    };
    verifier.verify_now(&genuine(), body).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // A signature no cached key verifies (a rotation, or a forgery) asks for a refresh, which
    // now hangs: that webhook waits the bound, and no longer.
    hang.store(true, Ordering::SeqCst);
    let unknown = WebhookSigner::generate("our-user");
    let unknown_headers = unknown
        .sign("r-1", Utc::now().timestamp(), body)
        .to_header_map();
    let refreshing = {
        let verifier = verifier.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let result = verifier.verify_now(&unknown_headers, body).await;
            (result, began.elapsed())
        })
    };
    until("the refresh to start", || {
        fetches.load(Ordering::SeqCst) == 2
    })
    .await;

    // Meanwhile genuine webhooks verify at once with the cached set.
    for _ in 0..5 {
        let began = Instant::now();
        verifier.verify_now(&genuine(), body).await.unwrap();
        assert!(began.elapsed() < bound / 2, "waited {:?}", began.elapsed());
    }
    let (result, took) = refreshing.await.unwrap();
    assert!(
        matches!(result, Err(WebhookError::KeysUnavailable(_))),
        "{result:?}"
    );
    assert!(took < bound + Duration::from_millis(600), "waited {took:?}");
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one refresh at a time");
}
