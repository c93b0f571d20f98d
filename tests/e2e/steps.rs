//! Steps a Telegram user takes in the bot tests, and what they look for in the chat.

use std::time::Duration;

use aggregates::TrainingPreset;
use aisha::bot::callbacks::Callback;
use bytes::Bytes;
use fake_telegram::{sample_jpeg, CallbackAnswer, ChatMessage, Entry, FakeUser};
use uuid::Uuid;

/// A distinct, valid training photo.
pub fn photo(seed: u8) -> Bytes {
    sample_jpeg(640, 640, seed)
}

/// The callback data of the first button whose data starts with `prefix`.
pub fn button(message: &ChatMessage, prefix: &str) -> String {
    message
        .buttons()
        .filter_map(|b| b.callback_data.clone())
        .find(|data| data.starts_with(prefix))
        .unwrap_or_else(|| panic!("no button {prefix}… under {message:#?}"))
}

/// The avatar a button acts on.
pub fn avatar_of(callback_data: &str) -> Uuid {
    Callback::parse(callback_data)
        .ok()
        .and_then(|c| c.avatar_id())
        .unwrap_or_else(|| panic!("{callback_data} names no avatar"))
}

/// Presses a button and waits for the bot's answer to it.
pub async fn press(user: &FakeUser, message: &ChatMessage, data: &str) -> CallbackAnswer {
    let query = user.press_button(message.message_id, data).expect("press");
    user.wait_for_callback_answer(&query).await.expect("answer")
}

/// Presses a button, then waits until its message has been edited to contain `needle`.
pub async fn press_and_see(
    user: &FakeUser,
    message: &ChatMessage,
    data: &str,
    needle: &str,
) -> ChatMessage {
    press(user, message, data).await;
    user.wait_for_edit(message.message_id, |m| {
        m.text().is_some_and(|t| t.contains(needle))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn text(user: &FakeUser, needle: &str) -> ChatMessage {
    user.wait_for_bot_text(needle)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Bot messages in the chat whose text contains `needle`.
pub fn count_bot_texts(user: &FakeUser, needle: &str) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains(needle))))
        .count()
}

/// Sends ten photos as an album and waits for its summary.
pub async fn upload_album(user: &FakeUser, first_seed: u8, summary: &str) -> ChatMessage {
    user.send_album((0..10).map(|n| photo(first_seed + n)).collect());
    text(user, summary).await
}

/// From a message with a "start training" button: choose `preset`, see "started", await "ready".
pub async fn train(
    user: &FakeUser,
    message: &ChatMessage,
    preset: TrainingPreset,
    started: &str,
    ready: &str,
) -> ChatMessage {
    let presets = press_and_see(user, message, &button(message, "tr:"), "🚀").await;
    let code = &preset.as_str()[..1];
    press_and_see(
        user,
        &presets,
        &button(&presets, &format!("ts:{code}:")),
        started,
    )
    .await;
    text(user, ready).await
}

/// Opens the gallery (/avatars) until its page satisfies `lists`: the gallery is a projection,
/// so a change may take a moment to show. Every page starts with "🖼" — "My avatars (n)", or
/// "no avatars yet" before the first one is projected.
pub async fn gallery_where(user: &FakeUser, lists: impl Fn(&str) -> bool) -> ChatMessage {
    let mut last = String::new();
    for _ in 0..100 {
        user.send_command("/avatars");
        let page = text(user, "🖼").await;
        last = page.text().unwrap_or_default().to_owned();
        if lists(&last) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gallery never showed what was expected; last page:\n{last}");
}
