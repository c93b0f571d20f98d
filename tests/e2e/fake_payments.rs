//! Payments in Telegram Stars through the fake Bot API, with a real teloxide bot over HTTP:
//! invoices, pre-checkout queries, successful payments, redeliveries and refunds.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use fake_telegram::{
    Entry, FakeTelegram, FakeUser, PayOptions, PreCheckoutState, PRE_CHECKOUT_DEADLINE,
};
use teloxide::{
    dispatching::{ShutdownToken, UpdateHandler},
    payloads::SendInvoice,
    prelude::*,
    requests::JsonRequest,
    types::{
        InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, TransactionPartner, UpdateKind,
        UserId,
    },
    ApiError, RequestError,
};
use tokio::task::JoinHandle;

const TOKEN: &str = "525252:fake-payments-token";

/// The description Telegram answered with, for errors teloxide has no variant for.
fn refusal<T: std::fmt::Debug>(result: Result<T, RequestError>) -> String {
    match result {
        Err(RequestError::Api(ApiError::Unknown(description))) => description,
        other => panic!("expected a Telegram error without a teloxide variant, got {other:?}"),
    }
}

fn stars_invoice(bot: &Bot, chat: ChatId, payload: &str) -> JsonRequest<SendInvoice> {
    bot.send_invoice(
        chat,
        "Credits",
        "50 credits for pictures",
        payload,
        "XTR",
        [LabeledPrice::new("50 credits", 50)],
    )
}

/// Purchases already credited, by charge id: a redelivered payment must not count twice.
#[derive(Clone, Default)]
struct Credited(Arc<Mutex<HashSet<String>>>);

/// A small shop: `/buy <payload>` sends an invoice; the payload decides how checkout goes.
fn schema() -> UpdateHandler<RequestError> {
    dptree::entry()
        .branch(Update::filter_pre_checkout_query().endpoint(on_pre_checkout))
        .branch(
            Update::filter_message()
                .branch(Message::filter_successful_payment().endpoint(on_paid))
                .branch(dptree::endpoint(on_message)),
        )
}

async fn on_message(bot: Bot, msg: Message) -> ResponseResult<()> {
    let Some(payload) = msg.text().and_then(|t| t.strip_prefix("/buy ")) else {
        return Ok(());
    };
    stars_invoice(&bot, msg.chat.id, payload).await?;
    Ok(())
}

async fn on_pre_checkout(bot: Bot, query: PreCheckoutQuery) -> ResponseResult<()> {
    let chat = ChatId(i64::try_from(query.from.id.0).unwrap_or_default());
    if query.invoice_payload.starts_with("refuse") {
        bot.answer_pre_checkout_query(query.id, false)
            .error_message("Sold out, sorry")
            .await?;
        return Ok(());
    }
    if query.invoice_payload.starts_with("slow") {
        // Past the test's checkout deadline, which runs from before this handler began.
        tokio::time::sleep(Duration::from_millis(100)).await;
        match bot.answer_pre_checkout_query(query.id, true).await {
            Err(RequestError::Api(ApiError::InvalidQueryId)) => {
                bot.send_message(chat, "late answer refused").await?;
            }
            other => {
                other?;
                bot.send_message(chat, "late answer accepted").await?;
            }
        }
        return Ok(());
    }
    bot.answer_pre_checkout_query(query.id, true).await?;
    Ok(())
}

async fn on_paid(bot: Bot, credited: Credited, msg: Message) -> ResponseResult<()> {
    let Some(payment) = msg.successful_payment() else {
        return Ok(());
    };
    let charge = payment.telegram_payment_charge_id.0.clone();
    let first = credited
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(charge.clone());
    let reply = if first {
        format!("Credited {} stars, charge {charge}", payment.total_amount)
    } else {
        format!("Already credited {charge}")
    };
    bot.send_message(msg.chat.id, reply).await?;
    Ok(())
}

struct RunningBot {
    shutdown: ShutdownToken,
    task: JoinHandle<()>,
}

fn start(fake: &FakeTelegram) -> RunningBot {
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let mut dispatcher = Dispatcher::builder(bot, schema())
        .dependencies(dptree::deps![Credited::default()])
        .build();
    let shutdown = dispatcher.shutdown_token();
    let task = tokio::spawn(async move { dispatcher.dispatch().await });
    RunningBot { shutdown, task }
}

impl RunningBot {
    async fn stop(self) {
        match self.shutdown.shutdown() {
            Ok(stopping) => stopping.await,
            Err(_) => self.task.abort(),
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// Asks the bot for an invoice and presses Pay under it; returns the pre-checkout query id.
async fn buy(
    user: &FakeUser,
    payload: &str,
    options: PayOptions,
) -> Result<String, Box<dyn std::error::Error>> {
    user.send_text(&format!("/buy {payload}"));
    let invoice = user.wait_for_invoice().await?;
    Ok(user.pay_with(invoice.message_id, options)?)
}

fn successful_payments(user: &FakeUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::User(m) if m.successful_payment().is_some()))
        .count()
}

#[tokio::test]
async fn stars_invoices_are_checked_like_telegram() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let anna = fake.user(6001, "Anna", "en");
    let chat = ChatId(anna.id());

    let sent = stars_invoice(&bot, chat, "order-1").await?;
    let invoice = sent.invoice().ok_or("teloxide should see an invoice")?;
    assert_eq!(invoice.title, "Credits");
    assert_eq!(invoice.description, "50 credits for pictures");
    assert_eq!(invoice.currency, "XTR");
    assert_eq!(invoice.total_amount, 50);
    assert_eq!(invoice.start_parameter, "");
    let stored = anna
        .message(sent.id.0)
        .and_then(|m| m.invoice().cloned())
        .ok_or("the fake should keep the invoice")?;
    assert_eq!(stored.payload, "order-1");

    // A keyboard of its own must start with the Pay button.
    let with_pay = InlineKeyboardMarkup::new([
        vec![InlineKeyboardButton::pay("Pay ⭐50")],
        vec![InlineKeyboardButton::callback("Not now", "cancel")],
    ]);
    let sent = stars_invoice(&bot, chat, "order-2")
        .reply_markup(with_pay)
        .await?;
    // teloxide drops the keyboard of invoice messages when parsing, so look at the chat's copy.
    let shown = anna
        .message(sent.id.0)
        .ok_or("the invoice should be in the chat")?;
    let labels: Vec<(&str, bool)> = shown.buttons().map(|b| (b.text.as_str(), b.pay)).collect();
    assert_eq!(labels, [("Pay ⭐50", true), ("Not now", false)]);
    let without_pay = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Buy", "buy")]]);
    assert_eq!(
        refusal(
            stars_invoice(&bot, chat, "order-3")
                .reply_markup(without_pay)
                .await
        ),
        "Bad Request: REPLY_MARKUP_BUY_EMPTY"
    );
    let pay_elsewhere = InlineKeyboardMarkup::new([[InlineKeyboardButton::pay("Pay")]]);
    assert_eq!(
        refusal(
            bot.send_message(chat, "not an invoice")
                .reply_markup(pay_elsewhere)
                .await
        ),
        "Bad Request: BUTTON_TYPE_INVALID"
    );

    // Digital goods are sold in Stars only: no provider, one price, whole Stars.
    let dollars = bot
        .send_invoice(
            chat,
            "Credits",
            "50 credits",
            "order-4",
            "USD",
            [LabeledPrice::new("50 credits", 500)],
        )
        .await;
    assert_eq!(refusal(dollars), "Bad Request: PAYMENT_PROVIDER_INVALID");
    let with_provider = stars_invoice(&bot, chat, "order-5")
        .provider_token("284685063:TEST:abc")
        .await;
    assert_eq!(refusal(with_provider), "Bad Request: STARS_INVOICE_INVALID");
    let two_prices = bot
        .send_invoice(
            chat,
            "Credits",
            "50 credits",
            "order-6",
            "XTR",
            [
                LabeledPrice::new("credits", 40),
                LabeledPrice::new("fee", 10),
            ],
        )
        .await;
    assert_eq!(refusal(two_prices), "Bad Request: STARS_INVOICE_INVALID");
    let with_tips = stars_invoice(&bot, chat, "order-7").max_tip_amount(5).await;
    assert_eq!(refusal(with_tips), "Bad Request: STARS_INVOICE_INVALID");
    let free = bot
        .send_invoice(
            chat,
            "Credits",
            "Free",
            "order-8",
            "XTR",
            [LabeledPrice::new("nothing", 0)],
        )
        .await;
    assert_eq!(refusal(free), "Bad Request: Total price must be positive");

    // Lengths: title 1-32 characters, description 1-255, payload 1-128 bytes.
    assert_eq!(
        refusal(stars_invoice(&bot, chat, "").await),
        "Bad Request: Parameter \"payload\" is required"
    );
    assert_eq!(
        refusal(stars_invoice(&bot, chat, &"p".repeat(129)).await),
        "Bad Request: INVOICE_PAYLOAD_INVALID"
    );
    stars_invoice(&bot, chat, &"p".repeat(128)).await?;
    let empty_title = bot
        .send_invoice(chat, "", "d", "order-9", "XTR", [LabeledPrice::new("x", 1)])
        .await;
    assert_eq!(
        refusal(empty_title),
        "Bad Request: Parameter \"title\" is required"
    );
    let long_title = bot
        .send_invoice(
            chat,
            "т".repeat(33),
            "d",
            "order-10",
            "XTR",
            [LabeledPrice::new("x", 1)],
        )
        .await;
    assert!(refusal(long_title).starts_with("Bad Request: "));
    bot.send_invoice(
        chat,
        "т".repeat(32),
        "d".repeat(255),
        "order-11",
        "XTR",
        [LabeledPrice::new("x", 1)],
    )
    .await?;
    let long_description = bot
        .send_invoice(
            chat,
            "Credits",
            "d".repeat(256),
            "order-12",
            "XTR",
            [LabeledPrice::new("x", 1)],
        )
        .await;
    assert!(refusal(long_description).starts_with("Bad Request: "));

    let rendered = anna.render_transcript();
    assert!(
        rendered.contains("bot › [invoice \"Credits\", 50 XTR]"),
        "{rendered}"
    );
    assert!(rendered.contains("[Pay 50 XTR]"), "{rendered}");
    assert!(rendered.contains("[Pay ⭐50]→pay"), "{rendered}");
    assert!(
        fake.pre_checkouts().is_empty(),
        "nobody has pressed Pay yet"
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_purchase_goes_from_invoice_to_successful_payment(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let boris = fake.user(6002, "Boris", "en");

    let sent = stars_invoice(&bot, ChatId(boris.id()), "order-7").await?;
    let query_id = boris.pay(sent.id.0)?;

    let updates = bot.get_updates().await?;
    assert_eq!(updates.len(), 1);
    let UpdateKind::PreCheckoutQuery(query) = &updates[0].kind else {
        panic!("expected a pre-checkout query, got {:?}", updates[0].kind);
    };
    assert_eq!(query.id.0, query_id);
    assert_eq!(query.from.id.0, 6002);
    assert_eq!(query.currency, "XTR");
    assert_eq!(query.total_amount, 50);
    assert_eq!(query.invoice_payload, "order-7");
    bot.answer_pre_checkout_query(query.id.clone(), true)
        .await?;
    let answer = boris.wait_for_pre_checkout_answer(&query_id).await?;
    assert!(answer.ok && answer.error_message.is_none());
    let again = bot.answer_pre_checkout_query(query.id.clone(), true).await;
    assert!(
        matches!(again, Err(RequestError::Api(ApiError::InvalidQueryId))),
        "a query is answered once: {again:?}"
    );

    let offset = i32::try_from(updates[0].id.0)? + 1;
    let updates = bot.get_updates().offset(offset).await?;
    assert_eq!(updates.len(), 1);
    let UpdateKind::Message(message) = &updates[0].kind else {
        panic!("expected a message, got {:?}", updates[0].kind);
    };
    assert_eq!(message.chat.id, ChatId(6002));
    assert_eq!(message.from.as_ref().map(|u| u.id.0), Some(6002));
    let payment = message
        .successful_payment()
        .ok_or("the message should carry successful_payment")?;
    assert_eq!(payment.currency, "XTR");
    assert_eq!(payment.total_amount, 50);
    assert_eq!(payment.invoice_payload, "order-7");
    assert_eq!(payment.provider_payment_charge_id, "");
    let charge_id = payment.telegram_payment_charge_id.0.clone();
    assert!(!charge_id.is_empty());

    let charges = fake.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].telegram_payment_charge_id, charge_id);
    assert_eq!((charges[0].user_id, charges[0].total_amount), (6002, 50));
    let checkout = &fake.pre_checkouts()[0];
    assert_eq!(
        checkout.state,
        PreCheckoutState::Approved {
            telegram_payment_charge_id: charge_id.clone()
        }
    );
    assert!(checkout
        .answered_after
        .is_some_and(|t| t < PRE_CHECKOUT_DEADLINE));
    assert_eq!(
        boris.wait_for_payment_outcome(&query_id).await?,
        checkout.state
    );

    // A second purchase gets its own charge id.
    let second = boris.pay(sent.id.0)?;
    let updates = bot
        .get_updates()
        .offset(i32::try_from(updates[0].id.0)? + 1)
        .await?;
    let UpdateKind::PreCheckoutQuery(query) = &updates[0].kind else {
        panic!("expected a pre-checkout query, got {:?}", updates[0].kind);
    };
    bot.answer_pre_checkout_query(query.id.clone(), true)
        .await?;
    boris.wait_for_payment_outcome(&second).await?;
    let charges = fake.charges();
    assert_eq!(charges.len(), 2);
    assert_ne!(
        charges[0].telegram_payment_charge_id,
        charges[1].telegram_payment_charge_id
    );

    let transactions = bot.get_star_transactions().await?.transactions;
    assert_eq!(transactions.len(), 2);
    assert_eq!(transactions[0].id.0, charge_id);
    assert_eq!(transactions[0].amount, 50);
    match &transactions[0].source {
        Some(TransactionPartner::User(partner)) => {
            assert_eq!(partner.user.id.0, 6002);
            let invoice = partner.kind.invoice_payment().ok_or("an invoice payment")?;
            assert_eq!(invoice.invoice_payload.as_deref(), Some("order-7"));
        }
        other => panic!("the user should be the source, got {other:?}"),
    }
    assert_eq!(bot.get_my_star_balance().await?.amount, 100);

    let rendered = boris.render_transcript();
    assert!(
        rendered.contains("Boris ⇢ pays 50 XTR for invoice #1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("bot ⇠ approved the checkout"),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!("Boris › [paid 50 XTR, charge {charge_id}]")),
        "{rendered}"
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_declined_checkout_takes_no_stars() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let running = start(&fake);
    let carla = fake.user(6003, "Carla", "en");

    let query_id = buy(&carla, "refuse-1", PayOptions::default()).await?;
    let answer = carla.wait_for_pre_checkout_answer(&query_id).await?;
    assert!(!answer.ok);
    assert_eq!(answer.error_message.as_deref(), Some("Sold out, sorry"));
    assert_eq!(
        carla.wait_for_payment_outcome(&query_id).await?,
        PreCheckoutState::Declined {
            error_message: "Sold out, sorry".to_owned()
        }
    );
    running.stop().await;

    assert!(fake.charges().is_empty());
    assert_eq!(successful_payments(&carla), 0);
    let rendered = carla.render_transcript();
    assert!(
        rendered.contains("bot ⇠ declined the checkout: Sold out, sorry"),
        "{rendered}"
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unanswered_checkout_expires_and_nothing_is_paid(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    fake.set_pre_checkout_deadline(Duration::from_millis(50));
    let running = start(&fake);
    let dana = fake.user(6004, "Dana", "en");

    let query_id = buy(&dana, "slow-1", PayOptions::default()).await?;
    assert_eq!(
        dana.wait_for_payment_outcome(&query_id).await?,
        PreCheckoutState::Expired
    );
    // The bot answers after the deadline and is told the query is too old.
    dana.wait_for_bot_text("late answer refused").await?;
    running.stop().await;

    assert!(fake.charges().is_empty());
    assert_eq!(successful_payments(&dana), 0);
    assert_eq!(fake.requests_of("answerPreCheckoutQuery").len(), 1);
    assert_eq!(fake.pre_checkouts()[0].answered_after, None);
    let transcript = dana.transcript();
    assert!(transcript
        .iter()
        .any(|e| matches!(e, Entry::PaymentExpired { query_id: q } if *q == query_id)));
    assert!(!transcript
        .iter()
        .any(|e| matches!(e, Entry::PreCheckoutAnswered(_))));
    let rendered = dana.render_transcript();
    assert!(
        rendered.contains("unanswered: payment cancelled"),
        "{rendered}"
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_redelivered_successful_payment_is_credited_once(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let running = start(&fake);
    let erin = fake.user(6005, "Erin", "en");

    let twice = PayOptions {
        deliver_successful_payment_twice: true,
        ..PayOptions::default()
    };
    let query_id = buy(&erin, "order-1", twice).await?;
    let credited = erin.wait_for_bot_text("Credited 50 stars").await?;
    let charge_id = match erin.wait_for_payment_outcome(&query_id).await? {
        PreCheckoutState::Approved {
            telegram_payment_charge_id,
        } => telegram_payment_charge_id,
        other => panic!("the payment should go through, got {other:?}"),
    };
    assert!(credited.text().is_some_and(|t| t.ends_with(&charge_id)));
    erin.wait_for_bot_text(&format!("Already credited {charge_id}"))
        .await?;

    // Later still, Telegram may deliver it yet again.
    fake.redeliver_successful_payment(&charge_id)?;
    erin.wait_for_bot_text(&format!("Already credited {charge_id}"))
        .await?;
    assert!(fake.redeliver_successful_payment("no-such-charge").is_err());
    running.stop().await;

    assert_eq!(fake.charges().len(), 1);
    assert_eq!(
        successful_payments(&erin),
        1,
        "one message, delivered three times"
    );
    let credits = erin
        .transcript()
        .iter()
        .filter(
            |e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.starts_with("Credited"))),
        )
        .count();
    assert_eq!(credits, 1);
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_charge_is_refunded_once() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let running = start(&fake);
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let fred = fake.user(6006, "Fred", "en");
    let gina = fake.user(6007, "Gina", "en");

    let query_id = buy(&fred, "order-1", PayOptions::default()).await?;
    fred.wait_for_bot_text("Credited 50 stars").await?;
    let PreCheckoutState::Approved {
        telegram_payment_charge_id: charge_id,
    } = fred.wait_for_payment_outcome(&query_id).await?
    else {
        panic!("the payment should go through");
    };

    assert_eq!(
        refusal(
            bot.refund_star_payment(UserId(6007), charge_id.clone().into())
                .await
        ),
        "Bad Request: CHARGE_NOT_FOUND",
        "a charge is refunded only to the user who paid"
    );
    bot.refund_star_payment(UserId(6006), charge_id.clone().into())
        .await?;
    assert_eq!(
        refusal(
            bot.refund_star_payment(UserId(6006), charge_id.clone().into())
                .await
        ),
        "Bad Request: CHARGE_ALREADY_REFUNDED"
    );
    assert_eq!(
        refusal(
            bot.refund_star_payment(UserId(6006), "stxUnknownCharge".to_owned().into())
                .await
        ),
        "Bad Request: CHARGE_NOT_FOUND"
    );
    let refunded = fred
        .wait_until(|t| {
            t.iter()
                .any(|e| matches!(e, Entry::User(m) if m.refunded_payment().is_some()))
        })
        .await?;
    assert!(!refunded.is_empty());

    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].telegram_payment_charge_id, charge_id);
    assert_eq!((refunds[0].user_id, refunds[0].total_amount), (6006, 50));
    assert!(fake.charges()[0].refunded);
    assert_eq!(fake.star_balance(), 0);
    let transactions = bot.get_star_transactions().await?.transactions;
    assert_eq!(transactions.len(), 2);
    assert!(transactions[0].source.is_some());
    assert!(
        matches!(&transactions[1].receiver, Some(TransactionPartner::User(p)) if p.user.id.0 == 6006),
        "{:?}",
        transactions[1]
    );
    running.stop().await;

    let rendered = fred.render_transcript();
    assert!(
        rendered.contains(&format!("Fred › [refunded 50 XTR, charge {charge_id}]")),
        "{rendered}"
    );
    assert!(gina.transcript().is_empty());
    fake.shutdown().await;
    Ok(())
}
