//! Paid work charged in credits, end to end through the fake Bot API: the price is shown before
//! each paid action and is exactly what is reserved; a delivered training or image captures its
//! reservation; a failed training, a generation past its deadline, a deleted avatar's pending
//! work and a reservation whose work never started each give the credits back once, and the
//! user is told "refunded"; with credits for one image, a batch of two runs one and offers the
//! packs. Every story ends with the ledger's balance equal to the sum of its events. Each runs on
//! SQLite and PostgreSQL.

use std::time::Duration;

use aggregates::account::{balance_from_events, ReservationPurpose};
use aggregates::{AccountAction, AccountCommand, Actor, ReleaseReason, TrainingPreset};
use aisha::actors::ActorSettings;
use aisha::bot::callbacks::Callback;
use aisha::bot::pricing::{PaymentsConfig, Prices};
use aisha::fal::sim::SimConfig;
use aisha::store::accounts::AccountStore;
use chrono::Utc;
use db::Arg;
use fake_telegram::{Entry, FakeUser};
use uuid::Uuid;

use crate::bot::create_avatar;
use crate::steps::{button, count_bot_texts, press, press_and_see, text, train, upload_album};
use crate::support::{postgres_url, spawn_app_with, TestApp, TestAppSettings};

const PAYER: i64 = 7301;

/// Credits on: a fast training costs 20, an image 1, and a new user gets 21.
fn charging(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        database_url,
        payments: PaymentsConfig {
            welcome_credits: 21,
            prices: Prices::parse("fast:20,balanced:30,quality:40", "1").expect("prices"),
            ..PaymentsConfig::stars()
        },
        ..TestAppSettings::default()
    }
}

/// As [`charging`], with images FAL takes a minute to make and a generation deadline of 2 s.
fn charging_with_slow_images(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        simulator: SimConfig::default().with_times(
            Duration::from_millis(50),
            Duration::from_millis(300),
            Duration::from_secs(60),
        ),
        actors: ActorSettings {
            generation_deadline: Duration::from_secs(2),
            ..ActorSettings::fast()
        },
        ..charging(database_url)
    }
}

/// Waits until the ledger satisfies `condition`; returns the account then.
async fn account_where(
    app: &TestApp,
    what: &str,
    condition: impl Fn(&aggregates::Account) -> bool,
) -> aggregates::Account {
    let accounts = AccountStore::new(app.db.clone());
    let mut last = None;
    for _ in 0..400 {
        let account = accounts.load(PAYER).await.expect("load the account");
        if condition(&account) {
            return account;
        }
        last = Some(account);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the account never showed {what}: {last:#?}");
}

/// Waits until some bot message says `needle`, wherever it stands: a refund notice and the
/// failure it follows are separate messages that may arrive in either order.
async fn told(user: &FakeUser, needle: &str) {
    let said = |entries: &[Entry]| {
        entries
            .iter()
            .any(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains(needle))))
    };
    if let Err(e) = user.wait_until(said).await {
        panic!("never told {needle:?}: {e}\n{}", user.render_transcript());
    }
}

/// The balance is the plain sum of the ledger's events, and nothing is held any more.
async fn ledger_adds_up(app: &TestApp, available: u64) {
    let accounts = AccountStore::new(app.db.clone());
    let account = accounts.load(PAYER).await.unwrap();
    let events: Vec<_> = accounts
        .history(PAYER)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(balance_from_events(&events), available as i64);
    assert_eq!((account.available(), account.reserved()), (available, 0));
}

/// An English-speaking user's portrait avatar with ten photos; returns the album summary.
async fn avatar_with_photos(user: &FakeUser) -> fake_telegram::ChatMessage {
    user.send_command("/start");
    text(user, "Hi").await;
    create_avatar(user, "p", "f", "Vera", "is created").await;
    upload_album(user, 30, "Uploaded: 10 of 10–20").await
}

// ---------------------------------------------------------------------------------------------

async fn a_failed_training_refunds_and_a_batch_beyond_the_balance_offers_packs(app: TestApp) {
    let user = app.user(PAYER, "Vera", "en");
    let summary = avatar_with_photos(&user).await;

    // The preset screen shows each preset's price and the balance before anything is asked.
    let presets = press_and_see(&user, &summary, &button(&summary, "tr:"), "🚀").await;
    let screen = presets.text().unwrap_or_default().to_owned();
    for price in [
        "⚡ Fast — 20",
        "⚖️ Balanced — 30",
        "💎 Quality — 40",
        "Balance 21",
    ] {
        assert!(screen.contains(price), "no {price:?} in {screen}");
    }

    // FAL fails the first training: its 20 credits come back, and the user hears it once.
    app.sim.fail_next_jobs(1);
    press_and_see(&user, &presets, &button(&presets, "ts:f:"), "minutes").await;
    let failed = text(&user, "Training of “Vera” failed").await;
    told(
        &user,
        "↩️ Refunded: 20 credits are back on your balance (the work failed). Available: 21.",
    )
    .await;
    let account = account_where(&app, "the training released", |a| {
        a.available() == 21 && a.ended_reservations.len() == 1
    })
    .await;
    assert!(matches!(
        account.ended_reservations[0].purpose,
        ReservationPurpose::Training {
            preset: TrainingPreset::Fast,
            ..
        }
    ));

    // The second training is delivered: its 20 credits are spent.
    let ready = train(&user, &failed, TrainingPreset::Fast, "minutes", "is ready").await;
    let account = account_where(&app, "the training captured", |a| a.spent == 20).await;
    assert_eq!((account.available(), account.reserved()), (1, 0));

    // One credit left: the prompt screen says what an image costs.
    let generate = press_and_see(&user, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    let prompt = press_and_see(
        &user,
        &generate,
        &button(&generate, "gp:f:"),
        "Price: 1 credit · balance 1",
    )
    .await;
    assert!(prompt.text().is_some());

    // Two prompts with credit for one: the first runs, the second is refused with the packs.
    user.send_text("a lighthouse at dawn\na cat on a roof");
    text(&user, "1 started").await;
    let no_credits = text(&user, "Not enough credits: 1 needed, you have 0").await;
    assert!(
        no_credits.buttons().any(|b| b
            .callback_data
            .as_deref()
            .is_some_and(|d| d.starts_with("bp:"))),
        "the packs to buy come with it: {no_credits:#?}"
    );
    // Under the result, what "again" will cost.
    let done = text(&user, "Done!").await;
    assert!(
        done.text()
            .is_some_and(|t| t.contains("“🔁 Generate again” costs 1 credit")),
        "{done:#?}"
    );
    account_where(&app, "the image captured", |a| a.spent == 21).await;
    ledger_adds_up(&app, 0).await;
    assert_eq!(count_bot_texts(&user, "Refunded"), 1);
    let generations = app
        .store
        .load(crate::steps::avatar_of(&button(&ready, "ge:")))
        .await
        .unwrap()
        .generations_completed;
    assert_eq!(generations, 1, "only the paid prompt reached FAL");
    app.shutdown().await;
}

async fn a_generation_past_its_deadline_and_a_deleted_avatars_work_are_refunded_once(app: TestApp) {
    let user = app.user(PAYER, "Vera", "en");
    let summary = avatar_with_photos(&user).await;
    let ready = train(&user, &summary, TrainingPreset::Fast, "minutes", "is ready").await;
    account_where(&app, "the training captured", |a| a.spent == 20).await;

    let generate = press_and_see(&user, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(&user, &generate, &button(&generate, "gp:f:"), "Describe").await;
    user.send_text("a lighthouse at dawn");
    let failed = text(&user, "could not be created").await;
    told(&user, "↩️ Refunded: 1 credit is back on your balance (the result did not come in time). Available: 1.").await;
    let account = account_where(&app, "the deadline release", |a| a.available() == 1).await;
    let released: Vec<_> = account
        .ended_reservations
        .iter()
        .filter(|r| {
            r.outcome
                == aggregates::account::ReservationOutcome::Released {
                    reason: ReleaseReason::DeadlinePassed,
                }
        })
        .collect();
    assert_eq!(released.len(), 1, "{account:#?}");

    // Once more: this image is pending when the avatar is deleted, and its credit comes back.
    let avatar = crate::steps::avatar_of(&button(&ready, "ge:"));
    press(&user, &failed, &button(&failed, "ag:")).await;
    account_where(&app, "the second image held", |a| a.reserved() == 1).await;
    let query = user
        .press_forged_button(ready.message_id, &Callback::DeleteConfirm(avatar).encode())
        .expect("press");
    user.wait_for_callback_answer(&query).await.expect("answer");
    told(&user, "(the avatar was deleted). Available: 1.").await;
    account_where(&app, "the deletion release", |a| a.reserved() == 0).await;
    ledger_adds_up(&app, 1).await;
    // Each release was told once, however often the sweeps and retries ran.
    assert_eq!(count_bot_texts(&user, "Refunded"), 2);
    assert_eq!(
        app.store.load(avatar).await.unwrap().status.as_str(),
        "deleted"
    );
    app.shutdown().await;
}

async fn a_reservation_whose_work_never_started_is_released_by_the_sweep(app: TestApp) {
    let user = app.user(PAYER, "Vera", "en");
    user.send_command("/balance");
    text(&user, "21").await;
    // A process died between reserving and asking the avatar, three minutes ago.
    let accounts = AccountStore::new(app.db.clone());
    let reservation_id = Uuid::new_v4();
    let reserve = AccountCommand::new(
        Actor::User(PAYER),
        Utc::now() - chrono::Duration::minutes(3),
        AccountAction::Reserve {
            reservation_id,
            credits: 5,
            purpose: ReservationPurpose::Generation {
                avatar_id: Uuid::new_v4(),
                generation_id: reservation_id,
                preset: None,
                images: 1,
            },
        },
    );
    accounts
        .execute(PAYER, reserve, reservation_id)
        .await
        .unwrap();
    let account = account_where(&app, "the orphan released", |a| a.reserved() == 0).await;
    assert_eq!(
        account.ended_reservations.back().map(|r| r.outcome),
        Some(aggregates::account::ReservationOutcome::Released {
            reason: ReleaseReason::Refused
        })
    );
    ledger_adds_up(&app, 21).await;
    app.shutdown().await;
}

/// The ids and bodies of the button presses sent so far whose data starts with `prefix`.
fn presses_sent(app: &TestApp, prefix: &str) -> Vec<(i64, serde_json::Value)> {
    app.telegram
        .sent_updates()
        .into_iter()
        .filter(|u| {
            u["callback_query"]["data"]
                .as_str()
                .is_some_and(|d| d.starts_with(prefix))
        })
        .map(|u| (u["update_id"].as_i64().expect("an update id"), u))
        .collect()
}

/// Puts a handled update back in the inbox as a process that died before marking it would
/// have left it: the inbox hands it out again as a second attempt.
async fn interrupt(app: &TestApp, update_id: i64, body: &serde_json::Value) {
    let mut conn = app.db.acquire().await.unwrap();
    let changed = conn
        .tx()
        .execute(
            "UPDATE telegram_inbox SET handled_at = NULL, outcome = NULL, body = $2
             WHERE update_id = $1 AND handled_at IS NOT NULL",
            vec![Arg::I64(update_id), Arg::Text(body.to_string())],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1, "update {update_id} was handled once before");
}

/// Waits until update `update_id` has been handled `attempts` times.
async fn handled_times(app: &TestApp, update_id: i64, attempts: i64) {
    for _ in 0..400 {
        let mut conn = app.db.acquire().await.unwrap();
        let done = conn
            .tx()
            .fetch_i64(
                "SELECT count(*) FROM telegram_inbox
                 WHERE update_id = $1 AND handled_at IS NOT NULL AND attempts >= $2",
                vec![Arg::I64(update_id), Arg::I64(attempts)],
            )
            .await
            .unwrap();
        if done == Some(1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("update {update_id} was never handled {attempts} times");
}

async fn a_training_press_handled_again_after_its_training_failed_starts_nothing(app: TestApp) {
    let user = app.user(PAYER, "Vera", "en");
    let summary = avatar_with_photos(&user).await;
    let presets = press_and_see(&user, &summary, &button(&summary, "tr:"), "🚀").await;
    app.sim.fail_next_jobs(1);
    press_and_see(&user, &presets, &button(&presets, "ts:f:"), "minutes").await;
    let failed = text(&user, "Training of “Vera” failed").await;
    told(&user, "↩️ Refunded: 20 credits").await;
    account_where(&app, "the training released", |a| {
        a.available() == 21 && a.reserved() == 0
    })
    .await;
    let bar = user
        .message(presets.message_id)
        .expect("the progress message");

    // The process that handled the press died before marking it handled: the press comes
    // again, after its training has failed and been refunded.
    let [(update_id, body)] = presses_sent(&app, "ts:").try_into().expect("one press");
    interrupt(&app, update_id, &body).await;
    handled_times(&app, update_id, 2).await;

    let avatar = crate::steps::avatar_of(&button(&summary, "tr:"));
    let events = app.store.history(avatar).await.unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(e.event, aggregates::AvatarEvent::TrainingStarted { .. }))
        .count();
    assert_eq!(started, 1, "the same press starts no second training");
    assert_eq!(app.sim.submissions().len(), 1, "FAL is asked once");
    assert_eq!(
        app.store.load(avatar).await.unwrap().status,
        aggregates::AvatarStatus::TrainingFailed
    );
    let now = user
        .message(presets.message_id)
        .expect("the progress message");
    assert_eq!(
        now.text(),
        bar.text(),
        "the message does not claim it runs again"
    );
    ledger_adds_up(&app, 21).await;
    assert_eq!(count_bot_texts(&user, "Refunded"), 1);

    // A new press trains again, and is charged.
    let ready = train(&user, &failed, TrainingPreset::Fast, "minutes", "is ready").await;
    assert!(ready.text().is_some());
    account_where(&app, "the second training captured", |a| a.spent == 20).await;
    app.shutdown().await;
}

on_both_backends_with_app! {
    a_failed_training_refunds_and_a_batch_beyond_the_balance_offers_packs => charging,
    a_generation_past_its_deadline_and_a_deleted_avatars_work_are_refunded_once => charging_with_slow_images,
    a_reservation_whose_work_never_started_is_released_by_the_sweep => charging,
    a_training_press_handled_again_after_its_training_failed_starts_nothing => charging,
}
