//! The Bot API methods the fake implements, each checked the way Telegram checks it.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{
    failure::ApiFailure,
    markup::{
        apply_parse_mode, check_pay_buttons, parse_reply_markup, telegram_len, MAX_CAPTION_LEN,
        MAX_TEXT_LEN,
    },
    media,
    params::Params,
    payments,
    transcript::{BotCommand, CallbackAnswer, ChatMessage, Content, Entry, Markup},
    world::{now, World},
    Shared,
};

/// Telegram's limits on files the bot sends and fetches.
const MAX_PHOTO_UPLOAD: usize = 10 * 1024 * 1024;
const MAX_DOCUMENT_UPLOAD: usize = 50 * 1024 * 1024;
const MAX_DOWNLOAD: usize = 20 * 1024 * 1024;
const MAX_POLL_SECONDS: i64 = 50;
const URL_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

const METHODS: &[&str] = &[
    "getMe",
    "getWebhookInfo",
    "setWebhook",
    "deleteWebhook",
    "getUpdates",
    "sendMessage",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "sendPhoto",
    "sendMediaGroup",
    "sendDocument",
    "sendChatAction",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "getFile",
    "sendInvoice",
    "answerPreCheckoutQuery",
    "refundStarPayment",
    "getStarTransactions",
    "getMyStarBalance",
];

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// The method in Telegram's spelling, matched regardless of case as Telegram does.
pub(crate) fn canonical_name(method: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(method))
}

pub(crate) async fn call(
    shared: &Shared,
    method: &str,
    params: &Params,
) -> Result<Value, ApiFailure> {
    match method {
        "getMe" => Ok(shared.read(|w| {
            let mut me = w.bot_json();
            for flag in [
                "can_join_groups",
                "can_read_all_group_messages",
                "supports_inline_queries",
                "can_connect_to_business",
                "has_main_web_app",
            ] {
                me[flag] = json!(false);
            }
            me
        })),
        "getWebhookInfo" => Ok(shared.read(|w| {
            json!({
                "url": w.webhook.clone().unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": w.pending_updates(),
            })
        })),
        "setWebhook" => {
            let url = params.string("url")?.unwrap_or_default();
            let secret = params.string("secret_token")?.filter(|s| !s.is_empty());
            if secret.as_deref().is_some_and(|s| {
                s.len() > 256
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }) {
                return Err(ApiFailure::bad_request(
                    "secret token contains unallowed characters",
                ));
            }
            let drop_pending = params.bool("drop_pending_updates")?.unwrap_or(false);
            shared.write(|w| {
                w.webhook_secret = secret.filter(|_| !url.is_empty());
                w.webhook = (!url.is_empty()).then_some(url);
                if drop_pending {
                    w.drop_pending_updates();
                }
            });
            Ok(json!(true))
        }
        "deleteWebhook" => {
            let drop_pending = params.bool("drop_pending_updates")?.unwrap_or(false);
            shared.write(|w| {
                w.webhook = None;
                w.webhook_secret = None;
                if drop_pending {
                    w.drop_pending_updates();
                }
            });
            Ok(json!(true))
        }
        "getUpdates" => get_updates(shared, params).await,
        "sendMessage" => {
            let chat_id = params.chat_id()?;
            let text = message_text(params, "text")?;
            let markup = reply_markup(params)?;
            let entities = params
                .json("entities")?
                .and_then(|e| e.as_array().cloned())
                .unwrap_or_default();
            send(shared, chat_id, Content::Text { text, entities }, markup)
        }
        "editMessageText" => {
            let (chat_id, message_id) = edit_target(params)?;
            let text = message_text(params, "text")?;
            let markup = edit_markup(params)?;
            edit(shared, chat_id, message_id, |message| {
                let Content::Text {
                    text: old,
                    entities,
                } = &mut message.content
                else {
                    return Err(ApiFailure::bad_request(
                        "there is no text in the message to edit",
                    ));
                };
                let changed = *old != text || message.markup != markup;
                *old = text;
                *entities = Vec::new();
                message.markup = markup;
                Ok(changed)
            })
        }
        "editMessageCaption" => {
            let (chat_id, message_id) = edit_target(params)?;
            let caption = caption(params)?;
            let markup = edit_markup(params)?;
            edit(shared, chat_id, message_id, |message| {
                let (Content::Photo { caption: old, .. } | Content::Document { caption: old, .. }) =
                    &mut message.content
                else {
                    return Err(ApiFailure::bad_request(
                        "there is no caption in the message to edit",
                    ));
                };
                let changed = *old != caption || message.markup != markup;
                *old = caption;
                message.markup = markup;
                Ok(changed)
            })
        }
        "editMessageReplyMarkup" => {
            let (chat_id, message_id) = edit_target(params)?;
            let markup = edit_markup(params)?;
            edit(shared, chat_id, message_id, |message| {
                let changed = message.markup != markup;
                message.markup = markup;
                Ok(changed)
            })
        }
        "deleteMessage" => {
            let chat_id = params.chat_id()?;
            let message_id = params.message_id()?;
            shared.write(|w| {
                let chat = w
                    .chats
                    .get_mut(&chat_id)
                    .ok_or_else(|| ApiFailure::bad_request("chat not found"))?;
                chat.messages
                    .remove(&message_id)
                    .ok_or_else(|| ApiFailure::bad_request("message to delete not found"))?;
                chat.transcript.push(Entry::Deleted { message_id });
                w.touched.push(chat_id);
                Ok(json!(true))
            })
        }
        "answerCallbackQuery" => {
            let query_id = params.string("callback_query_id")?.unwrap_or_default();
            let text = params.string("text")?.filter(|t| !t.is_empty());
            if text.as_deref().is_some_and(|t| telegram_len(t) > 200) {
                return Err(ApiFailure::bad_request("MESSAGE_TOO_LONG"));
            }
            let answer = CallbackAnswer {
                query_id: query_id.clone(),
                text,
                show_alert: params.bool("show_alert")?.unwrap_or(false),
                url: params.string("url")?,
            };
            shared.write(|w| {
                let invalid = || {
                    ApiFailure::bad_request(
                        "query is too old and response timeout expired or query id is invalid",
                    )
                };
                let record = w.callbacks.get_mut(&query_id).ok_or_else(invalid)?;
                if record.answered {
                    return Err(invalid());
                }
                record.answered = true;
                let chat_id = record.chat_id;
                w.record_answer(chat_id, answer);
                Ok(json!(true))
            })
        }
        "sendChatAction" => {
            let chat_id = params.chat_id()?;
            let action = params.string("action")?.unwrap_or_default();
            if !CHAT_ACTIONS.contains(&action.as_str()) {
                return Err(ApiFailure::bad_request("wrong parameter action in request"));
            }
            shared.write(|w| {
                w.writable_chat(chat_id)?
                    .transcript
                    .push(Entry::ChatAction { action });
                Ok(json!(true))
            })
        }
        "sendPhoto" => {
            let chat_id = params.chat_id()?;
            let caption = caption(params)?;
            let markup = reply_markup(params)?;
            let input = resolve_input(shared, params, "photo", params.string("photo")?).await?;
            let sizes = photo_sizes(shared, input.bytes)?;
            send(shared, chat_id, Content::Photo { sizes, caption }, markup)
        }
        "sendDocument" => {
            let chat_id = params.chat_id()?;
            let caption = caption(params)?;
            let markup = reply_markup(params)?;
            let input =
                resolve_input(shared, params, "document", params.string("document")?).await?;
            if input.bytes.len() > MAX_DOCUMENT_UPLOAD {
                return Err(ApiFailure::too_large());
            }
            let document =
                shared.write(|w| w.store_document(input.bytes, input.file_name, input.mime_type));
            send(
                shared,
                chat_id,
                Content::Document { document, caption },
                markup,
            )
        }
        "sendMediaGroup" => send_media_group(shared, params).await,
        "setMyCommands" => {
            let key = commands_key(params)?;
            let commands = parse_commands(params.json("commands")?)?;
            shared.write(|w| w.commands.insert(key, commands));
            Ok(json!(true))
        }
        "getMyCommands" => {
            let key = commands_key(params)?;
            Ok(shared.read(|w| {
                let commands = w.commands.get(&key).cloned().unwrap_or_default();
                json!(commands
                    .iter()
                    .map(|c| json!({ "command": c.command, "description": c.description }))
                    .collect::<Vec<_>>())
            }))
        }
        "deleteMyCommands" => {
            let key = commands_key(params)?;
            shared.write(|w| w.commands.remove(&key));
            Ok(json!(true))
        }
        "getFile" => {
            let file_id = params.string("file_id")?.unwrap_or_default();
            shared.read(|w| {
                let file = w
                    .file(&file_id)
                    .ok_or_else(|| ApiFailure::bad_request("invalid file_id"))?;
                if file.bytes.len() > MAX_DOWNLOAD {
                    return Err(ApiFailure::bad_request("file is too big"));
                }
                Ok(json!({
                    "file_id": file.file_id,
                    "file_unique_id": file.file_unique_id,
                    "file_size": file.bytes.len(),
                    "file_path": file.file_path,
                }))
            })
        }
        "sendInvoice" => {
            let invoice = payments::parse_invoice(params)?;
            let markup = payments::invoice_markup(reply_markup(params)?)?;
            let chat_id = params.chat_id()?;
            send(shared, chat_id, Content::Invoice(invoice), markup)
        }
        "answerPreCheckoutQuery" => {
            shared.write(|w| payments::answer_pre_checkout_query(w, params))
        }
        "refundStarPayment" => shared.write(|w| payments::refund_star_payment(w, params)),
        "getStarTransactions" => shared.read(|w| payments::get_star_transactions(w, params)),
        "getMyStarBalance" => Ok(shared.read(payments::get_my_star_balance)),
        // Never "Not Found": teloxide would take that for a wrong token.
        other => Err(ApiFailure::bad_request(format!(
            "method \"{other}\" is not implemented by this fake Bot API"
        ))),
    }
}

async fn get_updates(shared: &Shared, params: &Params) -> Result<Value, ApiFailure> {
    if shared.read(|w| w.webhook.is_some()) {
        return Err(ApiFailure::new(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        ));
    }
    let offset = params.int("offset")?.unwrap_or(0);
    // Telegram reads a missing or zero limit as its default of 100.
    let limit = match params.int("limit")?.unwrap_or(0) {
        n if n <= 0 => 100,
        n => usize::try_from(n).unwrap_or(100),
    };
    let timeout = params
        .int("timeout")?
        .unwrap_or(0)
        .clamp(0, MAX_POLL_SECONDS);
    let allowed = match params.json("allowed_updates")? {
        Some(Value::Array(kinds)) => Some(
            kinds
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    let deadline = Instant::now() + Duration::from_secs(timeout.unsigned_abs());
    let mut changes = shared.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    if let Some(allowed) = allowed {
        shared.write_quietly(|w| w.allowed_updates = allowed);
    }
    // As Telegram does, a newer getUpdates ends the one still waiting with 409: two pollers
    // of one token keep knocking each other out.
    let poll = shared.write_quietly(|w| {
        w.polls += 1;
        w.polls
    });
    shared.notify();
    loop {
        if shared.read(|w| w.polls != poll) {
            shared.write_quietly(|w| w.polls_terminated += 1);
            return Err(ApiFailure::new(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            ));
        }
        let batch = shared.write_quietly(|w| w.take_updates(offset, limit));
        if !batch.is_empty() {
            shared.notify();
            return Ok(Value::Array(batch));
        }
        if Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(json!([]));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn send(
    shared: &Shared,
    chat_id: i64,
    content: Content,
    markup: Markup,
) -> Result<Value, ApiFailure> {
    check_pay_buttons(&markup, matches!(content, Content::Invoice(_)))?;
    shared.write(|w| {
        w.writable_chat(chat_id)?;
        let message = w.post(chat_id, true, content, markup, None);
        Ok(w.message_json(chat_id, &message))
    })
}

/// Applies an edit to one of the bot's messages; `change` says whether anything differs.
fn edit(
    shared: &Shared,
    chat_id: i64,
    message_id: i32,
    change: impl FnOnce(&mut ChatMessage) -> Result<bool, ApiFailure>,
) -> Result<Value, ApiFailure> {
    shared.write(|w: &mut World| {
        let chat = w.writable_chat(chat_id)?;
        let message =
            chat.messages.get_mut(&message_id).ok_or_else(|| ApiFailure::bad_request("message to edit not found"))?;
        if !message.from_bot {
            return Err(ApiFailure::bad_request("message can't be edited"));
        }
        let mut edited = message.clone();
        let changed = change(&mut edited)?;
        check_pay_buttons(&edited.markup, edited.invoice().is_some())?;
        if !changed {
            return Err(ApiFailure::bad_request(
                "message is not modified: specified new message content and reply markup are exactly the same as a \
                 current content and reply markup of the message",
            ));
        }
        edited.edit_date = Some(now());
        *message = edited.clone();
        chat.transcript.push(Entry::Edited(edited.clone()));
        w.touched.push(chat_id);
        Ok(w.message_json(chat_id, &edited))
    })
}

fn edit_target(params: &Params) -> Result<(i64, i32), ApiFailure> {
    if params.has("inline_message_id") {
        return Err(ApiFailure::bad_request(
            "inline messages are not supported by this fake Bot API",
        ));
    }
    Ok((params.chat_id()?, params.message_id()?))
}

fn message_text(params: &Params, field: &str) -> Result<String, ApiFailure> {
    let raw = params.string(field)?.unwrap_or_default();
    let text = apply_parse_mode(&raw, params.string("parse_mode")?.as_deref())?;
    if text.trim().is_empty() {
        return Err(ApiFailure::bad_request("message text is empty"));
    }
    if telegram_len(&text) > MAX_TEXT_LEN {
        return Err(ApiFailure::bad_request("message is too long"));
    }
    Ok(text)
}

fn caption(params: &Params) -> Result<Option<String>, ApiFailure> {
    caption_of(
        params.string("caption")?,
        params.string("parse_mode")?.as_deref(),
    )
}

fn caption_of(raw: Option<String>, parse_mode: Option<&str>) -> Result<Option<String>, ApiFailure> {
    let Some(raw) = raw else { return Ok(None) };
    let caption = apply_parse_mode(&raw, parse_mode)?;
    if telegram_len(&caption) > MAX_CAPTION_LEN {
        return Err(ApiFailure::bad_request("message caption is too long"));
    }
    Ok((!caption.trim().is_empty()).then_some(caption))
}

fn reply_markup(params: &Params) -> Result<Markup, ApiFailure> {
    match params.json("reply_markup")? {
        Some(value) => parse_reply_markup(&value),
        None => Ok(Markup::None),
    }
}

/// Edits accept only inline keyboards, and an edit without one removes the keyboard.
fn edit_markup(params: &Params) -> Result<Markup, ApiFailure> {
    match reply_markup(params)? {
        markup @ (Markup::Inline(_) | Markup::None) => Ok(markup),
        _ => Err(ApiFailure::bad_request("inline keyboard expected")),
    }
}

/// A file the bot sends, whichever way it named it.
struct Input {
    bytes: Bytes,
    file_name: Option<String>,
    mime_type: Option<String>,
}

async fn resolve_input(
    shared: &Shared,
    params: &Params,
    field: &str,
    value: Option<String>,
) -> Result<Input, ApiFailure> {
    let wrong = || ApiFailure::bad_request("wrong file identifier/HTTP URL specified");
    let from_part = |name: &str| {
        params.part(name).map(|part| {
            let file_name = part.file_name.clone();
            let mime_type = part
                .content_type
                .clone()
                .filter(|t| t != "application/octet-stream")
                .or_else(|| {
                    file_name
                        .as_deref()
                        .and_then(media::guess_mime)
                        .map(str::to_owned)
                });
            Input {
                bytes: part.bytes.clone(),
                file_name,
                mime_type,
            }
        })
    };
    let Some(value) = value else {
        // Telegram also takes the file as a part named like the parameter itself.
        return from_part(field)
            .filter(|input| !input.bytes.is_empty())
            .ok_or_else(|| ApiFailure::bad_request(format!("there is no {field} in the request")));
    };
    if let Some(name) = value.strip_prefix("attach://") {
        let input = from_part(name).ok_or_else(wrong)?;
        if input.bytes.is_empty() {
            return Err(ApiFailure::bad_request("file must be non-empty"));
        }
        return Ok(input);
    }
    if let Some(file) = shared.read(|w| w.file(&value).cloned()) {
        let file_name = file.file_path.rsplit('/').next().map(str::to_owned);
        return Ok(Input {
            bytes: file.bytes,
            file_name,
            mime_type: None,
        });
    }
    if value.starts_with("http://") || value.starts_with("https://") {
        return fetch(shared, &value).await;
    }
    Err(wrong())
}

/// Telegram downloads files the bot names by URL; so does the fake, so the demo can send generated images.
async fn fetch(shared: &Shared, url: &str) -> Result<Input, ApiFailure> {
    let failed = || ApiFailure::bad_request("failed to get HTTP URL content");
    let response = shared
        .http
        .get(url)
        .timeout(URL_FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|_| ApiFailure::bad_request("wrong file identifier/HTTP URL specified"))?;
    if !response.status().is_success() {
        return Err(failed());
    }
    let mime_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    let file_name = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
        })
        .filter(|n| !n.is_empty());
    let bytes = response.bytes().await.map_err(|_| failed())?;
    Ok(Input {
        bytes,
        file_name,
        mime_type,
    })
}

fn photo_sizes(
    shared: &Shared,
    bytes: Bytes,
) -> Result<Vec<super::transcript::PhotoSize>, ApiFailure> {
    if bytes.len() > MAX_PHOTO_UPLOAD {
        return Err(ApiFailure::too_large());
    }
    let sizes = shared
        .write_quietly(|w| w.store_photo(bytes))
        .ok_or_else(|| ApiFailure::bad_request("IMAGE_PROCESS_FAILED"))?;
    if let Some(largest) = sizes.last() {
        let (w, h) = (largest.width.max(1), largest.height.max(1));
        if w + h > 10_000 || w.max(h) / w.min(h) > 20 {
            return Err(ApiFailure::bad_request("PHOTO_INVALID_DIMENSIONS"));
        }
    }
    Ok(sizes)
}

async fn send_media_group(shared: &Shared, params: &Params) -> Result<Value, ApiFailure> {
    let chat_id = params.chat_id()?;
    let Some(Value::Array(items)) = params.json("media")? else {
        return Err(ApiFailure::bad_request(
            "media must be an Array of InputMedia",
        ));
    };
    if items.len() > 10 {
        return Err(ApiFailure::bad_request(
            "Too much messages to send as an album",
        ));
    }
    if items.len() < 2 {
        return Err(ApiFailure::bad_request(
            "wrong number of media items: an album holds 2 to 10 of them",
        ));
    }
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i.get("type").and_then(Value::as_str).unwrap_or(""))
        .collect();
    if kinds.contains(&"document") && kinds.iter().any(|k| *k != "document") {
        return Err(ApiFailure::bad_request(
            "document can't be mixed with other media types",
        ));
    }
    let mut contents = Vec::with_capacity(items.len());
    for (item, kind) in items.iter().zip(&kinds) {
        let media = item.get("media").and_then(Value::as_str).map(str::to_owned);
        let caption = caption_of(
            item.get("caption")
                .and_then(Value::as_str)
                .map(str::to_owned),
            item.get("parse_mode").and_then(Value::as_str),
        )?;
        let input = resolve_input(shared, params, "media", media).await?;
        let content = match *kind {
            "photo" => Content::Photo {
                sizes: photo_sizes(shared, input.bytes)?,
                caption,
            },
            "document" => {
                if input.bytes.len() > MAX_DOCUMENT_UPLOAD {
                    return Err(ApiFailure::too_large());
                }
                let document = shared.write_quietly(|w| {
                    w.store_document(input.bytes, input.file_name, input.mime_type)
                });
                Content::Document { document, caption }
            }
            other => {
                return Err(ApiFailure::bad_request(format!(
                    "media type \"{other}\" is not supported by this fake Bot API"
                )))
            }
        };
        contents.push(content);
    }
    shared.write(|w| {
        w.writable_chat(chat_id)?;
        let group = format!(
            "{}",
            13_000_000_000_000_000i64 + i64::from(rand::random::<u32>())
        );
        let messages: Vec<Value> = contents
            .into_iter()
            .map(|content| {
                let message = w.post(chat_id, true, content, Markup::None, Some(group.clone()));
                w.message_json(chat_id, &message)
            })
            .collect();
        Ok(Value::Array(messages))
    })
}

fn commands_key(params: &Params) -> Result<String, ApiFailure> {
    let scope = params
        .json("scope")?
        .and_then(|s| s.get("type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    let language = params.string("language_code")?.unwrap_or_default();
    Ok(format!("{scope}|{language}"))
}

fn parse_commands(value: Option<Value>) -> Result<Vec<BotCommand>, ApiFailure> {
    let Some(Value::Array(items)) = value else {
        return Err(ApiFailure::bad_request(
            "commands must be an Array of BotCommand",
        ));
    };
    if items.len() > 100 {
        return Err(ApiFailure::bad_request("too many commands"));
    }
    items
        .iter()
        .map(|item| {
            let command = item.get("command").and_then(Value::as_str).unwrap_or("");
            let description = item
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let command = command.strip_prefix('/').unwrap_or(command);
            let valid_name = (1..=32).contains(&command.len())
                && command
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(ApiFailure::bad_request("BOT_COMMAND_INVALID"));
            }
            if !(1..=256).contains(&description.chars().count()) {
                return Err(ApiFailure::bad_request(
                    "command description must be 1-256 characters long",
                ));
            }
            Ok(BotCommand {
                command: command.to_owned(),
                description: description.to_owned(),
            })
        })
        .collect()
}
