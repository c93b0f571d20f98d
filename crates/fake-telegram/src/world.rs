//! The fake's state: users, chats and their messages, files, the update queue and the request log.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{
    failure::ApiFailure,
    media,
    payments::Payments,
    transcript::{
        ApiRequest, BotCommand, CallbackAnswer, ChatMessage, Content, Document, Entry, Markup,
        PhotoSize,
    },
};

/// Telegram Bot API's cap on updates per `getUpdates` answer.
const MAX_UPDATES_PER_CALL: usize = 100;

pub(crate) struct World {
    pub bot: BotUser,
    pub users: HashMap<i64, UserRecord>,
    /// Group and supergroup chats the bot is a member of, by (negative) chat id.
    pub groups: HashMap<i64, GroupRecord>,
    pub chats: HashMap<i64, ChatRecord>,
    files: HashMap<String, StoredFile>,
    file_ids_by_path: HashMap<String, String>,
    next_file: u64,
    updates: VecDeque<QueuedUpdate>,
    /// Every update ever queued, as sent: what a test needs to replay one the bot was handling.
    sent_updates: Vec<Value>,
    next_update_id: i64,
    last_delivered_update: i64,
    pub updates_delivered: u64,
    /// `getUpdates` calls so far; only the newest may wait for updates.
    pub polls: u64,
    /// Waiting `getUpdates` calls ended with 409 by a newer one.
    pub polls_terminated: u64,
    pub allowed_updates: Vec<String>,
    pub callbacks: HashMap<String, CallbackRecord>,
    next_callback: u64,
    pub requests: Vec<ApiRequest>,
    faults: Vec<(String, ApiFailure)>,
    pub webhook: Option<String>,
    /// The `secret_token` given with the webhook, which Telegram repeats in every delivery.
    pub webhook_secret: Option<String>,
    /// Commands per scope and language, keyed as `scope-json|language`.
    pub commands: BTreeMap<String, Vec<BotCommand>>,
    /// Chats changed since waiters were last woken: only their waiters are.
    pub touched: Vec<i64>,
    pub payments: Payments,
}

pub(crate) struct BotUser {
    pub id: i64,
    pub first_name: String,
    pub username: String,
}

pub(crate) struct UserRecord {
    pub id: i64,
    pub first_name: String,
    pub language_code: Option<String>,
    pub blocked_bot: bool,
}

pub(crate) struct GroupRecord {
    pub title: String,
    /// `group` or `supergroup`, as the Bot API names chat types.
    pub kind: &'static str,
}

#[derive(Default)]
pub(crate) struct ChatRecord {
    next_message_id: i32,
    pub messages: BTreeMap<i32, ChatMessage>,
    pub transcript: Vec<Entry>,
    /// Transcript index just past the last bot message a test has taken with a waiting helper.
    pub cursor: usize,
}

#[derive(Clone)]
pub(crate) struct StoredFile {
    pub file_id: String,
    pub file_unique_id: String,
    pub file_path: String,
    pub bytes: Bytes,
}

pub(crate) struct CallbackRecord {
    pub chat_id: i64,
    pub answered: bool,
}

struct QueuedUpdate {
    id: i64,
    kind: &'static str,
    payload: Value,
}

impl QueuedUpdate {
    /// The update as the Bot API sends it.
    fn to_json(&self) -> Value {
        let mut update = Map::new();
        update.insert("update_id".into(), json!(self.id));
        update.insert(self.kind.into(), self.payload.clone());
        Value::Object(update)
    }
}

impl World {
    pub fn new(bot_id: i64) -> Self {
        Self {
            bot: BotUser {
                id: bot_id,
                first_name: "Aisha".to_owned(),
                username: "aisha_fake_bot".to_owned(),
            },
            users: HashMap::new(),
            groups: HashMap::new(),
            chats: HashMap::new(),
            files: HashMap::new(),
            file_ids_by_path: HashMap::new(),
            next_file: 0,
            updates: VecDeque::new(),
            sent_updates: Vec::new(),
            next_update_id: 1,
            last_delivered_update: 0,
            updates_delivered: 0,
            polls: 0,
            polls_terminated: 0,
            allowed_updates: Vec::new(),
            callbacks: HashMap::new(),
            next_callback: 0,
            requests: Vec::new(),
            faults: Vec::new(),
            webhook: None,
            webhook_secret: None,
            commands: BTreeMap::new(),
            touched: Vec::new(),
            payments: Payments::default(),
        }
    }

    pub fn add_user(&mut self, id: i64, first_name: &str, language_code: Option<&str>) {
        self.users.insert(
            id,
            UserRecord {
                id,
                first_name: first_name.to_owned(),
                language_code: language_code.map(str::to_owned),
                blocked_bot: false,
            },
        );
        self.chats.entry(id).or_default();
    }

    pub fn add_group(&mut self, id: i64, title: &str, kind: &'static str) {
        self.groups.insert(
            id,
            GroupRecord {
                title: title.to_owned(),
                kind,
            },
        );
        self.chats.entry(id).or_default();
    }

    pub fn bot_json(&self) -> Value {
        json!({
            "id": self.bot.id,
            "is_bot": true,
            "first_name": self.bot.first_name,
            "username": self.bot.username,
        })
    }

    pub fn user_json(&self, id: i64) -> Value {
        match self.users.get(&id) {
            Some(user) => {
                let mut value =
                    json!({ "id": user.id, "is_bot": false, "first_name": user.first_name });
                if let Some(lang) = &user.language_code {
                    value["language_code"] = json!(lang);
                }
                value
            }
            None => json!({ "id": id, "is_bot": false, "first_name": "Unknown" }),
        }
    }

    fn chat_json(&self, chat_id: i64) -> Value {
        if let Some(group) = self.groups.get(&chat_id) {
            return json!({ "id": chat_id, "type": group.kind, "title": group.title });
        }
        let first_name = self
            .users
            .get(&chat_id)
            .map(|u| u.first_name.as_str())
            .unwrap_or("Unknown");
        json!({ "id": chat_id, "type": "private", "first_name": first_name })
    }

    /// A message as the Bot API shows it, in updates and in method results.
    pub fn message_json(&self, chat_id: i64, message: &ChatMessage) -> Value {
        let mut value = Map::new();
        value.insert("message_id".into(), json!(message.message_id));
        let from = if message.from_bot {
            self.bot_json()
        } else {
            self.user_json(message.sender.unwrap_or(chat_id))
        };
        value.insert("from".into(), from);
        value.insert("chat".into(), self.chat_json(chat_id));
        value.insert("date".into(), json!(message.date));
        if let Some(edit_date) = message.edit_date {
            value.insert("edit_date".into(), json!(edit_date));
        }
        match &message.content {
            Content::Text { text, entities } => {
                value.insert("text".into(), json!(text));
                if !entities.is_empty() {
                    value.insert("entities".into(), json!(entities));
                }
            }
            Content::Photo { sizes, caption } => {
                let sizes: Vec<Value> = sizes
                    .iter()
                    .map(|s| {
                        json!({
                            "file_id": s.file_id,
                            "file_unique_id": s.file_unique_id,
                            "width": s.width,
                            "height": s.height,
                            "file_size": s.bytes.len(),
                        })
                    })
                    .collect();
                value.insert("photo".into(), json!(sizes));
                if let Some(caption) = caption {
                    value.insert("caption".into(), json!(caption));
                }
            }
            Content::Document { document, caption } => {
                let mut doc = json!({
                    "file_id": document.file_id,
                    "file_unique_id": document.file_unique_id,
                    "file_size": document.bytes.len(),
                });
                if let Some(name) = &document.file_name {
                    doc["file_name"] = json!(name);
                }
                if let Some(mime) = &document.mime_type {
                    doc["mime_type"] = json!(mime);
                }
                value.insert("document".into(), doc);
                if let Some(caption) = caption {
                    value.insert("caption".into(), json!(caption));
                }
            }
            // The payload stays out: Telegram never shows it in the chat.
            Content::Invoice(invoice) => {
                value.insert(
                    "invoice".into(),
                    json!({
                        "title": invoice.title,
                        "description": invoice.description,
                        "start_parameter": invoice.start_parameter,
                        "currency": invoice.currency,
                        "total_amount": invoice.total_amount,
                    }),
                );
            }
            Content::SuccessfulPayment(payment) => {
                value.insert(
                    "successful_payment".into(),
                    json!({
                        "currency": payment.currency,
                        "total_amount": payment.total_amount,
                        "invoice_payload": payment.invoice_payload,
                        "telegram_payment_charge_id": payment.telegram_payment_charge_id,
                        "provider_payment_charge_id": payment.provider_payment_charge_id,
                    }),
                );
            }
            // Telegram leaves out provider_payment_charge_id when it is empty, as it is for Stars.
            Content::RefundedPayment(refund) => {
                value.insert(
                    "refunded_payment".into(),
                    json!({
                        "currency": refund.currency,
                        "total_amount": refund.total_amount,
                        "invoice_payload": refund.invoice_payload,
                        "telegram_payment_charge_id": refund.telegram_payment_charge_id,
                    }),
                );
            }
        }
        if let Some(group) = &message.media_group_id {
            value.insert("media_group_id".into(), json!(group));
        }
        // Messages carry only inline keyboards; reply keyboards live on the user's client.
        if let Markup::Inline(rows) = &message.markup {
            let rows: Vec<Vec<Value>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|b| {
                            let mut button = json!({ "text": b.text });
                            if let Some(data) = &b.callback_data {
                                button["callback_data"] = json!(data);
                            }
                            if let Some(url) = &b.url {
                                button["url"] = json!(url);
                            }
                            if b.pay {
                                button["pay"] = json!(true);
                            }
                            button
                        })
                        .collect()
                })
                .collect();
            value.insert("reply_markup".into(), json!({ "inline_keyboard": rows }));
        }
        Value::Object(value)
    }

    /// The chat the bot wants to write to, if Telegram would let it.
    pub fn writable_chat(&mut self, chat_id: i64) -> Result<&mut ChatRecord, ApiFailure> {
        if self.groups.contains_key(&chat_id) {
            return self
                .chats
                .get_mut(&chat_id)
                .ok_or_else(|| ApiFailure::bad_request("chat not found"));
        }
        match self.users.get(&chat_id) {
            None => return Err(ApiFailure::bad_request("chat not found")),
            Some(user) if user.blocked_bot => {
                return Err(ApiFailure::forbidden("bot was blocked by the user"))
            }
            Some(_) => {}
        }
        self.chats
            .get_mut(&chat_id)
            .ok_or_else(|| ApiFailure::bad_request("chat not found"))
    }

    /// Stores a new message in a chat and its transcript; returns it with its id and date.
    pub fn post(
        &mut self,
        chat_id: i64,
        from_bot: bool,
        content: Content,
        markup: Markup,
        media_group_id: Option<String>,
    ) -> ChatMessage {
        self.post_as(chat_id, None, from_bot, content, markup, media_group_id)
    }

    /// A message a user writes, in their private chat or (with `sender`) in a group.
    pub fn post_as(
        &mut self,
        chat_id: i64,
        sender: Option<i64>,
        from_bot: bool,
        content: Content,
        markup: Markup,
        media_group_id: Option<String>,
    ) -> ChatMessage {
        self.touched.push(chat_id);
        let chat = self.chats.entry(chat_id).or_default();
        chat.next_message_id += 1;
        let message = ChatMessage {
            message_id: chat.next_message_id,
            from_bot,
            sender,
            date: now(),
            edit_date: None,
            content,
            markup,
            media_group_id,
        };
        chat.messages.insert(message.message_id, message.clone());
        chat.transcript.push(if from_bot {
            Entry::Bot(message.clone())
        } else {
            Entry::User(message.clone())
        });
        message
    }

    pub fn store_file(&mut self, folder: &str, extension: &str, bytes: Bytes) -> StoredFile {
        self.next_file += 1;
        let n = self.next_file;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let file = StoredFile {
            file_id: format!(
                "{}{token}",
                if folder == "photos" { "AgAC" } else { "BQAC" }
            ),
            file_unique_id: format!("AQAD{}", &token[..12]),
            file_path: format!("{folder}/file_{n}.{extension}"),
            bytes,
        };
        self.file_ids_by_path
            .insert(file.file_path.clone(), file.file_id.clone());
        self.files.insert(file.file_id.clone(), file.clone());
        file
    }

    pub fn file(&self, file_id: &str) -> Option<&StoredFile> {
        self.files.get(file_id)
    }

    pub fn file_by_path(&self, path: &str) -> Option<&StoredFile> {
        self.file_ids_by_path
            .get(path)
            .and_then(|id| self.files.get(id))
    }

    /// Registers a photo and its thumbnail; `None` if the bytes are not an image.
    pub fn store_photo(&mut self, bytes: Bytes) -> Option<Vec<PhotoSize>> {
        let picture = media::inspect(&bytes)?;
        let mut sizes = Vec::with_capacity(2);
        if let Some((thumb, width, height)) = picture.thumbnail {
            let file = self.store_file("photos", "jpg", thumb);
            sizes.push(photo_size(file, width, height));
        }
        let file = self.store_file("photos", picture.extension, bytes);
        sizes.push(photo_size(file, picture.width, picture.height));
        Some(sizes)
    }

    pub fn store_document(
        &mut self,
        bytes: Bytes,
        file_name: Option<String>,
        mime_type: Option<String>,
    ) -> Document {
        let extension = media::document_extension(file_name.as_deref(), mime_type.as_deref());
        let file = self.store_file("documents", &extension, bytes);
        Document {
            file_id: file.file_id,
            file_unique_id: file.file_unique_id,
            file_name,
            mime_type,
            bytes: file.bytes,
        }
    }

    pub fn queue_update(&mut self, kind: &'static str, payload: Value) {
        let id = self.next_update_id;
        self.next_update_id += 1;
        let update = QueuedUpdate { id, kind, payload };
        self.sent_updates.push(update.to_json());
        self.updates.push_back(update);
    }

    pub fn sent_updates(&self) -> Vec<Value> {
        self.sent_updates.clone()
    }

    pub fn pending_updates(&self) -> usize {
        self.updates.len()
    }

    pub fn drop_pending_updates(&mut self) {
        self.updates.clear();
    }

    /// Updates queued so far, delivered or not.
    pub fn updates_queued(&self) -> u64 {
        u64::try_from(self.next_update_id - 1).unwrap_or(0)
    }

    /// What `getUpdates` answers: confirms updates before `offset`, then returns up to `limit`.
    pub fn take_updates(&mut self, offset: i64, limit: usize) -> Vec<Value> {
        if offset > 0 {
            while self.updates.front().is_some_and(|u| u.id < offset) {
                self.updates.pop_front();
            }
        } else if offset < 0 {
            // A negative offset keeps only that many of the newest updates.
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            while self.updates.len() > keep {
                self.updates.pop_front();
            }
        }
        self.drop_unwanted_updates();
        let limit = limit.clamp(1, MAX_UPDATES_PER_CALL);
        let batch: Vec<Value> = self
            .updates
            .iter()
            .take(limit)
            .map(QueuedUpdate::to_json)
            .collect();
        let ids: Vec<i64> = self.updates.iter().take(limit).map(|u| u.id).collect();
        self.count_delivered(&ids);
        batch
    }

    /// Up to `limit` queued updates, removed from the queue as a webhook delivery takes them
    /// (whoever pushes them is from then on responsible for retrying); none while no webhook
    /// is set, as Telegram pushes only to a webhook.
    pub fn take_for_webhook(&mut self, limit: usize) -> Vec<Value> {
        if self.webhook.is_none() {
            return Vec::new();
        }
        self.drop_unwanted_updates();
        let taken: Vec<QueuedUpdate> = self
            .updates
            .drain(..limit.min(self.updates.len()))
            .collect();
        let ids: Vec<i64> = taken.iter().map(|u| u.id).collect();
        self.count_delivered(&ids);
        taken.iter().map(QueuedUpdate::to_json).collect()
    }

    /// Telegram drops updates of kinds the bot did not ask for.
    fn drop_unwanted_updates(&mut self) {
        if !self.allowed_updates.is_empty() {
            let allowed = &self.allowed_updates;
            self.updates.retain(|u| allowed.iter().any(|a| a == u.kind));
        }
    }

    fn count_delivered(&mut self, ids: &[i64]) {
        for &id in ids {
            if id > self.last_delivered_update {
                self.last_delivered_update = id;
                self.updates_delivered += 1;
            }
        }
    }

    pub fn new_callback_id(&mut self) -> String {
        self.next_callback += 1;
        format!("{}{:08}", self.bot.id.unsigned_abs(), self.next_callback)
    }

    pub fn add_fault(&mut self, method: &str, failure: ApiFailure) {
        self.faults.push((method.to_ascii_lowercase(), failure));
    }

    pub fn take_fault(&mut self, method: &str) -> Option<ApiFailure> {
        let method = method.to_ascii_lowercase();
        let index = self.faults.iter().position(|(m, _)| *m == method)?;
        Some(self.faults.remove(index).1)
    }

    pub fn record_answer(&mut self, chat_id: i64, answer: CallbackAnswer) {
        if let Some(chat) = self.chats.get_mut(&chat_id) {
            chat.transcript.push(Entry::CallbackAnswered(answer));
            self.touched.push(chat_id);
        }
    }
}

fn photo_size(file: StoredFile, width: u32, height: u32) -> PhotoSize {
    PhotoSize {
        file_id: file.file_id,
        file_unique_id: file.file_unique_id,
        width,
        height,
        bytes: file.bytes,
    }
}

/// Unix time now: Telegram dates are never 0, and teloxide reads date 0 as an inaccessible message.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
