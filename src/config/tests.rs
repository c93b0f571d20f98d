use super::connections::parse_photo_retention;
use super::*;

// The configuration is logged at start: whatever an operator puts in a secret must stay out.
#[test]
fn the_debug_of_a_whole_config_shows_no_secret() {
    let dir = Path::new("/tmp/photos");
    let mut config = Config::offline(
        "postgres://aisha:db-pass-4711@db/aisha?password=q-pass-4712",
        dir,
    );
    config.telegram.token = Some("123456:tg-token-4713".into());
    config.telegram.api_url = "https://bot:api-pass-4714@api.telegram.org".into();
    config.fal.key = Some("fal-key-4715".into());
    config.fal.webhook_base_url = Some("https://fal:hook-pass-4716@aisha.example.com".into());
    config.http.public_base_url = Some("https://ops:public-pass-4717@aisha.example.com".into());
    config.http.admin_token = Some("admin-token-4718".into());
    config.storage.url = "s3://AKIA:storage-pass-4719@bucket/photos".into();
    config.storage.s3 = Some(crate::photos::S3Connection {
        endpoint: "http://s3-user:endpoint-pass-4720@127.0.0.1:9000".into(),
        region: "us-east-1".into(),
        access_key_id: "access-key-4721".into(),
        secret_access_key: "secret-key-4722".into(),
    });
    config.keys.data_key = Some("data-key-4723".into());
    config.keys.data_key_previous = Some("previous-key-4724".into());

    let shown = format!("{config:?} {:#?}", config.clone().resolved());
    for n in 4711..=4724 {
        assert!(
            !shown.contains(&n.to_string()),
            "secret {n} shown in {shown}"
        );
    }
    // The masks are there, so the fields were not simply left out.
    assert!(shown.contains("Secret(***)"), "{shown}");
    assert!(shown.contains("aisha:***@db"), "{shown}");
}

/// The variables `.env.sample` sets or shows commented out (`NAME=` or `# NAME=`).
fn env_sample_variables() -> Vec<String> {
    include_str!("../../.env.sample")
        .lines()
        .map(|line| line.trim_start_matches('#').trim_start())
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// Read by the log filter, not by clap.
const NOT_CLAP_VARIABLES: [&str; 1] = ["RUST_LOG"];

// Operators configure from `.env.sample`: a setting missing there is one nobody finds, and one
// there that nothing reads is a setting that silently does nothing.
#[test]
fn the_env_sample_describes_every_variable_and_only_those() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut known = Vec::new();
    walk(&crate::cli::Cli::command(), &mut known);
    let config_only = Config::augment_args(clap::Command::new("aisha"));
    let from_config = config_only
        .get_arguments()
        .filter(|a| a.get_env().is_some())
        .count();
    assert!(from_config >= 54, "{known:?}");
    let sample = env_sample_variables();

    let missing: Vec<&String> = known.iter().filter(|name| !sample.contains(name)).collect();
    assert!(missing.is_empty(), "not in .env.sample: {missing:?}");
    let unknown: Vec<&String> = sample
        .iter()
        .filter(|name| !known.contains(name) && !NOT_CLAP_VARIABLES.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "in .env.sample but read by nothing: {unknown:?}"
    );
}

// Each setting has a comment right above it (or above its group), so the sample explains it.
#[test]
fn every_setting_in_the_env_sample_follows_a_comment() {
    let mut previous = "";
    for line in include_str!("../../.env.sample").lines() {
        let is_setting = !line.starts_with('#') && line.contains('=');
        if is_setting {
            assert!(
                previous.starts_with('#') || (!previous.is_empty() && previous.contains('=')),
                "`{line}` has no comment above it"
            );
        }
        previous = line;
    }
}

#[test]
fn photo_retention_is_days_or_off_and_its_errors_name_the_variable() {
    let day = Duration::from_secs(24 * 60 * 60);
    assert_eq!(
        parse_photo_retention("30"),
        Ok(PhotoRetention(Some(30 * day)))
    );
    assert_eq!(
        parse_photo_retention("0"),
        Ok(PhotoRetention(Some(Duration::ZERO)))
    );
    assert_eq!(parse_photo_retention(" OFF "), Ok(PhotoRetention(None)));
    for wrong in ["-1", "1.5", "forever", ""] {
        let err = parse_photo_retention(wrong).unwrap_err();
        assert!(err.starts_with("TRAINING_PHOTO_RETENTION_DAYS: "), "{err}");
    }
}

// The offline settings are the operator's defaults but for what would reach the outside world.
#[test]
fn offline_settings_are_simulated_local_and_otherwise_the_defaults() {
    let config = Config::offline("sqlite://x.db", Path::new("/tmp/p"));
    assert_eq!(config.fal.mode(), FalMode::Simulated);
    assert!(config.telegram.token.is_none() && config.http.public_base_url.is_none());
    assert_eq!(config.storage.url.expose(), "file:///tmp/p");
    assert_eq!(config.http.addr.port(), 0);
    assert_eq!(config.payments, PaymentsConfig::off());
    assert_eq!(
        config.storage.training_photo_retention,
        PhotoRetention(Some(DEFAULT_PHOTO_RETENTION))
    );
    assert_eq!(
        config.database.max_connections,
        DEFAULT_DATABASE_CONNECTIONS
    );
    assert_eq!(config.money.stars_usd, DEFAULT_STARS_USD);
    assert_eq!(
        config.workers.actor_settings().lease,
        Duration::from_secs(45)
    );
}

// `TELOXIDE_TOKEN=` in a `.env` means no token, and a key alone means the real FAL.
#[test]
fn blank_values_are_unset_and_fal_mode_follows_the_key() {
    let mut config = Config::offline("sqlite://x.db", Path::new("/tmp/p"));
    config.fal.mode = None;
    config.fal.key = Some("key".into());
    config.telegram.token = Some("  ".into());
    config.http.admin_token = Some("".into());
    config.fal.user_id = Some(" user ".into());
    config.fal.media_hosts = vec![" fal.media ".into(), " ".into()];
    let config = config.resolved();
    assert_eq!(config.fal.mode, Some(FalMode::Live));
    assert!(config.telegram.token.is_none() && config.http.admin_token.is_none());
    assert_eq!(config.fal.user_id.as_deref(), Some("user"));
    assert_eq!(config.fal.media_hosts, ["fal.media"]);
}
