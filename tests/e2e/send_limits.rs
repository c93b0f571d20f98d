//! The bot's send budgets against the fake Bot API over real HTTP: messages beyond a chat's
//! burst are spaced out, other chats are not held up, and a 429 is waited out and delivered once.
//! Timings are only checked from below (never earlier than allowed), which load cannot break.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aisha::bot::send::sending;
use aisha::bot::{SendLimiter, SendLimits};
use fake_telegram::{Entry, FakeTelegram, FakeUser};
use teloxide::prelude::*;

const TOKEN: &str = "515151:limits-token";

async fn send(bot: &Bot, limiter: &SendLimiter, chat: ChatId, text: String) -> Message {
    sending(limiter, chat, 1, "sendMessage", || {
        bot.send_message(chat, text.clone()).send()
    })
    .await
    .expect("delivered")
}

/// The texts of the bot's messages in a chat, in order.
fn bot_texts(user: &FakeUser) -> Vec<String> {
    user.transcript()
        .iter()
        .filter_map(|e| match e {
            Entry::Bot(m) => m.text().map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn messages_beyond_a_chats_burst_wait_a_second_each_while_other_chats_go_on(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let limiter = Arc::new(SendLimiter::new(SendLimits::production()));
    let anna = fake.user(7001, "Anna", "ru");
    let boris = fake.user(7002, "Boris", "en");

    let start = Instant::now();
    for n in 1..=5 {
        send(&bot, &limiter, ChatId(anna.id()), format!("anna {n}")).await;
    }
    let anna_done = Instant::now();
    send(&bot, &limiter, ChatId(boris.id()), "boris 1".into()).await;

    let texts: Vec<String> = fake
        .requests_of("sendMessage")
        .iter()
        .map(|r| r.params["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["anna 1", "anna 2", "anna 3", "anna 4", "anna 5", "boris 1"]
    );
    let at: Vec<Instant> = fake
        .requests_of("sendMessage")
        .iter()
        .map(|r| r.received_at)
        .collect();
    // Three at once (Telegram tolerates short bursts), then one a second.
    assert!(at[3] >= start + Duration::from_secs(1), "4th too early");
    assert!(at[4] >= start + Duration::from_secs(2), "5th too early");
    assert!(anna_done >= start + Duration::from_secs(2));
    // Every message arrived exactly once, in order.
    assert_eq!(
        bot_texts(&anna),
        ["anna 1", "anna 2", "anna 3", "anna 4", "anna 5"]
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_flood_wait_is_waited_out_and_the_message_delivered_once(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let limiter = SendLimiter::new(SendLimits::production());
    let carla = fake.user(7003, "Carla", "en");
    let chat = ChatId(carla.id());

    fake.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        Some(1),
    );
    send(&bot, &limiter, chat, "first".into()).await;
    // The chat stays held back from the refusal: nothing reaches Telegram before the second.
    send(&bot, &limiter, chat, "second".into()).await;

    let requests = fake.requests_of("sendMessage");
    assert_eq!(requests.len(), 3, "refused, retried, then the second");
    let refused_at = requests[0].received_at;
    assert!(requests[1].received_at >= refused_at + Duration::from_secs(1));
    assert!(requests[2].received_at >= refused_at + Duration::from_secs(1));
    assert_eq!(bot_texts(&carla), ["first", "second"]);
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_chat_never_reachable_again_fails_at_once_without_retries(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let limiter = SendLimiter::new(SendLimits::production());
    let dmitry = fake.user(7004, "Dmitry", "ru");
    fake.fail_next(
        "sendMessage",
        403,
        "Forbidden: bot was blocked by the user",
        None,
    );
    let result = sending(&limiter, ChatId(dmitry.id()), 1, "sendMessage", || {
        bot.send_message(ChatId(dmitry.id()), "hello").send()
    })
    .await;
    let error = result.expect_err("a blocked bot cannot send");
    assert!(aisha::bot::send::is_unreachable_chat(&error), "{error:?}");
    assert_eq!(fake.requests_of("sendMessage").len(), 1);
    fake.shutdown().await;
    Ok(())
}

/// One user floods the bot (120 messages, more than Telegram lets a user forward at once) with
/// Telegram's production budgets in force: another user's /start is answered while the flood is
/// still being answered a message a second, the flooder loses only their own excess, and is told
/// once to slow down.
#[tokio::test]
async fn a_flooding_chat_delays_no_other_chat_and_loses_only_its_excess() {
    let app = crate::support::spawn_app().await;
    app.set_send_limits(SendLimits::production());
    let flooder = app
        .user(7301, "Flood", "en")
        .with_timeout(Duration::from_secs(90));
    let calm = app.user(7302, "Calm", "en");
    for n in 0..120 {
        flooder.send_text(&format!("message {n}"));
    }
    calm.send_command("/start");
    calm.wait_for_bot_text("Hi, Calm!").await.expect("answered");
    let flooder_answers = bot_texts(&flooder).len();
    assert!(
        flooder_answers < 10,
        "the calm user waited behind {flooder_answers} answers to the flood"
    );

    flooder
        .wait_for_bot_text("faster than I can answer")
        .await
        .expect("the flooder is told to slow down");
    let texts = bot_texts(&flooder);
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("faster than I can answer"))
            .count(),
        1
    );
    // The one being handled plus those waiting behind it.
    let answered = texts.len() - 1;
    assert!(
        answered <= aisha::bot::inbox::MAX_WAITING + 1,
        "{answered} of the flood were answered"
    );
    app.shutdown().await;
}
