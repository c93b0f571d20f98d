//! The fake Telegram Bot API against a real teloxide long-polling bot, over real HTTP.

use std::time::Duration;

use bytes::Bytes;
use fake_telegram::{sample_jpeg, ChatMessage, Content, Entry, FakeTelegram, FakeUser};
use teloxide::{
    adaptors::throttle::Limits,
    dispatching::{ShutdownToken, UpdateHandler},
    net::Download,
    prelude::*,
    types::{
        BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia,
        InputMediaPhoto, MessageId,
    },
    ApiError, RequestError,
};
use tokio::task::JoinHandle;

const TOKEN: &str = "424242:fake-token";

/// A plain bot for downloads, which teloxide's adaptors do not forward.
#[derive(Clone)]
struct Files(Bot);

/// A small bot covering what ours does with Telegram: echo, keyboards, edits, photos in and out.
fn schema<B>() -> UpdateHandler<RequestError>
where
    B: Requester<Err = RequestError> + Clone + Send + Sync + 'static,
{
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message::<B>))
        .branch(Update::filter_callback_query().endpoint(on_button::<B>))
}

async fn on_message<B>(bot: B, files: Files, msg: Message) -> ResponseResult<()>
where
    B: Requester<Err = RequestError> + Clone + Send + Sync + 'static,
{
    let chat = msg.chat.id;
    if let Some(photos) = msg.photo() {
        let Some(largest) = photos.last() else {
            return Ok(());
        };
        let file = bot.get_file(largest.file.id.clone()).await?;
        let mut downloaded: Vec<u8> = Vec::new();
        files
            .0
            .download_file(&file.path, &mut downloaded)
            .await
            .map_err(|e| RequestError::Io(std::io::Error::other(e).into()))?;
        let album = msg
            .media_group_id()
            .map(|g| format!(" in album {g}"))
            .unwrap_or_default();
        let reply = format!(
            "Got your photo{album}: {} bytes, {}x{}",
            downloaded.len(),
            largest.width,
            largest.height
        );
        bot.send_message(chat, reply).await?;
        if msg.media_group_id().is_none() {
            bot.send_photo(
                chat,
                InputFile::memory(sample_jpeg(64, 48, 7)).file_name("back.jpg"),
            )
            .caption("A picture for you")
            .await?;
        }
        return Ok(());
    }
    if let Some(document) = msg.document() {
        let name = document.file_name.clone().unwrap_or_default();
        let mime = document
            .mime_type
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        bot.send_message(
            chat,
            format!("Got document {name} ({mime}, {} bytes)", document.file.size),
        )
        .await?;
        return Ok(());
    }
    let text = msg.text().unwrap_or_default();
    match text {
        "/start" => {
            let name = msg
                .from
                .as_ref()
                .map(|u| u.first_name.clone())
                .unwrap_or_default();
            let lang = msg
                .from
                .as_ref()
                .and_then(|u| u.language_code.clone())
                .unwrap_or_default();
            bot.send_message(chat, format!("Hello, {name}! ({lang})"))
                .await?;
        }
        "menu" => {
            let keyboard = InlineKeyboardMarkup::new([[
                InlineKeyboardButton::callback("Red", "color:red"),
                InlineKeyboardButton::callback("Blue", "color:blue"),
            ]]);
            bot.send_message(chat, "Pick a colour")
                .reply_markup(keyboard)
                .await?;
        }
        "album" => {
            let media = [1u8, 2].map(|seed| {
                InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(sample_jpeg(
                    40, 30, seed,
                ))))
            });
            bot.send_media_group(chat, media).await?;
        }
        "doc" => {
            bot.send_document(
                chat,
                InputFile::memory(&b"plain words"[..]).file_name("notes.txt"),
            )
            .await?;
        }
        other => {
            bot.send_message(chat, format!("You said: {other}")).await?;
        }
    }
    Ok(())
}

async fn on_button<B>(bot: B, query: CallbackQuery) -> ResponseResult<()>
where
    B: Requester<Err = RequestError> + Clone + Send + Sync + 'static,
{
    let colour = query
        .data
        .as_deref()
        .and_then(|d| d.strip_prefix("color:"))
        .unwrap_or("nothing")
        .to_owned();
    bot.answer_callback_query(query.id.clone())
        .text(format!("{colour} it is"))
        .await?;
    if let Some(message) = query.regular_message() {
        bot.edit_message_text(message.chat.id, message.id, format!("You picked {colour}"))
            .await?;
    }
    Ok(())
}

/// A running dispatcher and the way to stop it.
struct RunningBot {
    shutdown: ShutdownToken,
    task: JoinHandle<()>,
}

fn start<B>(bot: B, fake: &FakeTelegram) -> RunningBot
where
    B: Requester<Err = RequestError> + Clone + Send + Sync + 'static,
    <B as Requester>::GetUpdates: Send,
    <B as Requester>::GetWebhookInfo: Send,
    <B as Requester>::GetMe: Send,
    <B as Requester>::DeleteWebhook: Send,
{
    let files = Files(Bot::new(TOKEN).set_api_url(fake.api_url()));
    let mut dispatcher = Dispatcher::builder(bot, schema::<B>())
        .dependencies(dptree::deps![files])
        .build();
    let shutdown = dispatcher.shutdown_token();
    let task = tokio::spawn(async move { dispatcher.dispatch().await });
    RunningBot { shutdown, task }
}

impl RunningBot {
    async fn stop(self) {
        // The token refuses until the dispatcher has started; by the time a test stops it, it has.
        match self.shutdown.shutdown() {
            Ok(stopping) => stopping.await,
            Err(_) => self.task.abort(),
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

fn bot_texts(user: &FakeUser) -> Vec<String> {
    user.transcript()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Bot(m) => m.text().map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_teloxide_bot_talks_to_a_user_through_the_fake() -> Result<(), Box<dyn std::error::Error>>
{
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    bot.set_my_commands([BotCommand::new("start", "Start over")])
        .await?;
    assert_eq!(fake.my_commands("").len(), 1);
    let running = start(bot, &fake);
    let anna = fake.user(1001, "Anna", "ru");

    anna.send_command("/start");
    assert_eq!(
        anna.next_bot_message().await?.text(),
        Some("Hello, Anna! (ru)")
    );

    anna.send_text("hi there");
    assert_eq!(
        anna.next_bot_message().await?.text(),
        Some("You said: hi there")
    );

    // Inline keyboard, a pressed button, its answer and the message edited in place.
    anna.send_text("menu");
    let menu = anna.next_bot_message().await?;
    let labels: Vec<&str> = menu.buttons().map(|b| b.text.as_str()).collect();
    assert_eq!(labels, ["Red", "Blue"]);
    assert_eq!(menu.callback_data("Blue"), Some("color:blue"));
    let query = anna.press_button(menu.message_id, "color:blue")?;
    let answer = anna.wait_for_callback_answer(&query).await?;
    assert_eq!(answer.text.as_deref(), Some("blue it is"));
    let edited = anna
        .wait_for_edit(menu.message_id, |m| m.text() == Some("You picked blue"))
        .await?;
    assert!(
        edited.inline_keyboard().is_empty(),
        "an edit without reply_markup drops the keyboard"
    );
    assert!(
        anna.press_button(menu.message_id, "color:red").is_err(),
        "the keyboard is gone"
    );

    // A photo: the bot finds it with getFile, downloads it, and sends one back.
    let photo = sample_jpeg(320, 240, 3);
    anna.send_photo(photo.clone());
    let reply = anna.next_bot_message().await?;
    assert_eq!(
        reply.text(),
        Some(format!("Got your photo: {} bytes, 320x240", photo.len()).as_str())
    );
    let back = anna.next_bot_message().await?;
    let sent = back.photo().ok_or("the bot should have sent a photo")?;
    assert_eq!((sent.width, sent.height), (64, 48));
    assert_eq!(sent.bytes, sample_jpeg(64, 48, 7));
    assert_eq!(back.text(), Some("A picture for you"));

    // An album from the user arrives as photo messages sharing one media_group_id.
    anna.send_album(vec![sample_jpeg(30, 20, 1), sample_jpeg(30, 20, 2)]);
    let first = anna.next_bot_message().await?;
    let second = anna.next_bot_message().await?;
    let group = |m: &ChatMessage| {
        m.text()
            .and_then(|t| t.split(" in album ").nth(1))
            .and_then(|s| s.split(':').next())
            .map(str::to_owned)
    };
    assert!(group(&first).is_some(), "{:?}", first.text());
    assert_eq!(group(&first), group(&second));

    // An album and a document from the bot.
    anna.send_text("album");
    let a = anna.next_bot_message().await?;
    let b = anna.next_bot_message().await?;
    assert!(a.media_group_id.is_some() && a.media_group_id == b.media_group_id);
    assert_eq!(
        a.photo().map(|p| p.bytes.clone()),
        Some(sample_jpeg(40, 30, 1))
    );
    anna.send_text("doc");
    let doc = anna.next_bot_message().await?;
    let document = doc
        .document()
        .ok_or("the bot should have sent a document")?;
    assert_eq!(document.file_name.as_deref(), Some("notes.txt"));
    assert_eq!(document.bytes, Bytes::from_static(b"plain words"));

    anna.send_document(
        Bytes::from_static(b"%PDF-1.4 tiny"),
        "brief.pdf",
        "application/pdf",
    );
    assert_eq!(
        anna.next_bot_message().await?.text(),
        Some("Got document brief.pdf (application/pdf, 13 bytes)")
    );

    running.stop().await;

    let transcript = anna.transcript();
    assert!(matches!(&transcript[0], Entry::User(m) if m.text() == Some("/start")));
    assert!(transcript.iter().any(
        |e| matches!(e, Entry::ButtonPressed { callback_data, .. } if callback_data == "color:blue")
    ));
    assert!(transcript
        .iter()
        .any(|e| matches!(e, Entry::Edited(m) if m.text() == Some("You picked blue"))));
    assert!(transcript
        .iter()
        .any(|e| matches!(e, Entry::User(m) if matches!(m.content, Content::Photo { ref sizes, .. } if sizes.len() == 2))));
    let rendered = anna.render_transcript();
    assert!(rendered.contains("Anna › /start"), "{rendered}");
    assert!(rendered.contains("bot › Pick a colour"), "{rendered}");
    assert!(rendered.contains("[Blue]→color:blue"), "{rendered}");
    assert!(rendered.contains("bot ⇠ toast: blue it is"), "{rendered}");
    assert!(rendered.contains("[photo 64×48"), "{rendered}");

    // 2 commands/texts + menu + button + photo + 2 album photos + album + doc + document.
    assert_eq!(fake.updates_delivered(), 10);
    assert_eq!(
        fake.updates_pending(),
        0,
        "stopping the dispatcher confirms the last update"
    );
    let methods: Vec<String> = fake.requests().into_iter().map(|r| r.method).collect();
    for expected in [
        "getWebhookInfo",
        "getMe",
        "getUpdates",
        "getFile",
        "sendPhoto",
        "sendMediaGroup",
    ] {
        assert!(
            methods.iter().any(|m| m == expected),
            "{expected} missing from {methods:?}"
        );
    }
    let uploads = fake.requests_of("sendPhoto");
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        uploads[0].uploads.len(),
        1,
        "the photo travels as its own multipart part"
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_by_throttle_and_delivered_once(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN)
        .set_api_url(fake.api_url())
        .throttle(Limits::default());
    let running = start(bot, &fake);
    let boris = fake.user(2002, "Boris", "en");

    fake.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        Some(1),
    );
    boris.send_text("hello");
    assert_eq!(
        boris.next_bot_message().await?.text(),
        Some("You said: hello")
    );
    // Replies in one chat are sent in order, so a late duplicate would come before this one.
    boris.send_text("again");
    assert_eq!(
        boris.next_bot_message().await?.text(),
        Some("You said: again")
    );
    running.stop().await;

    assert_eq!(bot_texts(&boris), ["You said: hello", "You said: again"]);
    assert_eq!(
        fake.requests_of("sendMessage").len(),
        3,
        "one refused, its retry, and the second reply"
    );
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_fake_enforces_telegram_rules_that_teloxide_recognises(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let carla = fake.user(3003, "Carla", "en");
    let chat = ChatId(carla.id());

    let sent = bot.send_message(chat, "Same text").await?;
    assert!(sent.date.timestamp() > 0);
    assert_eq!(sent.from.as_ref().map(|u| u.is_bot), Some(true));
    let unchanged = bot.edit_message_text(chat, sent.id, "Same text").await;
    assert!(
        matches!(
            unchanged,
            Err(RequestError::Api(ApiError::MessageNotModified))
        ),
        "{unchanged:?}"
    );
    let missing = bot.edit_message_text(chat, MessageId(9999), "x").await;
    assert!(
        matches!(
            missing,
            Err(RequestError::Api(ApiError::MessageToEditNotFound))
        ),
        "{missing:?}"
    );
    let empty = bot.send_message(chat, "").await;
    assert!(
        matches!(empty, Err(RequestError::Api(ApiError::MessageTextIsEmpty))),
        "{empty:?}"
    );
    let long = bot.send_message(chat, "я".repeat(4097)).await;
    assert!(
        matches!(long, Err(RequestError::Api(ApiError::MessageIsTooLong))),
        "{long:?}"
    );
    bot.send_message(chat, "я".repeat(4096)).await?;
    let keyboard =
        InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Too much", "x".repeat(65))]]);
    let bad_data = bot.send_message(chat, "menu").reply_markup(keyboard).await;
    assert!(
        matches!(
            bad_data,
            Err(RequestError::Api(ApiError::ButtonDataInvalid))
        ),
        "{bad_data:?}"
    );
    let one = [InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(
        sample_jpeg(8, 8, 1),
    )))];
    assert!(
        bot.send_media_group(chat, one).await.is_err(),
        "an album needs at least two items"
    );
    let eleven: Vec<InputMedia> = (0..11)
        .map(|i| {
            InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(sample_jpeg(
                8, 8, i,
            ))))
        })
        .collect();
    let too_many = bot.send_media_group(chat, eleven).await;
    assert!(
        matches!(too_many, Err(RequestError::Api(ApiError::TooMuchMessages))),
        "{too_many:?}"
    );
    let not_an_image = bot
        .send_photo(chat, InputFile::memory(&b"not a picture"[..]))
        .await;
    assert!(not_an_image.is_err());
    let huge = bot
        .send_photo(chat, InputFile::memory(vec![0u8; 10 * 1024 * 1024 + 1]))
        .await;
    assert!(
        matches!(
            huge,
            Err(RequestError::Api(ApiError::RequestEntityTooLarge))
        ),
        "{huge:?}"
    );
    let html = bot
        .send_message(chat, "<b>bold</b> &amp; <i>calm</i>")
        .parse_mode(teloxide::types::ParseMode::Html)
        .await?;
    assert_eq!(html.text(), Some("bold & calm"));
    let unescaped = bot
        .send_message(chat, "Done.")
        .parse_mode(teloxide::types::ParseMode::MarkdownV2)
        .await;
    assert!(unescaped.is_err(), "MarkdownV2 reserves '.'");

    // A file the user sent can be fetched by the bot over the percent-encoded file URL.
    let photo_message = carla.send_photo(sample_jpeg(200, 100, 9));
    let file_id = match carla.message(photo_message).map(|m| m.content) {
        Some(Content::Photo { sizes, .. }) => {
            sizes.last().map(|s| s.file_id.clone()).unwrap_or_default()
        }
        _ => String::new(),
    };
    let file = bot.get_file(file_id.into()).await?;
    assert!(file.path.starts_with("photos/"));
    let mut downloaded = Vec::new();
    bot.download_file(&file.path, &mut downloaded).await?;
    assert_eq!(downloaded, sample_jpeg(200, 100, 9));
    let unknown = bot.get_file("nope".to_owned().into()).await;
    assert!(unknown.is_err());

    // Raw HTTP: wrong token, unknown method, form encoding, case-insensitive names, blocked users.
    let http = reqwest::Client::new();
    let base = fake.api_url();
    let wrong: serde_json::Value = http
        .post(format!("{base}bot1:wrong/getMe"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(wrong["error_code"], 401);
    assert_eq!(wrong["description"], "Unauthorized");
    let unknown_method = http
        .post(format!("{base}bot{TOKEN}/sendSticker"))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    assert_eq!(unknown_method.status(), 400);
    let body: serde_json::Value = unknown_method.json().await?;
    let description = body["description"].as_str().unwrap_or_default();
    assert!(
        !description.contains("Not Found") && !description.contains("Unauthorized"),
        "{description}"
    );
    let form: serde_json::Value = http
        .post(format!("{base}bot{TOKEN}/SENDMESSAGE"))
        .form(&[("chat_id", "3003"), ("text", "by form")])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(form["ok"], true);
    assert_eq!(form["result"]["text"], "by form");
    carla.block_bot();
    let blocked = bot.send_message(chat, "anyone?").await;
    assert!(
        matches!(blocked, Err(RequestError::Api(ApiError::BotBlocked))),
        "{blocked:?}"
    );

    // Injected errors keep their code in the body but never come back as a 5xx.
    fake.fail_next("getMe", 500, "Internal Server Error", None);
    let injected = http.post(format!("{base}bot{TOKEN}/getMe")).send().await?;
    assert!(injected.status().is_client_error());
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_updates_long_polls_and_confirms_by_offset() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let dana = fake.user(4004, "Dana", "en");

    let started = tokio::time::Instant::now();
    let nothing = bot.get_updates().timeout(1).await?;
    assert!(nothing.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "an empty long poll waits for its timeout"
    );

    let poll = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).await }
    });
    // The second long poll is waiting at the fake before the update arrives.
    fake.wait_for_requests("getUpdates", 2).await?;
    let started = tokio::time::Instant::now();
    dana.send_text("wake up");
    let updates = poll.await??;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a queued update ends the long poll at once"
    );
    assert_eq!(updates.len(), 1);

    dana.send_text("second");
    let again = bot.get_updates().await?;
    assert_eq!(
        again.len(),
        2,
        "nothing is confirmed until an offset passes it"
    );
    let last = again[1].id.0;
    let confirmed = bot.get_updates().offset(last as i32 + 1).await?;
    assert!(confirmed.is_empty());
    assert_eq!(fake.updates_pending(), 0);
    assert_eq!(fake.updates_delivered(), 2);
    fake.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_second_get_updates_ends_the_waiting_one_with_409_as_telegram_does(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeTelegram::spawn(TOKEN).await?;
    let first = Bot::new(TOKEN).set_api_url(fake.api_url());
    let second = Bot::new(TOKEN).set_api_url(fake.api_url());
    let erin = fake.user(5005, "Erin", "en");

    let waiting = tokio::spawn(async move { first.get_updates().timeout(20).await });
    fake.wait_for_requests("getUpdates", 1).await?;
    let newer = tokio::spawn(async move { second.get_updates().timeout(20).await });
    let ended = waiting.await?;
    match ended {
        Err(teloxide::RequestError::Api(teloxide::ApiError::TerminatedByOtherGetUpdates)) => {}
        other => panic!("the older poll should end with 409, got {other:?}"),
    }
    assert_eq!(fake.polls_terminated(), 1);
    // The newer one is the poller now and gets what arrives.
    erin.send_text("hello");
    let updates = newer.await??;
    assert_eq!(updates.len(), 1);
    fake.shutdown().await;
    Ok(())
}
