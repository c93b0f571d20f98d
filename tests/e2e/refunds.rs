//! Refunds in Stars and promo codes, end to end: the real bot on the fake Bot API refunds a
//! purchase on the user's request exactly once (even when the button is tapped twice at once),
//! refuses after the window and once the credits are spent, carries out an operator's refund from
//! the `aisha credits refund` binary, and redeems promo codes once per user, with two users
//! racing for a code's last use getting one success. Each story runs on SQLite and PostgreSQL.

use std::time::Duration;

use aggregates::{
    AccountAction, AccountCommand, AccountEvent, Actor, RefundRequester, ReservationPurpose,
    TrainingPreset,
};
use aisha::actors::refund::{self, RefundBy, RefundRequest};
use aisha::actors::work::WorkQueue;
use aisha::bot::handlers::payments::charge_tag;
use aisha::bot::pricing::PaymentsConfig;
use aisha::store::accounts::AccountStore;
use aisha::store::promo::{Claim, PromoCodes};
use chrono::Utc;
use fake_telegram::{Entry, FakeUser, PayOptions};
use uuid::Uuid;

use crate::payments::{balance_shows, invoice_for_fifty, pay, selling, BUYER};
use crate::projections::aisha_cli;
use crate::steps::{button, count_bot_texts, press, text};
use crate::support::{postgres_url, spawn_app_with, TestApp, TestAppSettings};

/// Selling, with a refund window that closed the moment a purchase was made.
fn selling_without_refunds(database_url: Option<String>) -> TestAppSettings {
    let mut settings = selling(database_url);
    settings.payments = PaymentsConfig {
        refund_window: Duration::ZERO,
        ..settings.payments
    };
    settings
}

/// Buys the 50-credit pack (200 Stars); returns its charge id.
async fn bought_fifty(user: &FakeUser) -> String {
    let invoice = invoice_for_fifty(user).await;
    let charge = pay(user, &invoice, PayOptions::default()).await;
    text(user, "Payment received: +50 credits").await;
    charge
}

/// The ledger's refunds of one account.
async fn refunds_in_ledger(app: &TestApp, telegram_id: i64) -> Vec<AccountEvent> {
    AccountStore::new(app.db.clone())
        .history(telegram_id)
        .await
        .expect("history")
        .into_iter()
        .map(|e| e.event)
        .filter(|e| matches!(e, AccountEvent::PurchaseRefunded { .. }))
        .collect()
}

/// Holds `credits` of the user's balance for a (pretend) training, as paid work would.
async fn hold(app: &TestApp, telegram_id: i64, credits: u32) {
    let command = AccountCommand::new(
        Actor::User(telegram_id),
        Utc::now(),
        AccountAction::Reserve {
            reservation_id: Uuid::new_v4(),
            credits,
            purpose: ReservationPurpose::Training {
                avatar_id: Uuid::new_v4(),
                preset: TrainingPreset::Fast,
            },
        },
    );
    AccountStore::new(app.db.clone())
        .execute(telegram_id, command, Uuid::new_v4())
        .await
        .expect("reserve");
}

/// Whether Telegram's `refunded_payment` service message is in the chat.
fn saw_refunded_payment(transcript: &[Entry]) -> bool {
    transcript
        .iter()
        .any(|e| matches!(e, Entry::User(m) if m.refunded_payment().is_some()))
}

/// Bot messages in a transcript whose text contains `needle` (for `wait_until`, whose predicate
/// must not read the chat again).
fn bot_texts(transcript: &[Entry], needle: &str) -> usize {
    transcript
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains(needle))))
        .count()
}

// ---------------------------------------------------------------------------------------------

async fn a_refund_tapped_twice_at_once_is_recorded_and_returned_once(app: TestApp) {
    // Given a user who bought 50 credits for 200 Stars
    let user = app.user(BUYER, "Vera", "en");
    let charge = bought_fifty(&user).await;

    // When they open the refund screen from /balance and tap the purchase twice at once
    let balance = balance_shows(&user, "Available: 50 credits").await;
    press(&user, &balance, &button(&balance, "rl")).await;
    let screen = user
        .wait_for_edit(balance.message_id, |m| {
            m.text().is_some_and(|t| t.contains("Choose one"))
        })
        .await
        .expect("the refund screen");
    let data = button(&screen, "rf:");
    assert_eq!(data, format!("rf:{:08x}", charge_tag(&charge)));
    let first = user.press_button(screen.message_id, &data).expect("tap");
    let second = user
        .press_button(screen.message_id, &data)
        .expect("tap again");
    user.wait_for_callback_answer(&first).await.expect("answer");
    user.wait_for_callback_answer(&second)
        .await
        .expect("answer");

    // Then the Stars come back once, the ledger records one refund, and the user is told
    text(&user, "Refunded: ⭐200 are back").await;
    user.wait_until(saw_refunded_payment)
        .await
        .expect("Telegram's refunded_payment message");
    assert_eq!(app.telegram.requests_of("refundStarPayment").len(), 1);
    let refunds = app.telegram.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0].telegram_payment_charge_id.as_str(),
            refunds[0].user_id,
            refunds[0].total_amount
        ),
        (charge.as_str(), BUYER, 200)
    );
    let recorded = refunds_in_ledger(&app, BUYER).await;
    assert!(
        matches!(
            recorded.as_slice(),
            [AccountEvent::PurchaseRefunded {
                credits: 50,
                stars: 200,
                by: RefundRequester::User,
                ..
            }]
        ),
        "{recorded:?}"
    );
    assert_eq!(count_bot_texts(&user, "Refunded: ⭐200"), 1);
    let account = AccountStore::new(app.db.clone()).load(BUYER).await.unwrap();
    assert_eq!((account.available(), account.refunded), (0, 50));

    // And the refund screen has nothing more to offer
    user.send_command("/refund");
    text(&user, "All your purchases were refunded already").await;
    app.shutdown().await;
}

async fn a_refund_after_the_window_is_refused(app: TestApp) {
    // Given a purchase whose refund window has closed
    let user = app.user(BUYER, "Vera", "en");
    let charge = bought_fifty(&user).await;

    // When the user asks for refunds
    user.send_command("/refund");

    // Then none is offered, and a button for it (an old screen) is refused in a sentence
    let none = text(&user, "Nothing can be refunded now").await;
    assert!(
        none.text()
            .is_some_and(|t| t.contains("refund period (0 days from a purchase) is over")),
        "{none:#?}"
    );
    let data = format!("rf:{:08x}", charge_tag(&charge));
    let query = user
        .press_forged_button(none.message_id, &data)
        .expect("press");
    user.wait_for_callback_answer(&query).await.expect("answer");
    user.wait_for_edit(none.message_id, |m| {
        m.text()
            .is_some_and(|t| t.contains("cannot be refunded: its refund period ended"))
    })
    .await
    .expect("the refusal");
    assert!(app.telegram.requests_of("refundStarPayment").is_empty());
    assert!(refunds_in_ledger(&app, BUYER).await.is_empty());
    app.shutdown().await;
}

async fn a_refund_after_the_credits_were_spent_is_refused(app: TestApp) {
    // Given a purchase whose refund screen is open
    let user = app.user(BUYER, "Вера", "ru");
    user.send_command("/buy");
    let packs = text(&user, "Выберите пакет").await;
    press(&user, &packs, &button(&packs, "bp:50:200")).await;
    let invoice = user.wait_for_invoice().await.expect("an invoice");
    let charge = pay(&user, &invoice, PayOptions::default()).await;
    text(&user, "Оплата прошла: +50 кредитов").await;
    user.send_command("/refund");
    let screen = text(&user, "Выберите покупку").await;
    let data = button(&screen, "rf:");

    // When some of its credits are spent meanwhile and the user taps it
    hold(&app, BUYER, 10).await;
    press(&user, &screen, &data).await;

    // Then they are told why, in their language, and nothing is refunded
    user.wait_for_edit(screen.message_id, |m| {
        m.text()
            .is_some_and(|t| t.contains("Вернуть эту покупку нельзя") && t.contains("доступно 40"))
    })
    .await
    .expect("the refusal");
    user.send_command("/refund");
    text(&user, "Кредиты покупок уже потрачены").await;

    // And a refund already enqueued when the credits went is refused by the worker, told too
    let request = RefundRequest {
        telegram_id: BUYER,
        telegram_payment_charge_id: charge,
        by: RefundBy::User,
        window_secs: 3600,
    };
    refund::enqueue(&WorkQueue::new(app.db.clone()), &request, 0)
        .await
        .expect("enqueue");
    user.wait_until(|t| bot_texts(t, "Вернуть эту покупку нельзя") == 1)
        .await
        .expect("the worker's refusal");
    assert!(app.telegram.requests_of("refundStarPayment").is_empty());
    assert!(refunds_in_ledger(&app, BUYER).await.is_empty());
    app.shutdown().await;
}

async fn an_operator_refund_from_the_cli_returns_the_stars(app: TestApp) {
    // Given a purchase
    let user = app.user(BUYER, "Vera", "en");
    let charge = bought_fifty(&user).await;

    // When an operator refunds it with the binary
    let args = [
        "credits",
        "refund",
        &BUYER.to_string(),
        &charge,
        "--reason",
        "bought by mistake",
        "--by",
        "alice",
    ];
    let out = aisha_cli(&app.db, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!(
            "refunded charge {charge} of {BUYER} (by operator:alice): 50 credits taken back, 0 available"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("the running server returns the 200 Stars"),
        "{stdout}"
    );

    // Then the server's worker returns the Stars and tells the user
    text(&user, "Refunded: ⭐200 are back").await;
    let recorded = refunds_in_ledger(&app, BUYER).await;
    assert!(
        matches!(recorded.as_slice(), [AccountEvent::PurchaseRefunded { by: RefundRequester::Operator { operator, reason }, .. }]
            if operator == "alice" && reason == "bought by mistake"),
        "{recorded:?}"
    );
    assert_eq!(app.telegram.refunds().len(), 1);

    // And running it again changes nothing
    let again = aisha_cli(&app.db, &args).await;
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("was refunded in the ledger already"));
    // A refusal is printed and nothing is enqueued: an unknown charge.
    let unknown = aisha_cli(
        &app.db,
        &[
            "credits",
            "refund",
            &BUYER.to_string(),
            "stxNope",
            "--reason",
            "x",
        ],
    )
    .await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no purchase with charge id stxNope"),
        "{unknown:?}"
    );
    let queue = WorkQueue::new(app.db.clone());
    let done = queue.count(refund::KIND, "done").await.unwrap();
    let pending = queue.count(refund::KIND, "pending").await.unwrap();
    assert_eq!((done + pending, app.telegram.refunds().len()), (1, 1));
    app.shutdown().await;
}

async fn a_promo_code_works_once_per_user(app: TestApp) {
    // Given codes an operator created with the binary
    for args in [
        &[
            "credits",
            "promo",
            "add",
            "Spring",
            "--credits",
            "25",
            "--max-uses",
            "10",
        ][..],
        &[
            "credits",
            "promo",
            "add",
            "OLD",
            "--credits",
            "5",
            "--until",
            "2020-01-31",
        ][..],
    ] {
        let out = aisha_cli(&app.db, args).await;
        assert!(out.status.success(), "{out:?}");
    }
    let dup = aisha_cli(
        &app.db,
        &["credits", "promo", "add", "spring", "--credits", "1"],
    )
    .await;
    assert!(!dup.status.success(), "{dup:?}");

    // When a user redeems one, twice, and tries an unknown and an expired one
    let user = app.user(BUYER, "Vera", "en");
    let balance = balance_shows(&user, "Available: 0 credits").await;
    press(&user, &balance, &button(&balance, "pm")).await;
    text(&user, "Send the promo code in one message").await;
    user.send_text("spring ");
    text(
        &user,
        "Promo code SPRING accepted: +25 credits. You now have 25",
    )
    .await;
    user.send_command("/promo SPRING");
    text(&user, "You have used promo code SPRING already").await;
    user.send_command("/promo NOPE");
    text(&user, "There is no promo code NOPE").await;
    user.send_command("/promo old");
    text(&user, "Promo code OLD has expired").await;

    // Then the credits came once, and one use is counted
    let account = AccountStore::new(app.db.clone()).load(BUYER).await.unwrap();
    assert_eq!(account.available(), 25);
    let list = aisha_cli(&app.db, &["credits", "promo", "list"]).await;
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("SPRING") && listed.contains("1/10"),
        "{listed}"
    );
    assert!(listed.contains("2020-02-01 00:00"), "{listed}");

    // And a Russian speaker reads it in Russian
    let ru = app.user(BUYER + 1, "Вера", "ru");
    ru.send_command("/promo nope");
    text(&ru, "Промокода NOPE нет").await;
    app.shutdown().await;
}

async fn two_users_racing_for_the_last_use_get_one_success(app: TestApp) {
    // Given a code with one use left
    let promos = PromoCodes::new(app.db.clone());
    promos
        .add("LAST", 30, None, Some(1), "ops")
        .await
        .expect("add");

    // When two users redeem it at the same moment
    let (anna, boris) = (app.user(7201, "Anna", "en"), app.user(7202, "Boris", "en"));
    anna.send_command("/promo LAST");
    boris.send_command("/promo LAST");

    // Then one gets the credits and the other is told it is used up
    let answered =
        |t: &[Entry]| bot_texts(t, "accepted") + bot_texts(t, "used as often as it may be") == 1;
    for u in [&anna, &boris] {
        u.wait_until(answered).await.expect("an answer");
    }
    let winners = [&anna, &boris]
        .iter()
        .filter(|u| count_bot_texts(u, "accepted") == 1)
        .count();
    assert_eq!(winners, 1);
    let ledger = AccountStore::new(app.db.clone());
    let total =
        ledger.load(7201).await.unwrap().available() + ledger.load(7202).await.unwrap().available();
    assert_eq!(total, 30);
    assert_eq!(promos.get("last").await.unwrap().unwrap().uses, 1);

    // And many claims racing in the store count exactly up to the limit
    promos
        .add("FEW", 1, None, Some(3), "ops")
        .await
        .expect("add");
    let claims = futures::future::join_all((0..12).map(|n| {
        let promos = promos.clone();
        async move { promos.claim("FEW", 8000 + n).await.expect("claim") }
    }))
    .await;
    assert_eq!(claims.iter().filter(|c| **c == Claim::Claimed).count(), 3);
    assert_eq!(claims.iter().filter(|c| **c == Claim::UsedUp).count(), 9);
    // A claim repeated after a crash finds its row instead of taking another use.
    let winner = 8000 + claims.iter().position(|c| *c == Claim::Claimed).unwrap() as i64;
    assert_eq!(
        promos.claim("FEW", winner).await.unwrap(),
        Claim::ClaimedBefore
    );
    assert_eq!(promos.get("FEW").await.unwrap().unwrap().uses, 3);
    app.shutdown().await;
}

on_both_backends_with_app! {
    a_refund_tapped_twice_at_once_is_recorded_and_returned_once => selling,
    a_refund_after_the_window_is_refused => selling_without_refunds,
    a_refund_after_the_credits_were_spent_is_refused => selling,
    an_operator_refund_from_the_cli_returns_the_stars => selling,
    a_promo_code_works_once_per_user => selling,
    two_users_racing_for_the_last_use_get_one_success => selling,
}
