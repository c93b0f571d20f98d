use crate::audit::render::escape_for_terminal;

// An operator who mistypes a price must learn which setting is wrong before anything starts.
#[test]
fn payment_settings_parse_and_their_errors_name_the_variable() {
    use clap::Parser;
    let cli = super::Cli::try_parse_from([
        "aisha",
        "--payments",
        "stars",
        "--credit-packs",
        "5:25,40:150",
        "--price-image",
        "ultra:3,default:1",
        "migrate",
    ])
    .expect("valid settings");
    let config = cli.config.resolved();
    assert!(config.payments.enabled());
    assert_eq!(config.payments.packs.iter().count(), 2);
    assert_eq!(
        config
            .payments
            .prices
            .generation(Some(aggregates::GenerationPreset::Ultra), 2),
        6
    );
    assert_eq!(
        config.payments.refund_window,
        std::time::Duration::from_secs(14 * 24 * 3600)
    );

    for (flag, value, variable) in [
        ("--payments", "card", "PAYMENTS"),
        ("--credit-packs", "10:x", "CREDIT_PACKS"),
        ("--price-training", "fast:20", "PRICE_TRAINING"),
        ("--price-image", "turbo:2", "PRICE_IMAGE"),
        ("--refund-window-days", "soon", "REFUND_WINDOW_DAYS"),
    ] {
        let error = super::Cli::try_parse_from(["aisha", flag, value, "migrate"])
            .expect_err("a wrong setting")
            .to_string();
        assert!(error.contains(&format!("{variable}: ")), "{error}");
    }
}

#[test]
fn user_text_cannot_drive_the_terminal() {
    let prompt = "\u{1b}]0;title\u{7}\u{1b}[2Jaudit verify OK\u{202e}txt.exe";
    let shown = escape_for_terminal(prompt);
    assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
    assert_eq!(
        shown,
        "\\u{1b}]0;title\\u{7}\\u{1b}[2Jaudit verify OK\\u{202e}txt.exe"
    );
    assert_eq!(escape_for_terminal("Маша 👩‍💻"), "Маша 👩\\u{200d}💻");
}

// `serve`'s own settings were flags of `serve` before they joined the configuration: they are
// still read after it, as well as before it.
#[test]
fn serve_settings_are_read_before_and_after_the_subcommand() {
    use clap::Parser;
    let after = super::Cli::try_parse_from([
        "aisha",
        "serve",
        "--status-poll-every-secs",
        "5",
        "--quota-avatars-per-user",
        "2",
        "--telegram-rate-limits",
        "relaxed",
    ])
    .expect("serve's settings after serve");
    assert!(matches!(after.command, super::CliCommand::Serve));
    assert_eq!(
        after.config.workers.status_poll_every,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(after.config.limits.quotas().avatars_per_user, 2);
    assert_eq!(
        after.config.telegram.rate_limits,
        crate::config::RateLimits::Relaxed
    );
    // The others keep their defaults.
    assert_eq!(
        after.config.workers.training_deadline,
        std::time::Duration::from_secs(10_800)
    );

    let before = super::Cli::try_parse_from(["aisha", "--telegram-workers", "3", "serve"])
        .expect("serve's settings before serve");
    assert_eq!(before.config.inbox_options().workers, 3);
}
