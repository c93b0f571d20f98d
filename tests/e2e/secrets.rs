//! Secrets never reach the log, in whatever setting they ride: a password in the database URL's
//! userinfo or query, credentials in the storage URL (refused, and not echoed), userinfo in the
//! Bot API and public URLs, and the tokens themselves — with debug logging on.

use aisha::fal::{FalSimulator, SimConfig};
use fake_telegram::FakeTelegram;

use crate::process::{free_port, Secrets, ServerProcess};

fn database_url_with(options: &sqlx::postgres::PgConnectOptions, password: &str) -> String {
    // Trust authentication ignores the password, so the server starts with it in place.
    format!(
        "postgres://{}:{password}@{}:{}/{}?sslmode=disable&password={password}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

#[sqlx::test(migrations = false)]
async fn no_setting_ever_writes_its_secret_to_the_log(
    _pool: sqlx::postgres::PgPoolOptions,
    options: sqlx::postgres::PgConnectOptions,
) {
    let _hold = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    let secrets = Secrets::generate();
    let telegram = FakeTelegram::spawn(&secrets.bot_token).await.unwrap();
    let sim = FalSimulator::spawn(SimConfig::default().with_accepted_key(secrets.fal_key.clone()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_password = format!("dbpass{}", free_port());
    let api_password = format!("tgpass{}", free_port());
    let public_password = format!("pubpass{}", free_port());
    let mut env = ServerProcess::env(
        &database_url_with(&options, &db_password),
        telegram.api_url().as_str(),
        &sim,
        &dir.path().join("photos"),
        &secrets,
    );
    let api = telegram.api_url().to_string();
    env.insert(
        "TELEGRAM_API_URL".into(),
        api.replacen("http://", &format!("http://robot:{api_password}@"), 1)
            .trim_end_matches('/')
            .to_owned(),
    );
    let addr = env["HTTP_ADDR"].clone();
    env.insert(
        "PUBLIC_BASE_URL".into(),
        format!("http://ops:{public_password}@{addr}"),
    );
    env.insert("RUST_LOG".into(), "debug".into());
    let log = dir.path().join("server.log");
    let mut server = ServerProcess::start(env.clone(), log.clone()).await;
    server.kill();
    let text = server.log_text();
    assert!(
        text.contains("starting"),
        "the server logged its start:\n{text}"
    );
    let mut needles = secrets.needles();
    needles.extend([
        db_password.clone(),
        api_password.clone(),
        public_password.clone(),
    ]);
    for secret in &needles {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the log: {secret}\n{}",
            text.lines()
                .filter(|l| l.contains(secret.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Credentials in STORAGE_URL are refused at start, and the refusal does not echo them.
    let storage_secret = format!("s3secret{}", free_port());
    let mut refused = env;
    refused.insert(
        "STORAGE_URL".into(),
        format!("s3://AKIAEXAMPLE:{storage_secret}@photos-bucket/avatars"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aisha"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&refused)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("STORAGE_URL"), "{said}");
    assert!(!said.contains(&storage_secret), "{said}");
    assert!(!said.contains(&db_password), "{said}");
}
