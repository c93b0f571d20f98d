//! The person's side of a chat with the bot — their private chat, or a group they are in:
//! sending messages, pressing buttons, waiting for the bot.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use serde_json::json;

use super::{
    markup::telegram_len,
    payments::{PayOptions, PreCheckoutState},
    transcript::{
        self, CallbackAnswer, ChatMessage, Content, Entry, Markup, PhotoSize, PreCheckoutAnswer,
    },
    world::{CallbackRecord, World},
    FakeTelegramError, Shared, DEFAULT_WAIT,
};

/// A Telegram user in a chat with the bot (their private chat unless [`FakeUser::in_group`]);
/// cheap to clone.
#[derive(Clone)]
pub struct FakeUser {
    shared: Arc<Shared>,
    id: i64,
    /// The chat this handle writes in and reads: the user's id for their private chat.
    chat: i64,
    first_name: String,
    wait: Duration,
}

impl FakeUser {
    pub(crate) fn new(shared: Arc<Shared>, id: i64, first_name: &str) -> Self {
        Self {
            shared,
            id,
            chat: id,
            first_name: first_name.to_owned(),
            wait: DEFAULT_WAIT,
        }
    }

    /// The user's id, which is also the id of their private chat with the bot.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The chat this handle writes in: the private chat's id, or a group's.
    pub fn chat_id(&self) -> i64 {
        self.chat
    }

    /// The same user writing in (and reading) group `group_id`, made with
    /// [`super::FakeTelegram::group`]; the bot sees them as the sender.
    pub fn in_group(&self, group_id: i64) -> Self {
        Self {
            chat: group_id,
            ..self.clone()
        }
    }

    /// The same user with another limit for the waiting helpers.
    pub fn with_timeout(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sends a text message; returns its message id.
    pub fn send_text(&self, text: &str) -> i32 {
        self.send(
            Content::Text {
                text: text.to_owned(),
                entities: Vec::new(),
            },
            None,
        )
    }

    /// Sends a command such as `/start` or `/start ref42`, marked as a command the way clients do.
    pub fn send_command(&self, command: &str) -> i32 {
        let first_word = command.split_whitespace().next().unwrap_or(command);
        let entity =
            json!({ "type": "bot_command", "offset": 0, "length": telegram_len(first_word) });
        self.send(
            Content::Text {
                text: command.to_owned(),
                entities: vec![entity],
            },
            None,
        )
    }

    /// Sends a photo; its sizes come from decoding the image, with a thumbnail as Telegram adds.
    pub fn send_photo(&self, bytes: impl Into<Bytes>) -> i32 {
        self.send_photo_with_caption(bytes, None)
    }

    /// Sends a photo with a caption.
    pub fn send_photo_with_caption(&self, bytes: impl Into<Bytes>, caption: Option<&str>) -> i32 {
        let sizes = self.shared.write_quietly(|w| user_photo(w, bytes.into()));
        self.send(
            Content::Photo {
                sizes,
                caption: caption.map(str::to_owned),
            },
            None,
        )
    }

    /// Sends a file as a document.
    pub fn send_document(&self, bytes: impl Into<Bytes>, file_name: &str, mime_type: &str) -> i32 {
        let document = self.shared.write_quietly(|w| {
            w.store_document(
                bytes.into(),
                Some(file_name.to_owned()),
                Some(mime_type.to_owned()),
            )
        });
        self.send(
            Content::Document {
                document,
                caption: None,
            },
            None,
        )
    }

    /// Sends several photos as one album: one message each, sharing a `media_group_id`.
    pub fn send_album(&self, photos: Vec<Bytes>) -> Vec<i32> {
        let group = format!(
            "{}",
            13_500_000_000_000_000i64 + i64::from(rand::random::<u32>())
        );
        photos
            .into_iter()
            .map(|bytes| {
                let sizes = self.shared.write_quietly(|w| user_photo(w, bytes));
                self.send(
                    Content::Photo {
                        sizes,
                        caption: None,
                    },
                    Some(group.clone()),
                )
            })
            .collect()
    }

    fn send(&self, content: Content, media_group_id: Option<String>) -> i32 {
        let chat = self.chat;
        let sender = (chat != self.id).then_some(self.id);
        self.shared.write(|w| {
            let message = w.post_as(chat, sender, false, content, Markup::None, media_group_id);
            let payload = w.message_json(chat, &message);
            w.queue_update("message", payload);
            message.message_id
        })
    }

    /// Presses an inline button under one of the bot's messages; returns the callback query id.
    pub fn press_button(
        &self,
        message_id: i32,
        callback_data: &str,
    ) -> Result<String, FakeTelegramError> {
        self.press(message_id, callback_data, true)
    }

    /// Sends a button press with any callback data under one of the bot's messages, whether or
    /// not such a button exists — as a modified client can; returns the callback query id.
    pub fn press_forged_button(
        &self,
        message_id: i32,
        callback_data: &str,
    ) -> Result<String, FakeTelegramError> {
        self.press(message_id, callback_data, false)
    }

    fn press(
        &self,
        message_id: i32,
        callback_data: &str,
        button_must_exist: bool,
    ) -> Result<String, FakeTelegramError> {
        let (id, chat) = (self.id, self.chat);
        self.shared.write(|w| {
            let message = w
                .chats
                .get(&chat)
                .and_then(|chat| chat.messages.get(&message_id))
                .filter(|m| {
                    m.from_bot
                        && (!button_must_exist
                            || m.buttons()
                                .any(|b| b.callback_data.as_deref() == Some(callback_data)))
                })
                .cloned()
                .ok_or_else(|| FakeTelegramError::NoSuchButton {
                    message_id,
                    callback_data: callback_data.to_owned(),
                })?;
            let query_id = w.new_callback_id();
            let payload = json!({
                "id": query_id,
                "from": w.user_json(id),
                "message": w.message_json(chat, &message),
                "chat_instance": format!("{}", chat.unsigned_abs() ^ 0x5eed),
                "data": callback_data,
            });
            w.callbacks.insert(
                query_id.clone(),
                CallbackRecord {
                    chat_id: chat,
                    answered: false,
                },
            );
            if let Some(record) = w.chats.get_mut(&chat) {
                record.transcript.push(Entry::ButtonPressed {
                    message_id,
                    callback_data: callback_data.to_owned(),
                    query_id: query_id.clone(),
                });
                w.touched.push(chat);
            }
            w.queue_update("callback_query", payload);
            Ok(query_id)
        })
    }

    /// Presses Pay under the bot's invoice `invoice_message_id`: the bot gets a
    /// `pre_checkout_query` and has the deadline ([`super::FakeTelegram::set_pre_checkout_deadline`])
    /// to answer it. Returns the query id.
    pub fn pay(&self, invoice_message_id: i32) -> Result<String, FakeTelegramError> {
        self.pay_with(invoice_message_id, PayOptions::default())
    }

    /// [`FakeUser::pay`] with a choice of how the payment reaches the bot.
    pub fn pay_with(
        &self,
        invoice_message_id: i32,
        options: PayOptions,
    ) -> Result<String, FakeTelegramError> {
        let (id, chat) = (self.id, self.chat);
        let (query_id, deadline) = self.shared.write(|w| {
            let query_id = w.start_payment(chat, id, invoice_message_id, options)?;
            Ok::<_, FakeTelegramError>((query_id, w.payments.deadline))
        })?;
        // Outside a runtime nothing can wait; a late answer is then refused when it comes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let expiring = query_id.clone();
            runtime.spawn(async move {
                tokio::time::sleep(deadline).await;
                shared.write(|w| w.expire_pre_checkout(&expiring));
            });
        }
        Ok(query_id)
    }

    /// Waits for the bot's in-time answer to pre-checkout query `query_id`.
    pub async fn wait_for_pre_checkout_answer(
        &self,
        query_id: &str,
    ) -> Result<PreCheckoutAnswer, FakeTelegramError> {
        let id = self.chat;
        let found = self
            .shared
            .wait_for_chat(id, self.wait, |w| {
                w.chats.get(&id)?.transcript.iter().find_map(|e| match e {
                    Entry::PreCheckoutAnswered(answer) if answer.query_id == query_id => {
                        Some(answer.clone())
                    }
                    _ => None,
                })
            })
            .await;
        found.ok_or_else(|| self.timeout(&format!("an answer to pre-checkout query {query_id}")))
    }

    /// Waits until pre-checkout query `query_id` is settled: approved (the payment went
    /// through), declined, or expired unanswered.
    pub async fn wait_for_payment_outcome(
        &self,
        query_id: &str,
    ) -> Result<PreCheckoutState, FakeTelegramError> {
        let id = self.chat;
        let found = self
            .shared
            .wait_for_chat(id, self.wait, |w| {
                w.payments
                    .pre_checkouts
                    .iter()
                    .find(|q| q.query_id == query_id)
                    .map(|q| q.state.clone())
                    .filter(|state| *state != PreCheckoutState::Pending)
            })
            .await;
        found.ok_or_else(|| self.timeout(&format!("the outcome of pre-checkout query {query_id}")))
    }

    /// Waits for the next invoice the bot sends in this chat.
    pub async fn wait_for_invoice(&self) -> Result<ChatMessage, FakeTelegramError> {
        self.wait_for_bot_message_described("an invoice from the bot", |m| m.invoice().is_some())
            .await
    }

    /// Stops accepting messages from the bot, as when a person blocks it.
    pub fn block_bot(&self) {
        self.set_blocked(true);
    }

    /// Accepts messages from the bot again.
    pub fn unblock_bot(&self) {
        self.set_blocked(false);
    }

    fn set_blocked(&self, blocked: bool) {
        let id = self.id;
        self.shared.write(|w| {
            if let Some(user) = w.users.get_mut(&id) {
                user.blocked_bot = blocked;
            }
        });
    }

    /// The next message the bot sends in this chat that no waiting helper has returned yet.
    pub async fn next_bot_message(&self) -> Result<ChatMessage, FakeTelegramError> {
        self.wait_for_bot_message_described("the next bot message", |_| true)
            .await
    }

    /// Waits for a bot message matching `predicate`, as it was when sent; earlier bot messages
    /// not yet returned by a waiting helper are passed over and count as seen.
    pub async fn wait_for_bot_message(
        &self,
        predicate: impl Fn(&ChatMessage) -> bool,
    ) -> Result<ChatMessage, FakeTelegramError> {
        self.wait_for_bot_message_described("a bot message matching the predicate", predicate)
            .await
    }

    /// Waits for a bot message whose text or caption contains `needle`.
    pub async fn wait_for_bot_text(&self, needle: &str) -> Result<ChatMessage, FakeTelegramError> {
        let what = format!("a bot message containing {needle:?}");
        self.wait_for_bot_message_described(&what, |m| m.text().is_some_and(|t| t.contains(needle)))
            .await
    }

    async fn wait_for_bot_message_described(
        &self,
        what: &str,
        predicate: impl Fn(&ChatMessage) -> bool,
    ) -> Result<ChatMessage, FakeTelegramError> {
        let id = self.chat;
        let found = self
            .shared
            .wait_for_chat(id, self.wait, |w| {
                let chat = w.chats.get_mut(&id)?;
                let (index, message) = chat
                    .transcript
                    .iter()
                    .enumerate()
                    .skip(chat.cursor)
                    .find_map(|(i, e)| match e {
                        Entry::Bot(m) if predicate(m) => Some((i, m.clone())),
                        _ => None,
                    })?;
                chat.cursor = index + 1;
                Some(message)
            })
            .await;
        found.ok_or_else(|| self.timeout(what))
    }

    /// Waits until the bot's message `message_id` looks as `predicate` wants, typically after an edit.
    pub async fn wait_for_edit(
        &self,
        message_id: i32,
        predicate: impl Fn(&ChatMessage) -> bool,
    ) -> Result<ChatMessage, FakeTelegramError> {
        let id = self.chat;
        let found = self
            .shared
            .wait_for_chat(id, self.wait, |w| {
                let message = w.chats.get(&id)?.messages.get(&message_id)?;
                (message.edit_date.is_some() && predicate(message)).then(|| message.clone())
            })
            .await;
        found.ok_or_else(|| self.timeout(&format!("an edit of message {message_id}")))
    }

    /// Waits for the bot's answer to a pressed button.
    pub async fn wait_for_callback_answer(
        &self,
        query_id: &str,
    ) -> Result<CallbackAnswer, FakeTelegramError> {
        let id = self.chat;
        let found = self
            .shared
            .wait_for_chat(id, self.wait, |w| {
                w.chats.get(&id)?.transcript.iter().find_map(|e| match e {
                    Entry::CallbackAnswered(answer) if answer.query_id == query_id => {
                        Some(answer.clone())
                    }
                    _ => None,
                })
            })
            .await;
        found.ok_or_else(|| self.timeout(&format!("an answer to callback query {query_id}")))
    }

    /// Waits until the whole transcript satisfies `predicate`.
    pub async fn wait_until(
        &self,
        predicate: impl Fn(&[Entry]) -> bool,
    ) -> Result<Vec<Entry>, FakeTelegramError> {
        let id = self.chat;
        let found = self
            .shared
            .wait_for_chat(id, self.wait, |w| {
                let transcript = &w.chats.get(&id)?.transcript;
                predicate(transcript).then(|| transcript.clone())
            })
            .await;
        found.ok_or_else(|| self.timeout("the chat to reach the expected state"))
    }

    /// A message of this chat as it is now (after edits), unless deleted.
    pub fn message(&self, message_id: i32) -> Option<ChatMessage> {
        self.shared
            .read(|w| w.chats.get(&self.chat)?.messages.get(&message_id).cloned())
    }

    /// Everything that happened in this chat, in order.
    pub fn transcript(&self) -> Vec<Entry> {
        self.shared.read(|w| {
            w.chats
                .get(&self.chat)
                .map(|c| c.transcript.clone())
                .unwrap_or_default()
        })
    }

    /// The chat as a person would read it, one line per event.
    pub fn render_transcript(&self) -> String {
        transcript::render(&self.first_name, &self.transcript())
    }

    fn timeout(&self, what: &str) -> FakeTelegramError {
        FakeTelegramError::Timeout {
            what: what.to_owned(),
            waited: self.wait,
            transcript: self.render_transcript(),
        }
    }
}

/// A photo as a client uploads it; bytes that are no image still arrive, with unknown dimensions.
fn user_photo(world: &mut World, bytes: Bytes) -> Vec<PhotoSize> {
    if let Some(sizes) = world.store_photo(bytes.clone()) {
        return sizes;
    }
    let file = world.store_file("photos", "jpg", bytes);
    vec![PhotoSize {
        file_id: file.file_id,
        file_unique_id: file.file_unique_id,
        width: 0,
        height: 0,
        bytes: file.bytes,
    }]
}
