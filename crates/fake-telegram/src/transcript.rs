//! What a chat shows: messages as Telegram stores them, the transcript of a chat and its rendering.

use std::fmt::Write as _;

use bytes::Bytes;

/// One message in a chat, sent by the user or by the bot, as it looks at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// Id of the message within its chat.
    pub message_id: i32,
    /// Whether the bot sent it (otherwise the user did).
    pub from_bot: bool,
    /// The user who wrote it in a group; `None` for the bot and in a private chat (its user).
    pub sender: Option<i64>,
    /// Unix time the message was sent.
    pub date: i64,
    /// Unix time of the last edit, if any.
    pub edit_date: Option<i64>,
    /// Text, photo or document.
    pub content: Content,
    /// The keyboard attached to the message.
    pub markup: Markup,
    /// Shared by the messages of one album.
    pub media_group_id: Option<String>,
}

/// What a message carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// A text message; `text` is what a person reads, with formatting already parsed out.
    Text {
        text: String,
        entities: Vec<serde_json::Value>,
    },
    /// A photo in several sizes, smallest first, as Telegram lists them.
    Photo {
        sizes: Vec<PhotoSize>,
        caption: Option<String>,
    },
    /// A file sent as a document.
    Document {
        document: Document,
        caption: Option<String>,
    },
    /// An invoice the bot sent with `sendInvoice`.
    Invoice(Invoice),
    /// The service message Telegram posts from the user once a payment went through.
    SuccessfulPayment(SuccessfulPayment),
    /// The service message Telegram posts from the user once the bot refunded a payment.
    RefundedPayment(RefundedPayment),
}

/// An invoice as the chat shows it, plus what only the bot and the fake know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub title: String,
    pub description: String,
    /// `""` when the bot gave none, as Telegram sends it.
    pub start_parameter: String,
    /// `XTR` for Telegram Stars.
    pub currency: String,
    pub total_amount: i64,
    pub prices: Vec<LabeledPrice>,
    /// The bot's payload: never shown in the chat, handed back in the pre-checkout query.
    pub payload: String,
}

/// One line of an invoice's price breakdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledPrice {
    pub label: String,
    pub amount: i64,
}

/// What a `successful_payment` service message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessfulPayment {
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
    /// Unique per payment; what `refundStarPayment` takes.
    pub telegram_payment_charge_id: String,
    /// Empty for Stars: no payment provider is involved.
    pub provider_payment_charge_id: String,
}

/// What a `refunded_payment` service message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundedPayment {
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
    pub telegram_payment_charge_id: String,
}

/// The bot's answer to a pre-checkout query, given in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreCheckoutAnswer {
    pub query_id: String,
    pub ok: bool,
    /// Why the bot refused; Telegram shows it to the user.
    pub error_message: Option<String>,
}

/// One size of a photo, with its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct PhotoSize {
    pub file_id: String,
    pub file_unique_id: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Bytes,
}

/// A document with its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub file_id: String,
    pub file_unique_id: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub bytes: Bytes,
}

/// The keyboard a message carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Markup {
    /// No keyboard.
    #[default]
    None,
    /// Buttons under the message.
    Inline(Vec<Vec<Button>>),
    /// A custom keyboard replacing the user's keyboard: the button texts.
    Keyboard(Vec<Vec<String>>),
    /// The custom keyboard is taken away.
    RemoveKeyboard,
    /// The user's client opens a reply to this message.
    ForceReply,
}

/// A button of an inline keyboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub text: String,
    pub callback_data: Option<String>,
    pub url: Option<String>,
    /// A Pay button, allowed only as the first button of an invoice.
    pub pay: bool,
}

/// The bot's answer to a pressed button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackAnswer {
    pub query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
    pub url: Option<String>,
}

/// One thing that happened in a chat, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// The user sent a message.
    User(ChatMessage),
    /// The bot sent a message.
    Bot(ChatMessage),
    /// The bot edited one of its messages; this is the message after the edit.
    Edited(ChatMessage),
    /// The bot deleted a message.
    Deleted { message_id: i32 },
    /// The user pressed an inline button.
    ButtonPressed {
        message_id: i32,
        callback_data: String,
        query_id: String,
    },
    /// The bot answered a pressed button.
    CallbackAnswered(CallbackAnswer),
    /// The bot showed a status such as "typing".
    ChatAction { action: String },
    /// The user pressed Pay under an invoice; the bot got a pre-checkout query.
    PayPressed {
        message_id: i32,
        query_id: String,
        currency: String,
        total_amount: i64,
    },
    /// The bot answered a pre-checkout query in time.
    PreCheckoutAnswered(PreCheckoutAnswer),
    /// The bot left a pre-checkout query unanswered past the deadline, so Telegram cancelled the
    /// payment.
    PaymentExpired { query_id: String },
}

/// A command in the bot's menu, as set with `setMyCommands`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotCommand {
    pub command: String,
    pub description: String,
}

/// A request the bot made, as the fake received it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRequest {
    /// The method in Telegram's spelling (`sendMessage`), or as sent if the fake does not know it.
    pub method: String,
    /// Every non-file parameter; values sent as form fields stay strings.
    pub params: serde_json::Value,
    /// Uploaded files: part name and size in bytes.
    pub uploads: Vec<(String, usize)>,
    /// When the fake received it (for checks on the bot's pacing).
    pub received_at: std::time::Instant,
}

impl ChatMessage {
    /// The text of a text message or the caption of a media message.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text { text, .. } => Some(text),
            Content::Photo { caption, .. } | Content::Document { caption, .. } => {
                caption.as_deref()
            }
            Content::Invoice(_) | Content::SuccessfulPayment(_) | Content::RefundedPayment(_) => {
                None
            }
        }
    }

    /// The invoice of an invoice message.
    pub fn invoice(&self) -> Option<&Invoice> {
        match &self.content {
            Content::Invoice(invoice) => Some(invoice),
            _ => None,
        }
    }

    /// The payment a `successful_payment` service message reports.
    pub fn successful_payment(&self) -> Option<&SuccessfulPayment> {
        match &self.content {
            Content::SuccessfulPayment(payment) => Some(payment),
            _ => None,
        }
    }

    /// The refund a `refunded_payment` service message reports.
    pub fn refunded_payment(&self) -> Option<&RefundedPayment> {
        match &self.content {
            Content::RefundedPayment(refund) => Some(refund),
            _ => None,
        }
    }

    /// The largest size of a photo message.
    pub fn photo(&self) -> Option<&PhotoSize> {
        match &self.content {
            Content::Photo { sizes, .. } => sizes.last(),
            _ => None,
        }
    }

    /// The document of a document message.
    pub fn document(&self) -> Option<&Document> {
        match &self.content {
            Content::Document { document, .. } => Some(document),
            _ => None,
        }
    }

    /// The rows of the inline keyboard (empty when there is none).
    pub fn inline_keyboard(&self) -> &[Vec<Button>] {
        match &self.markup {
            Markup::Inline(rows) => rows,
            _ => &[],
        }
    }

    /// Every inline button, row by row.
    pub fn buttons(&self) -> impl Iterator<Item = &Button> {
        self.inline_keyboard().iter().flatten()
    }

    /// The callback data of the inline button with this text.
    pub fn callback_data(&self, button_text: &str) -> Option<&str> {
        self.buttons()
            .find(|b| b.text == button_text)
            .and_then(|b| b.callback_data.as_deref())
    }
}

/// Renders entries as a person would read the chat, one line per event.
pub(crate) fn render(user_name: &str, entries: &[Entry]) -> String {
    let width = user_name.chars().count().max(3);
    let mut out = String::new();
    for entry in entries {
        match entry {
            Entry::User(m) => line(&mut out, width, user_name, "›", &describe(m)),
            Entry::Bot(m) => {
                line(&mut out, width, "bot", "›", &describe(m));
                keyboard(&mut out, width, &m.markup);
                // Without a keyboard, clients draw the Pay button themselves.
                if let (Content::Invoice(invoice), Markup::None) = (&m.content, &m.markup) {
                    let _ = writeln!(
                        out,
                        "{:>width$}   [Pay {} {}]",
                        "", invoice.total_amount, invoice.currency
                    );
                }
            }
            Entry::Edited(m) => {
                line(
                    &mut out,
                    width,
                    "bot",
                    "✎",
                    &format!("#{} now: {}", m.message_id, describe(m)),
                );
                keyboard(&mut out, width, &m.markup);
            }
            Entry::Deleted { message_id } => line(
                &mut out,
                width,
                "bot",
                "✗",
                &format!("deleted #{message_id}"),
            ),
            Entry::ButtonPressed {
                message_id,
                callback_data,
                ..
            } => line(
                &mut out,
                width,
                user_name,
                "⇢",
                &format!("pressed button {callback_data:?} under #{message_id}"),
            ),
            Entry::CallbackAnswered(a) => {
                let shown = match (&a.text, a.show_alert) {
                    (Some(text), true) => format!("alert: {text}"),
                    (Some(text), false) => format!("toast: {text}"),
                    (None, _) => "answered the button silently".to_owned(),
                };
                line(&mut out, width, "bot", "⇠", &shown)
            }
            Entry::ChatAction { action } => {
                line(&mut out, width, "bot", "…", &format!("({action})"))
            }
            Entry::PayPressed {
                message_id,
                query_id,
                currency,
                total_amount,
            } => line(
                &mut out,
                width,
                user_name,
                "⇢",
                &format!(
                    "pays {total_amount} {currency} for invoice #{message_id} (pre-checkout query {query_id})"
                ),
            ),
            Entry::PreCheckoutAnswered(a) => {
                let shown = match (a.ok, &a.error_message) {
                    (true, _) => "approved the checkout".to_owned(),
                    (false, Some(text)) => format!("declined the checkout: {text}"),
                    (false, None) => "declined the checkout".to_owned(),
                };
                line(&mut out, width, "bot", "⇠", &shown)
            }
            Entry::PaymentExpired { query_id } => line(
                &mut out,
                width,
                "bot",
                "✗",
                &format!("left pre-checkout query {query_id} unanswered: payment cancelled"),
            ),
        }
    }
    out
}

fn line(out: &mut String, width: usize, who: &str, mark: &str, what: &str) {
    let mut lines = what.lines();
    let first = lines.next().unwrap_or("");
    let _ = writeln!(out, "{who:>width$} {mark} {first}");
    for rest in lines {
        let _ = writeln!(out, "{:>width$}   {rest}", "");
    }
}

fn keyboard(out: &mut String, width: usize, markup: &Markup) {
    match markup {
        Markup::Inline(rows) => {
            for row in rows {
                let buttons: Vec<String> = row
                    .iter()
                    .map(|b| match (&b.callback_data, &b.url) {
                        (Some(data), _) => format!("[{}]→{data}", b.text),
                        (None, Some(url)) => format!("[{}]→{url}", b.text),
                        (None, None) if b.pay => format!("[{}]→pay", b.text),
                        (None, None) => format!("[{}]", b.text),
                    })
                    .collect();
                let _ = writeln!(out, "{:>width$}   {}", "", buttons.join(" "));
            }
        }
        Markup::Keyboard(rows) => {
            for row in rows {
                let buttons: Vec<String> = row.iter().map(|t| format!("⟦{t}⟧")).collect();
                let _ = writeln!(out, "{:>width$}   {}", "", buttons.join(" "));
            }
        }
        Markup::RemoveKeyboard => {
            let _ = writeln!(out, "{:>width$}   (keyboard removed)", "");
        }
        Markup::ForceReply | Markup::None => {}
    }
}

fn describe(m: &ChatMessage) -> String {
    let album = m
        .media_group_id
        .as_ref()
        .map(|g| format!(" (album {g})"))
        .unwrap_or_default();
    match &m.content {
        Content::Text { text, .. } => text.clone(),
        Content::Photo { sizes, caption } => {
            let size = sizes.last();
            let (w, h, len) = size
                .map(|s| (s.width, s.height, s.bytes.len()))
                .unwrap_or_default();
            let mut s = format!("[photo {w}×{h}, {}]{album}", human_size(len));
            if let Some(caption) = caption {
                s.push('\n');
                s.push_str(caption);
            }
            s
        }
        Content::Document { document, caption } => {
            let name = document.file_name.as_deref().unwrap_or("unnamed");
            let mut s = format!(
                "[document {name}, {}]{album}",
                human_size(document.bytes.len())
            );
            if let Some(caption) = caption {
                s.push('\n');
                s.push_str(caption);
            }
            s
        }
        Content::Invoice(invoice) => format!(
            "[invoice {:?}, {} {}]\n{}",
            invoice.title, invoice.total_amount, invoice.currency, invoice.description
        ),
        Content::SuccessfulPayment(p) => format!(
            "[paid {} {}, charge {}]",
            p.total_amount, p.currency, p.telegram_payment_charge_id
        ),
        Content::RefundedPayment(r) => format!(
            "[refunded {} {}, charge {}]",
            r.total_amount, r.currency, r.telegram_payment_charge_id
        ),
    }
}

fn human_size(len: usize) -> String {
    if len < 1024 {
        format!("{len} B")
    } else if len < 1024 * 1024 {
        format!("{:.1} KB", len as f64 / 1024.0)
    } else {
        format!("{:.1} MB", len as f64 / (1024.0 * 1024.0))
    }
}
