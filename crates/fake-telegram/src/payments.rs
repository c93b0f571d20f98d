//! Payments for digital goods in Telegram Stars: invoices, pre-checkout queries, successful
//! payments and refunds, checked and answered the way Telegram does.
//!
//! The fake knows no payment providers, so only Stars (`XTR`) invoices can be sent.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{
    failure::ApiFailure,
    markup::{check_pay_buttons, telegram_len},
    params::Params,
    transcript::{
        Content, Entry, Invoice, LabeledPrice, Markup, PreCheckoutAnswer, RefundedPayment,
        SuccessfulPayment,
    },
    world::{now, World},
    FakeTelegramError,
};

/// "The Bot API must receive an answer within 10 seconds after the pre-checkout query was sent."
pub const PRE_CHECKOUT_DEADLINE: Duration = Duration::from_secs(10);

const STARS: &str = "XTR";
const MAX_TITLE_LEN: usize = 32;
const MAX_DESCRIPTION_LEN: usize = 255;
const MAX_PAYLOAD_BYTES: usize = 128;
/// TDLib refuses amounts beyond this (`check_currency_amount`).
const MAX_AMOUNT: i64 = 9_999_999_999_999;
const QUERY_INVALID: &str = "query is too old and response timeout expired or query id is invalid";

/// The payment side of the world.
pub(crate) struct Payments {
    pub deadline: Duration,
    pub pre_checkouts: Vec<PreCheckout>,
    next_query: u64,
    pub charges: Vec<StarCharge>,
    pub refunds: Vec<StarRefund>,
    /// Payments and refunds in the order they happened, as `getStarTransactions` lists them.
    ledger: Vec<Transaction>,
}

impl Default for Payments {
    fn default() -> Self {
        Self {
            deadline: PRE_CHECKOUT_DEADLINE,
            pre_checkouts: Vec::new(),
            next_query: 0,
            charges: Vec::new(),
            refunds: Vec::new(),
            ledger: Vec::new(),
        }
    }
}

impl Payments {
    pub fn balance(&self) -> i64 {
        let paid: i64 = self.charges.iter().map(|c| c.total_amount).sum();
        let refunded: i64 = self.refunds.iter().map(|r| r.total_amount).sum();
        paid - refunded
    }
}

#[derive(Clone, Copy)]
enum Transaction {
    Payment(usize),
    Refund(usize),
}

/// A pre-checkout query sent to the bot when a user pressed Pay, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreCheckout {
    pub query_id: String,
    pub user_id: i64,
    /// The chat of the invoice, where the payment's service message appears.
    pub chat_id: i64,
    pub invoice_message_id: i32,
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
    pub state: PreCheckoutState,
    /// How long the bot took to answer, when it answered in time.
    pub answered_after: Option<Duration>,
    asked_at: Instant,
    options: PayOptions,
}

/// Where a pre-checkout query stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreCheckoutState {
    /// Sent; the bot has not answered yet.
    Pending,
    /// The bot answered ok and the payment went through.
    Approved { telegram_payment_charge_id: String },
    /// The bot answered ok = false.
    Declined { error_message: String },
    /// The bot did not answer within the deadline; Telegram cancelled the payment.
    Expired,
}

/// A payment in Stars that went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarCharge {
    pub telegram_payment_charge_id: String,
    pub user_id: i64,
    pub chat_id: i64,
    /// The `successful_payment` service message.
    pub message_id: i32,
    pub total_amount: i64,
    pub invoice_payload: String,
    /// Unix time of the payment.
    pub date: i64,
    pub refunded: bool,
}

/// A refund the bot made with `refundStarPayment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarRefund {
    pub telegram_payment_charge_id: String,
    pub user_id: i64,
    pub total_amount: i64,
    pub invoice_payload: String,
    /// Unix time of the refund.
    pub date: i64,
}

/// How a user's payment is delivered to the bot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayOptions {
    /// Delivers the `successful_payment` message in two updates, as a redelivery by Telegram
    /// would: a bot must credit the purchase only once.
    pub deliver_successful_payment_twice: bool,
    /// Asks the bot's pre-checkout about this amount instead of the invoice's, as a modified
    /// client or a stale invoice could: the bot must check the amount against its own prices.
    pub forged_total_amount: Option<i64>,
    /// Takes the Stars but never delivers `successful_payment`, as when the bot fetched the
    /// update and died before handling it: Telegram does not send it again.
    pub lose_successful_payment: bool,
}

fn required(params: &Params, name: &str) -> Result<String, ApiFailure> {
    params
        .string(name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiFailure::bad_request(format!("Parameter \"{name}\" is required")))
}

/// `sendInvoice`, checked in the order the Bot API server, TDLib and Telegram check it.
pub(crate) fn parse_invoice(params: &Params) -> Result<Invoice, ApiFailure> {
    let title = required(params, "title")?;
    let description = required(params, "description")?;
    let payload = required(params, "payload")?;
    let currency = required(params, "currency")?;
    let prices = parse_prices(params)?;
    let provider_token = params.string("provider_token")?.unwrap_or_default();
    let max_tip_amount = params.int("max_tip_amount")?.unwrap_or(0);
    let suggested_tips = match params.json("suggested_tip_amounts")? {
        Some(Value::Array(tips)) => tips.len(),
        _ => 0,
    };

    let mut total_amount: i64 = 0;
    for price in &prices {
        if price.amount.abs() > MAX_AMOUNT {
            return Err(ApiFailure::bad_request(
                "Too big amount of the currency specified",
            ));
        }
        total_amount += price.amount;
    }
    if total_amount <= 0 {
        return Err(ApiFailure::bad_request("Total price must be positive"));
    }
    if total_amount > MAX_AMOUNT {
        return Err(ApiFailure::bad_request("Total price is too big"));
    }

    // Any other currency needs a payment provider, and the fake has none.
    if currency != STARS {
        return Err(ApiFailure::bad_request("PAYMENT_PROVIDER_INVALID"));
    }
    // Stars take no provider token, exactly one price and no tips.
    if !provider_token.is_empty() || prices.len() != 1 || max_tip_amount != 0 || suggested_tips > 0
    {
        return Err(ApiFailure::bad_request("STARS_INVOICE_INVALID"));
    }
    if telegram_len(&title) > MAX_TITLE_LEN {
        return Err(ApiFailure::bad_request(
            "invoice title must be 1-32 characters long",
        ));
    }
    if telegram_len(&description) > MAX_DESCRIPTION_LEN {
        return Err(ApiFailure::bad_request(
            "invoice description must be 1-255 characters long",
        ));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiFailure::bad_request("INVOICE_PAYLOAD_INVALID"));
    }
    Ok(Invoice {
        title,
        description,
        start_parameter: params.string("start_parameter")?.unwrap_or_default(),
        currency,
        total_amount,
        prices,
        payload,
    })
}

fn parse_prices(params: &Params) -> Result<Vec<LabeledPrice>, ApiFailure> {
    if !params.has("prices") {
        return Err(ApiFailure::bad_request("Parameter \"prices\" is required"));
    }
    let value = params
        .json("prices")
        .map_err(|_| ApiFailure::bad_request("Can't parse prices JSON object"))?;
    let Some(Value::Array(items)) = value else {
        return Err(ApiFailure::bad_request(
            "Expected an Array of labeled prices",
        ));
    };
    let wrong =
        |detail: &str| ApiFailure::bad_request(format!("Can't parse labeled price: {detail}"));
    let mut prices = Vec::with_capacity(items.len());
    for item in &items {
        let Value::Object(object) = item else {
            return Err(wrong("LabeledPrice must be an Object"));
        };
        let label = object
            .get("label")
            .and_then(Value::as_str)
            .ok_or_else(|| wrong("Field \"label\" must be of type String"))?;
        if label.is_empty() {
            return Err(wrong("LabeledPrice label must be non-empty"));
        }
        let amount = object
            .get("amount")
            .and_then(Value::as_i64)
            .ok_or_else(|| wrong("Field \"amount\" must be of type Integer"))?;
        prices.push(LabeledPrice {
            label: label.to_owned(),
            amount,
        });
    }
    if prices.is_empty() {
        return Err(ApiFailure::bad_request("There must be at least one price"));
    }
    Ok(prices)
}

/// The keyboard of an invoice: inline only, led by its Pay button.
pub(crate) fn invoice_markup(markup: Markup) -> Result<Markup, ApiFailure> {
    if !matches!(markup, Markup::Inline(_) | Markup::None) {
        return Err(ApiFailure::bad_request("inline keyboard expected"));
    }
    check_pay_buttons(&markup, true)?;
    Ok(markup)
}

pub(crate) fn answer_pre_checkout_query(
    world: &mut World,
    params: &Params,
) -> Result<Value, ApiFailure> {
    let query_id = params.string("pre_checkout_query_id")?.unwrap_or_default();
    let ok = params.bool("ok")?.unwrap_or(false);
    let error_message = if ok {
        None
    } else {
        Some(required(params, "error_message")?)
    };
    let invalid = || ApiFailure::bad_request(QUERY_INVALID);
    let index = world
        .payments
        .pre_checkouts
        .iter()
        .position(|q| q.query_id == query_id)
        .ok_or_else(invalid)?;
    let query = &world.payments.pre_checkouts[index];
    if query.state != PreCheckoutState::Pending {
        return Err(invalid());
    }
    let waited = query.asked_at.elapsed();
    // The timer may not have fired yet; an answer past the deadline is late all the same.
    if waited > world.payments.deadline {
        world.expire_pre_checkout(&query_id);
        return Err(invalid());
    }
    let chat_id = query.chat_id;
    world.payments.pre_checkouts[index].answered_after = Some(waited);
    world.push_entry(
        chat_id,
        Entry::PreCheckoutAnswered(PreCheckoutAnswer {
            query_id: query_id.clone(),
            ok,
            error_message: error_message.clone(),
        }),
    );
    match error_message {
        None => world.complete_payment(index),
        Some(error_message) => {
            world.payments.pre_checkouts[index].state =
                PreCheckoutState::Declined { error_message };
        }
    }
    Ok(json!(true))
}

pub(crate) fn refund_star_payment(world: &mut World, params: &Params) -> Result<Value, ApiFailure> {
    // The Bot API reads anything unparsable as 0.
    let user_id = params.int("user_id").ok().flatten().unwrap_or(0).max(0);
    if user_id == 0 {
        return Err(ApiFailure::bad_request("Invalid user_id specified"));
    }
    let charge_id = required(params, "telegram_payment_charge_id")?;
    if !world.users.contains_key(&user_id) {
        return Err(ApiFailure::bad_request("USER_ID_INVALID"));
    }
    let index = world
        .payments
        .charges
        .iter()
        .position(|c| c.telegram_payment_charge_id == charge_id && c.user_id == user_id)
        .ok_or_else(|| ApiFailure::bad_request("CHARGE_NOT_FOUND"))?;
    let charge = &mut world.payments.charges[index];
    if charge.refunded {
        return Err(ApiFailure::bad_request("CHARGE_ALREADY_REFUNDED"));
    }
    charge.refunded = true;
    let charge = charge.clone();
    world.payments.refunds.push(StarRefund {
        telegram_payment_charge_id: charge.telegram_payment_charge_id.clone(),
        user_id,
        total_amount: charge.total_amount,
        invoice_payload: charge.invoice_payload.clone(),
        date: now(),
    });
    let refund = world.payments.refunds.len() - 1;
    world.payments.ledger.push(Transaction::Refund(refund));
    // Telegram tells the chat, and the bot, with a service message from the user.
    let content = Content::RefundedPayment(RefundedPayment {
        currency: STARS.to_owned(),
        total_amount: charge.total_amount,
        invoice_payload: charge.invoice_payload,
        telegram_payment_charge_id: charge.telegram_payment_charge_id,
    });
    world.post_from_user(charge.chat_id, user_id, content, 1);
    Ok(json!(true))
}

pub(crate) fn get_star_transactions(world: &World, params: &Params) -> Result<Value, ApiFailure> {
    let offset = usize::try_from(params.int("offset")?.unwrap_or(0).max(0)).unwrap_or(0);
    let limit = usize::try_from(params.int("limit")?.unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let transactions: Vec<Value> = world
        .payments
        .ledger
        .iter()
        .skip(offset)
        .take(limit)
        .map(|t| world.transaction_json(*t))
        .collect();
    Ok(json!({ "transactions": transactions }))
}

pub(crate) fn get_my_star_balance(world: &World) -> Value {
    json!({ "amount": world.payments.balance() })
}

impl World {
    /// A user presses Pay under invoice `message_id` in `chat_id`: the bot gets a pre-checkout
    /// query; returns its id.
    pub(crate) fn start_payment(
        &mut self,
        chat_id: i64,
        user_id: i64,
        message_id: i32,
        options: PayOptions,
    ) -> Result<String, FakeTelegramError> {
        let invoice = self
            .chats
            .get(&chat_id)
            .and_then(|chat| chat.messages.get(&message_id))
            .filter(|m| m.from_bot)
            .and_then(|m| m.invoice().cloned())
            .ok_or(FakeTelegramError::NoSuchInvoice { message_id })?;
        let total_amount = options.forged_total_amount.unwrap_or(invoice.total_amount);
        self.payments.next_query += 1;
        // Telegram's query ids are 64-bit numbers sent as strings.
        let query_id = format!(
            "{}",
            (1u64 << 62) + (self.bot.id.unsigned_abs() << 20) + self.payments.next_query
        );
        let payload = json!({
            "id": query_id,
            "from": self.user_json(user_id),
            "currency": invoice.currency,
            "total_amount": total_amount,
            "invoice_payload": invoice.payload,
        });
        self.payments.pre_checkouts.push(PreCheckout {
            query_id: query_id.clone(),
            user_id,
            chat_id,
            invoice_message_id: message_id,
            currency: invoice.currency.clone(),
            total_amount,
            invoice_payload: invoice.payload,
            state: PreCheckoutState::Pending,
            answered_after: None,
            asked_at: Instant::now(),
            options,
        });
        self.push_entry(
            chat_id,
            Entry::PayPressed {
                message_id,
                query_id: query_id.clone(),
                currency: invoice.currency,
                total_amount,
            },
        );
        self.queue_update("pre_checkout_query", payload);
        Ok(query_id)
    }

    /// Cancels a payment whose pre-checkout query the bot left unanswered.
    pub(crate) fn expire_pre_checkout(&mut self, query_id: &str) {
        let Some(query) = self
            .payments
            .pre_checkouts
            .iter_mut()
            .find(|q| q.query_id == query_id && q.state == PreCheckoutState::Pending)
        else {
            return;
        };
        query.state = PreCheckoutState::Expired;
        let chat_id = query.chat_id;
        self.push_entry(
            chat_id,
            Entry::PaymentExpired {
                query_id: query_id.to_owned(),
            },
        );
    }

    fn complete_payment(&mut self, index: usize) {
        let query = self.payments.pre_checkouts[index].clone();
        let charge_id = format!("stxFAKE{}", uuid::Uuid::new_v4().simple());
        let content = Content::SuccessfulPayment(SuccessfulPayment {
            currency: query.currency.clone(),
            total_amount: query.total_amount,
            invoice_payload: query.invoice_payload.clone(),
            telegram_payment_charge_id: charge_id.clone(),
            provider_payment_charge_id: String::new(),
        });
        let deliveries = match query.options {
            PayOptions {
                lose_successful_payment: true,
                ..
            } => 0,
            PayOptions {
                deliver_successful_payment_twice: true,
                ..
            } => 2,
            _ => 1,
        };
        let message_id = self.post_from_user(query.chat_id, query.user_id, content, deliveries);
        self.payments.charges.push(StarCharge {
            telegram_payment_charge_id: charge_id.clone(),
            user_id: query.user_id,
            chat_id: query.chat_id,
            message_id,
            total_amount: query.total_amount,
            invoice_payload: query.invoice_payload,
            date: now(),
            refunded: false,
        });
        let charge = self.payments.charges.len() - 1;
        self.payments.ledger.push(Transaction::Payment(charge));
        self.payments.pre_checkouts[index].state = PreCheckoutState::Approved {
            telegram_payment_charge_id: charge_id,
        };
    }

    /// Queues the `successful_payment` message of a charge once more, in a new update.
    pub(crate) fn redeliver_successful_payment(
        &mut self,
        charge_id: &str,
    ) -> Result<(), FakeTelegramError> {
        let missing = || FakeTelegramError::NoSuchCharge {
            charge_id: charge_id.to_owned(),
        };
        let charge = self
            .payments
            .charges
            .iter()
            .find(|c| c.telegram_payment_charge_id == charge_id)
            .ok_or_else(missing)?;
        let (chat_id, message_id) = (charge.chat_id, charge.message_id);
        let message = self
            .chats
            .get(&chat_id)
            .and_then(|chat| chat.messages.get(&message_id))
            .cloned()
            .ok_or_else(missing)?;
        let payload = self.message_json(chat_id, &message);
        self.queue_update("message", payload);
        Ok(())
    }

    /// A service message Telegram posts on the user's behalf; returns its id.
    fn post_from_user(
        &mut self,
        chat_id: i64,
        user_id: i64,
        content: Content,
        deliveries: usize,
    ) -> i32 {
        let sender = (chat_id != user_id).then_some(user_id);
        let message = self.post_as(chat_id, sender, false, content, Markup::None, None);
        let payload = self.message_json(chat_id, &message);
        for _ in 0..deliveries {
            self.queue_update("message", payload.clone());
        }
        message.message_id
    }

    pub(crate) fn push_entry(&mut self, chat_id: i64, entry: Entry) {
        if let Some(chat) = self.chats.get_mut(&chat_id) {
            chat.transcript.push(entry);
            self.touched.push(chat_id);
        }
    }

    fn transaction_json(&self, transaction: Transaction) -> Value {
        let (side, charge_id, user_id, amount, payload, date) = match transaction {
            Transaction::Payment(i) => {
                let c = &self.payments.charges[i];
                let id = &c.telegram_payment_charge_id;
                (
                    "source",
                    id,
                    c.user_id,
                    c.total_amount,
                    &c.invoice_payload,
                    c.date,
                )
            }
            // A refund pays the Stars back: Telegram lists the user as the receiver.
            Transaction::Refund(i) => {
                let r = &self.payments.refunds[i];
                let id = &r.telegram_payment_charge_id;
                (
                    "receiver",
                    id,
                    r.user_id,
                    r.total_amount,
                    &r.invoice_payload,
                    r.date,
                )
            }
        };
        let mut value = json!({
            "id": charge_id,
            "amount": amount,
            "date": date,
        });
        value[side] = json!({
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": self.user_json(user_id),
            "invoice_payload": payload,
        });
        value
    }
}
