//! Credits sold in Telegram Stars, end to end: the real bot on the fake Bot API sells a pack
//! (`/buy` → invoice → pre-checkout → successful payment → balance), credits a payment delivered
//! twice once, credits after a restart a payment whose update the bot never handled (from
//! Telegram's Star transactions), declines a checkout whose amount is not the pack's price,
//! answers `/paysupport` and `/terms`, and with `PAYMENTS=off` sells nothing. Each story runs on
//! SQLite and PostgreSQL.

use aisha::bot::pricing::{CreditPacks, PaymentsConfig};
use aisha::store::accounts::AccountStore;
use fake_telegram::{ChatMessage, Entry, FakeUser, PayOptions, PreCheckoutState};

use crate::steps::{button, count_bot_texts, press, text};
use crate::support::{postgres_url, spawn_app_with, TestApp, TestAppSettings};

pub const BUYER: i64 = 7101;

pub fn selling(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        database_url,
        payments: PaymentsConfig {
            packs: CreditPacks::parse("10:50,50:200").expect("packs"),
            support_contact: Some("@aisha_help".into()),
            ..PaymentsConfig::stars()
        },
        ..TestAppSettings::default()
    }
}

fn not_selling(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        database_url,
        ..TestAppSettings::default()
    }
}

/// `/buy` → the pack list → the 50-credit pack's invoice.
pub async fn invoice_for_fifty(user: &FakeUser) -> ChatMessage {
    user.send_command("/buy");
    let packs = text(user, "Choose a pack").await;
    let data = button(&packs, "bp:50:200");
    press(user, &packs, &data).await;
    user.wait_for_invoice().await.expect("an invoice")
}

/// Pays an invoice and waits until Telegram took the Stars; returns the charge id.
pub async fn pay(user: &FakeUser, invoice: &ChatMessage, options: PayOptions) -> String {
    let query = user
        .pay_with(invoice.message_id, options)
        .expect("press Pay");
    match user
        .wait_for_payment_outcome(&query)
        .await
        .expect("outcome")
    {
        PreCheckoutState::Approved {
            telegram_payment_charge_id,
        } => telegram_payment_charge_id,
        other => panic!("the payment did not go through: {other:?}"),
    }
}

/// How many `CreditsPurchased` events the buyer's ledger holds.
async fn purchases_recorded(ledger: &AccountStore) -> usize {
    ledger
        .history(BUYER)
        .await
        .expect("history")
        .iter()
        .filter(|e| e.event_type == "CreditsPurchased")
        .count()
}

pub async fn balance_shows(user: &FakeUser, needle: &str) -> ChatMessage {
    user.send_command("/balance");
    text(user, needle).await
}

// ---------------------------------------------------------------------------------------------

async fn a_bought_pack_shows_in_the_balance(app: TestApp) {
    let user = app.user(BUYER, "Vera", "en");
    user.send_command("/start");
    let welcome = text(&user, "Vera").await;
    assert!(
        welcome
            .buttons()
            .any(|b| b.callback_data.as_deref() == Some("b")),
        "the menu should offer credits: {welcome:#?}"
    );

    let invoice = invoice_for_fifty(&user).await;
    let details = invoice.invoice().expect("invoice details");
    assert_eq!(details.currency, "XTR");
    assert_eq!(details.total_amount, 200);
    assert_eq!(details.prices.len(), 1);
    assert!(
        details.payload.starts_with("pack:50:200:"),
        "{}",
        details.payload
    );

    let charge = pay(&user, &invoice, PayOptions::default()).await;
    text(&user, "Payment received: +50 credits").await;
    let balance = balance_shows(&user, "Available: 50 credits").await;
    assert!(
        balance
            .text()
            .is_some_and(|t| t.contains("bought for ⭐200")),
        "{balance:#?}"
    );

    let account = AccountStore::new(app.db.clone())
        .load(BUYER)
        .await
        .expect("load");
    assert_eq!(account.available(), 50);
    assert_eq!(account.purchased, 50);
    assert_eq!(
        account.purchases.get(&charge).map(|p| (p.credits, p.stars)),
        Some((50, 200))
    );
    app.shutdown().await;
}

async fn a_payment_delivered_twice_is_credited_once(app: TestApp) {
    let user = app.user(BUYER, "Vera", "en");
    let invoice = invoice_for_fifty(&user).await;
    let twice = PayOptions {
        deliver_successful_payment_twice: true,
        ..PayOptions::default()
    };
    let charge = pay(&user, &invoice, twice).await;
    text(&user, "Payment received").await;
    // And once more, later, as Telegram may.
    app.telegram
        .redeliver_successful_payment(&charge)
        .expect("redeliver");
    // Updates of one chat are handled in order: once /balance is answered, all three deliveries
    // of the payment have been.
    balance_shows(&user, "Available: 50 credits").await;
    let deliveries = user
        .transcript()
        .iter()
        .filter(|e| matches!(e, Entry::User(m) if m.successful_payment().is_some()))
        .count();
    assert_eq!(deliveries, 1, "the service message is one message");
    assert_eq!(count_bot_texts(&user, "Payment received"), 1);

    let ledger = AccountStore::new(app.db.clone());
    let account = ledger.load(BUYER).await.expect("load");
    assert_eq!(account.available(), 50);
    assert_eq!(account.purchases.len(), 1);
    assert_eq!(purchases_recorded(&ledger).await, 1);
    app.shutdown().await;
}

async fn a_payment_the_bot_never_handled_is_credited_once_after_a_restart(app: TestApp) {
    let user = app.user(BUYER, "Vera", "en");
    let invoice = invoice_for_fifty(&user).await;
    // Telegram takes the Stars; the bot fetched the update and died before it was recorded.
    let lost = PayOptions {
        lose_successful_payment: true,
        ..PayOptions::default()
    };
    let charge = pay(&user, &invoice, lost).await;
    let ledger = AccountStore::new(app.db.clone());
    assert!(ledger.load(BUYER).await.expect("load").purchases.is_empty());

    // At the next start the bot reads Telegram's Star transactions and finds the payment.
    let app = app.restart().await;
    text(&user, "Payment received: +50 credits").await;
    let ledger = AccountStore::new(app.db.clone());
    let account = ledger.load(BUYER).await.expect("load");
    assert_eq!(account.available(), 50);
    assert!(account.purchases.contains_key(&charge));

    // Another start finds it again and credits nothing more.
    let app = app.restart().await;
    balance_shows(&user, "Available: 50 credits").await;
    assert_eq!(count_bot_texts(&user, "Payment received"), 1);
    assert_eq!(
        purchases_recorded(&AccountStore::new(app.db.clone())).await,
        1
    );
    app.shutdown().await;
}

async fn a_checkout_for_another_amount_is_declined(app: TestApp) {
    let user = app.user(BUYER, "Vera", "en");
    let invoice = invoice_for_fifty(&user).await;
    let forged = PayOptions {
        forged_total_amount: Some(1),
        ..PayOptions::default()
    };
    let query = user
        .pay_with(invoice.message_id, forged)
        .expect("press Pay");
    let answer = user
        .wait_for_pre_checkout_answer(&query)
        .await
        .expect("an answer in time");
    assert!(!answer.ok);
    assert!(
        answer
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("out of date")),
        "{answer:?}"
    );
    assert!(matches!(
        user.wait_for_payment_outcome(&query)
            .await
            .expect("outcome"),
        PreCheckoutState::Declined { .. }
    ));
    assert!(app.telegram.charges().is_empty());
    balance_shows(&user, "Available: 0 credits").await;
    app.shutdown().await;
}

async fn paysupport_and_terms_answer(app: TestApp) {
    let user = app.user(BUYER, "Vera", "en");
    user.send_command("/paysupport");
    text(&user, "@aisha_help").await;
    user.send_command("/terms");
    let terms = text(&user, "Terms").await;
    let terms = terms.text().expect("text");
    assert!(terms.contains("cannot be transferred"), "{terms}");
    assert!(terms.contains("within 14 days"), "{terms}");

    let ru = app.user(BUYER + 1, "Вера", "ru");
    ru.send_command("/terms");
    text(&ru, "передать их другому нельзя").await;
    ru.send_command("/paysupport");
    text(&ru, "@aisha_help").await;
    app.shutdown().await;
}

async fn with_payments_off_nothing_is_sold(app: TestApp) {
    let user = app.user(BUYER, "Vera", "en");
    user.send_command("/start");
    let welcome = text(&user, "Vera").await;
    assert!(
        !welcome
            .buttons()
            .any(|b| b.callback_data.as_deref() == Some("b")),
        "no buy button when payments are off: {welcome:#?}"
    );
    for command in ["/buy", "/balance", "/paysupport", "/terms"] {
        user.send_command(command);
        text(&user, "Payments are off").await;
    }
    // A forged pack button sends no invoice either.
    let query = user
        .press_forged_button(welcome.message_id, "bp:50:200")
        .expect("press");
    let answer = user.wait_for_callback_answer(&query).await.expect("answer");
    assert!(
        answer
            .text
            .as_deref()
            .is_some_and(|t| t.contains("Payments are off")),
        "{answer:?}"
    );
    assert!(app.telegram.requests_of("sendInvoice").is_empty());
    let menu: Vec<String> = app
        .telegram
        .my_commands("en")
        .into_iter()
        .map(|c| c.command)
        .collect();
    assert!(!menu.iter().any(|c| c == "buy"), "{menu:?}");
    assert!(AccountStore::new(app.db.clone())
        .accounts()
        .await
        .expect("accounts")
        .is_empty());
    app.shutdown().await;
}

on_both_backends_with_app! {
    a_bought_pack_shows_in_the_balance => selling,
    a_payment_delivered_twice_is_credited_once => selling,
    a_payment_the_bot_never_handled_is_credited_once_after_a_restart => selling,
    a_checkout_for_another_amount_is_declined => selling,
    paysupport_and_terms_answer => selling,
    with_payments_off_nothing_is_sold => not_selling,
}
