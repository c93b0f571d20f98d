//! Everything the bot says, in one place per language: [`Ru`] (the default) and [`En`].
//!
//! Texts are HTML (the bot sends with `ParseMode::Html`); anything a user typed — avatar names,
//! prompts — goes through [`esc`] before it is put into a text. Refusals from the domain and the
//! photo checks are turned into sentences here, one arm per reason, so the compiler points at
//! every place a new reason must be explained.

use aggregates::avatar::{MAX_PHOTOS, MIN_PHOTOS};
use aggregates::presets::MAX_PROMPT_CHARS;
use aggregates::{
    AspectRatio, AvatarError, AvatarStatus, AvatarType, Gender, GenerationPreset, TrainingPreset,
};

use aggregates::{AccountEvent, GrantSource, ReleaseReason, ReservationPurpose};

use super::pricing::CreditPack;
use crate::photos::hints::PhotoHint;
use crate::photos::PhotoError;

/// The language the bot speaks with one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Russian, the default (the original bot's users).
    #[default]
    Ru,
    En,
}

impl Lang {
    /// English for users whose Telegram language is English, Russian for everyone else.
    pub fn from_code(code: Option<&str>) -> Self {
        match code {
            Some(code) if code.to_ascii_lowercase().starts_with("en") => Self::En,
            _ => Self::Ru,
        }
    }

    /// The texts of this language.
    pub fn texts(self) -> &'static dyn Texts {
        match self {
            Self::Ru => &Ru,
            Self::En => &En,
        }
    }

    /// The Telegram language code used for this language's command menu.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
        }
    }
}

/// Escapes user-provided text for HTML messages.
/// How many photos got each hint, in the hints' own order.
fn hint_counts(hints: &[PhotoHint]) -> Vec<(PhotoHint, usize)> {
    let mut counts: Vec<(PhotoHint, usize)> = Vec::new();
    for hint in hints {
        match counts.iter_mut().find(|(h, _)| h == hint) {
            Some((_, n)) => *n += 1,
            None => counts.push((*hint, 1)),
        }
    }
    counts
}

pub fn esc(text: &str) -> String {
    teloxide::utils::html::escape(text)
}

/// One avatar as a gallery line shows it.
#[derive(Debug, Clone)]
pub struct AvatarLine {
    pub name: String,
    pub avatar_type: AvatarType,
    pub status: AvatarStatus,
    pub photos: i64,
}

/// What an avatar's card shows.
#[derive(Debug, Clone)]
pub struct CardView {
    pub name: String,
    pub avatar_type: AvatarType,
    pub status: AvatarStatus,
    pub photos: usize,
    pub generations: u64,
}

/// Expected training time (seed 001), in minutes.
pub fn training_minutes(avatar_type: AvatarType) -> (u32, u32) {
    match avatar_type {
        AvatarType::Portrait => (3, 15),
        AvatarType::Style => (5, 30),
    }
}

/// Every text of the bot; one implementation per language.
pub trait Texts: Send + Sync {
    // --- menu and commands ---
    fn welcome(&self, first_name: &str) -> String;
    fn main_menu(&self) -> String;
    fn help(&self) -> String;
    /// The one answer a chat gets when it sends faster than the bot can answer.
    fn slow_down(&self) -> String;
    /// A quota was reached: what, and when it frees up.
    fn quota_reached(&self, reached: super::quotas::QuotaReached) -> String;
    /// The only answer in a group or channel: photos and faces belong in a private chat.
    fn private_chat_only(&self, bot_link: &str) -> String;
    /// `(command, description)` for the command menu.
    fn commands(&self) -> [(&'static str, &'static str); 6];
    // --- credits and payments (shown only when payments are on) ---
    /// The commands added to the menu when credits are sold.
    fn payment_commands(&self) -> [(&'static str, &'static str); 6];
    /// Refunds and promo codes.
    fn ledger(&self) -> &'static dyn LedgerTexts;
    fn btn_buy(&self) -> &'static str;
    /// The answer to a payments command when `PAYMENTS=off`.
    fn payments_off(&self) -> String;
    /// The pack list above the pack buttons.
    fn choose_credit_pack(&self, available: u64) -> String;
    fn pack_button(&self, pack: CreditPack) -> String;
    /// An invoice's title (Telegram allows 32 characters).
    fn invoice_title(&self, pack: CreditPack) -> String;
    /// An invoice's description (Telegram allows 255 characters).
    fn invoice_description(&self, pack: CreditPack) -> String;
    /// The invoice's one price line.
    fn invoice_label(&self, pack: CreditPack) -> String;
    /// A pack button for a pack no longer on sale.
    fn pack_unavailable(&self) -> String;
    /// Shown by Telegram when the bot declines a checkout (the invoice is outdated or forged).
    fn checkout_refused(&self) -> String;
    fn purchase_credited(&self, credits: u32, available: u64) -> String;
    /// A payment whose invoice the bot does not recognise: nothing was credited.
    fn purchase_not_credited(&self) -> String;
    /// The balance screen; `movements` are the latest first, already formatted.
    fn balance(&self, available: u64, reserved: u64, movements: &[String]) -> String;
    /// One movement of the ledger, for the balance screen (without its date).
    fn movement(&self, event: &AccountEvent) -> String;
    fn paysupport(&self, contact: Option<&str>) -> String;
    fn terms(&self, refund_days: u64) -> String;
    /// Paid work refused because the balance does not cover it.
    fn insufficient_credits(&self, needed: u32, available: u64) -> String;
    /// The price of a paid action, shown before it is asked for: exactly what it will reserve.
    fn price_line(&self, credits: u32, available: u64) -> String;
    /// Prices of several choices (label, credits), then the balance.
    fn price_list(&self, prices: &[(&str, u32)], available: u64) -> String;
    /// Under a result: what "Generate again" will reserve.
    fn again_price(&self, credits: u32) -> String;
    /// Credits held for work that was not delivered came back to the balance.
    fn credits_returned(&self, credits: u32, reason: ReleaseReason, available: u64) -> String;
    fn btn_create(&self) -> &'static str;
    fn btn_gallery(&self) -> &'static str;
    fn btn_generate(&self) -> &'static str;
    fn btn_help(&self) -> &'static str;
    fn btn_menu(&self) -> &'static str;
    fn btn_back(&self) -> &'static str;
    fn cancelled(&self) -> String;
    fn nothing_to_cancel(&self) -> String;
    fn upload_stopped(&self, name: &str, photos: usize) -> String;
    fn unknown_input(&self) -> String;

    // --- creating an avatar ---
    fn choose_type(&self) -> String;
    fn type_name(&self, avatar_type: AvatarType) -> &'static str;
    fn type_button(&self, avatar_type: AvatarType) -> &'static str;
    fn choose_gender(&self, avatar_type: AvatarType) -> String;
    fn gender_button(&self, gender: Gender) -> &'static str;
    fn ask_name(&self) -> String;
    fn name_expected(&self) -> String;
    /// The upload screen; it says when the photos will be deleted (`photo_retention` after a
    /// successful training, `None`: kept until the avatar is deleted).
    fn avatar_created(&self, name: &str, photo_retention: Option<std::time::Duration>) -> String;

    // --- photos ---
    fn photo_accepted(&self, count: usize) -> String;
    fn photo_refused(&self, reason: &str, count: usize) -> String;
    fn album_summary(&self, accepted: usize, refused: &[String], count: usize) -> String;
    fn photo_error(&self, error: &PhotoError) -> String;
    /// Advice on an accepted photo: it trains, but a better one would train better.
    fn photo_hints(&self, hints: &[PhotoHint]) -> String;
    /// Under an album's summary: how many of its photos got each piece of advice.
    fn album_hints(&self, hints: &[PhotoHint]) -> String;
    fn photo_download_failed(&self) -> String;
    fn not_collecting_photos(&self) -> String;
    fn text_while_uploading(&self, count: usize) -> String;
    fn upload_more(&self, name: &str, count: usize) -> String;
    fn btn_start_training(&self) -> &'static str;
    fn btn_upload_photos(&self) -> &'static str;
    fn btn_remove_photo(&self) -> &'static str;
    fn btn_start_over(&self) -> &'static str;
    /// After "remove this photo".
    fn photo_removed(&self, count: usize) -> String;
    /// After "start over": `removed` photos are gone.
    fn set_started_over(&self, removed: usize) -> String;
    /// "Remove this photo" on a photo that is no longer in the set.
    fn photo_already_removed(&self) -> &'static str;

    // --- training ---
    fn choose_training_preset(&self, name: &str, photos: usize) -> String;
    fn training_preset_button(&self, preset: TrainingPreset) -> &'static str;
    fn training_started(
        &self,
        name: &str,
        avatar_type: AvatarType,
        preset: TrainingPreset,
    ) -> String;
    fn training_completed(&self, name: &str) -> String;
    fn training_failed(&self, name: &str) -> String;
    /// One sentence on why FAL failed a job, by kind of failure.
    fn fal_failure(&self, kind: crate::fal::FailureKind) -> &'static str;
    fn btn_retry_training(&self) -> &'static str;

    // --- gallery ---
    fn gallery(&self, lines: &[AvatarLine], page: usize, pages: usize, total: i64) -> String;
    fn gallery_empty(&self) -> String;
    fn status_name(&self, status: AvatarStatus) -> &'static str;
    fn card(&self, card: &CardView) -> String;
    fn btn_delete(&self) -> &'static str;
    fn btn_previous(&self) -> &'static str;
    fn btn_next(&self) -> &'static str;
    /// The warning before a deletion (seed 003's), saying exactly what goes and what FAL keeps:
    /// `fal_uploads_kept_for` is how long FAL keeps what we had to upload to it (nothing when
    /// FAL reads our copies from us; see `actors::copies`).
    fn delete_confirmation(
        &self,
        name: &str,
        status: AvatarStatus,
        fal_uploads_kept_for: Option<std::time::Duration>,
    ) -> String;
    fn btn_confirm_delete(&self) -> &'static str;
    fn btn_cancel_delete(&self) -> &'static str;
    fn avatar_deleted(&self, name: &str) -> String;

    // --- generating ---
    fn choose_avatar_for_generation(&self) -> String;
    fn last_used_button(&self, name: &str) -> String;
    fn no_trained_avatars(&self) -> String;
    fn choose_generation_preset(&self, name: &str) -> String;
    fn preset_name(&self, preset: GenerationPreset) -> &'static str;
    fn preset_button(&self, preset: GenerationPreset) -> String;
    fn ask_prompt(&self, name: &str, preset: GenerationPreset) -> String;
    fn prompt_expected(&self) -> String;
    fn generation_started(&self, name: &str, preset: Option<GenerationPreset>) -> String;
    fn generation_done(&self, name: &str, hidden: usize) -> String;
    fn all_images_hidden(&self, name: &str, hidden: usize) -> String;
    fn generation_failed(&self, name: &str) -> String;
    /// After a message with several prompts: how many started, and why the others did not.
    fn batch_started(
        &self,
        name: &str,
        preset: GenerationPreset,
        started: u32,
        size: u32,
        refused: &[String],
    ) -> String;
    /// Under each result of a batch: how many of it are done.
    fn batch_progress(&self, index: u32, finished: u32, size: u32) -> String;
    fn btn_again(&self) -> &'static str;
    fn btn_other_preset(&self) -> &'static str;
    fn btn_rename(&self) -> &'static str;
    fn ask_new_name(&self, name: &str) -> String;
    fn renamed(&self, name: &str) -> String;
    fn new_name_expected(&self) -> String;
    /// The prompt screen's current choices: images per request and the frame.
    fn prompt_options(&self, images: u32, aspect: Option<AspectRatio>) -> String;
    /// The frame button that keeps the preset's own.
    fn btn_preset_frame(&self) -> &'static str;
    /// Under a result: the original file; `n` numbers the images of an album.
    fn btn_as_file(&self, n: Option<usize>) -> String;
    /// "Send as file" for an image that can no longer be fetched.
    fn image_unavailable(&self) -> &'static str;

    // --- packs, samples, upscales, the main avatar ---
    fn btn_packs(&self) -> &'static str;
    fn choose_pack(&self, name: &str) -> String;
    fn no_packs(&self) -> &'static str;
    /// A pack's screen: its title, description and how many pictures it makes.
    fn pack_screen(&self, title: &str, description: &str, prompts: usize) -> String;
    fn btn_run_pack(&self, prompts: usize) -> String;
    fn pack_started(&self, name: &str, title: &str, started: u32, size: u32) -> String;
    /// Added to "ready!" when sample pictures are on their way.
    fn starter_coming(&self, count: u32) -> String;
    /// The caption of a sample picture made when the training completed.
    fn starter_done(&self, name: &str) -> String;
    fn btn_make_main(&self) -> &'static str;
    fn main_set(&self, name: &str) -> String;
    fn main_badge(&self) -> &'static str;
    fn btn_other_avatar(&self) -> &'static str;
    /// Under a result: enlarge it; `n` numbers the images of an album.
    fn btn_upscale(&self, n: Option<usize>) -> String;
    fn choose_upscale(&self, n: usize) -> String;
    fn upscale_started(&self, times: u8) -> String;
    fn upscale_done(&self, name: &str, times: u8, size: Option<(u32, u32)>) -> String;
    fn upscale_failed(&self, name: &str) -> String;

    // --- refusals ---
    fn refusal(&self, error: &AvatarError) -> String;
    /// A refusal as a whole message: `reason` is a sentence from [`Texts::refusal`] or
    /// [`Texts::photo_error`].
    fn refused(&self, reason: &str) -> String;
    fn stale_button(&self) -> &'static str;
    fn not_available(&self) -> &'static str;
    fn avatar_gone(&self) -> &'static str;
    fn something_went_wrong(&self) -> String;

    // --- training progress (a line under "training started", edited while FAL works) ---
    /// The training runs: `bar` drawn at `percent`, `left` the time left if it can be told.
    fn training_progress(
        &self,
        bar: &str,
        percent: u8,
        left: Option<std::time::Duration>,
    ) -> String;
    /// The training waits for a free trainer.
    fn training_queued(&self, bar: &str) -> String;
    /// The bar's last state: the training is done (the "ready" message follows).
    fn training_progress_done(&self, bar: &str) -> String;
    /// The bar's last state: the training failed (the message saying why follows).
    fn training_progress_failed(&self) -> String;
}

/// "1 кредит", "3 кредита", "5 кредитов": Russian plural by the last digits.
fn credits_ru(n: u64) -> String {
    let word = match (n % 10, n % 100) {
        (1, 11) | (_, 12..=14) => "кредитов",
        (1, _) => "кредит",
        (2..=4, _) => "кредита",
        _ => "кредитов",
    };
    format!("{n} {word}")
}

/// Whole days of a retention period (less than a day counts as none).
fn whole_days(retention: std::time::Duration) -> u64 {
    retention.as_secs() / (24 * 60 * 60)
}

/// How long FAL keeps an upload, rounded up: whole hours from an hour on, else minutes.
fn kept_for_ru(kept: std::time::Duration) -> String {
    let secs = kept.as_secs().max(1);
    if secs >= 3600 {
        format!("{} ч", secs.div_ceil(3600))
    } else {
        format!("{} мин", secs.div_ceil(60))
    }
}

fn kept_for_en(kept: std::time::Duration) -> String {
    let secs = kept.as_secs().max(1);
    let (n, unit) = if secs >= 3600 {
        (secs.div_ceil(3600), "hour")
    } else {
        (secs.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn days_ru(n: u64) -> String {
    let word = match (n % 10, n % 100) {
        (1, 11) | (_, 12..=14) => "дней",
        (1, _) => "день",
        (2..=4, _) => "дня",
        _ => "дней",
    };
    format!("{n} {word}")
}

fn range(min: usize, max: usize) -> String {
    format!("{min}–{max}")
}

fn seconds(preset: GenerationPreset) -> String {
    let (from, to) = preset.values().expected_seconds;
    format!("{from}–{to}")
}

// --- refunds and promo codes: one block, both languages ---

/// Why the refund screen lists no purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRefund {
    /// Nothing was ever bought.
    NoPurchases,
    /// Every purchase was refunded already.
    AllRefunded,
    /// The refund window of every purchase still held has closed.
    WindowClosed,
    /// The credits of the purchases still in time are (partly) spent.
    CreditsSpent,
}

/// The texts of refunds in Stars and promo codes ([`Texts::ledger`]).
pub trait LedgerTexts: Send + Sync {
    fn btn_refund(&self) -> &'static str;
    fn btn_promo(&self) -> &'static str;
    /// Above one button per refundable purchase.
    fn refund_choose(&self, refund_days: u64) -> String;
    /// One refundable purchase's button.
    fn refund_button(&self, credits: u32, stars: u32, at: chrono::DateTime<chrono::Utc>) -> String;
    fn refund_none(&self, why: NoRefund, refund_days: u64) -> String;
    /// The refund was asked for; the Stars follow shortly.
    fn refund_requested(&self) -> String;
    fn refund_already(&self) -> String;
    fn refund_done(&self, stars: u32, credits: u32) -> String;
    /// The ledger refused the refund, in a sentence.
    fn refund_refused(&self, refusal: &aggregates::AccountError) -> String;
    /// Telegram would not return the Stars; support has to help.
    fn refund_not_returned(&self) -> String;
    /// How to redeem a code (the promo button, `/promo` without a code).
    fn promo_usage(&self) -> String;
    /// After the promo button: the next message is the code.
    fn promo_ask(&self) -> String;
    fn promo_redeemed(&self, code: &str, credits: u32, available: u64) -> String;
    fn promo_refused(&self, code: &str, why: crate::store::promo::PromoRefusal) -> String;
}

impl LedgerTexts for Ru {
    fn btn_refund(&self) -> &'static str {
        "↩️ Вернуть покупку"
    }

    fn btn_promo(&self) -> &'static str {
        "🎟 Промокод"
    }

    fn refund_choose(&self, refund_days: u64) -> String {
        format!(
            "↩️ <b>Возврат покупки</b>\n\nЭти покупки можно вернуть: прошло не больше {refund_days} дней, и их кредиты не потрачены. \
             Кредиты покупки спишутся, а звёзды вернутся через Telegram. Выберите покупку:"
        )
    }

    fn refund_button(&self, credits: u32, stars: u32, at: chrono::DateTime<chrono::Utc>) -> String {
        format!(
            "{} — ⭐{stars}, {}",
            credits_ru(u64::from(credits)),
            at.format("%d.%m.%Y")
        )
    }

    fn refund_none(&self, why: NoRefund, refund_days: u64) -> String {
        let why = match why {
            NoRefund::NoPurchases => "Вы ещё ничего не покупали.".to_owned(),
            NoRefund::AllRefunded => "Все ваши покупки уже возвращены.".to_owned(),
            NoRefund::WindowClosed => format!(
                "Срок возврата ({refund_days} дней с покупки) уже прошёл."
            ),
            NoRefund::CreditsSpent => {
                "Кредиты покупок уже потрачены: вернуть можно только покупку, все кредиты которой ещё на балансе.".to_owned()
            }
        };
        format!("↩️ Сейчас вернуть нечего. {why} Вопросы — в /paysupport.")
    }

    fn refund_requested(&self) -> String {
        "⏳ Возврат оформлен: кредиты списываются, звёзды вернутся в течение минуты.".into()
    }

    fn refund_already(&self) -> String {
        "Эта покупка уже возвращена.".into()
    }

    fn refund_done(&self, stars: u32, credits: u32) -> String {
        format!(
            "✅ Возврат выполнен: ⭐{stars} вернулись на ваш счёт в Telegram, {} списаны.",
            credits_ru(u64::from(credits))
        )
    }

    fn refund_refused(&self, refusal: &aggregates::AccountError) -> String {
        use aggregates::AccountError as E;
        match refusal {
            E::RefundWindowClosed { closed_at, .. } => format!(
                "❌ Вернуть эту покупку нельзя: срок возврата закончился {}.",
                closed_at.format("%d.%m.%Y")
            ),
            E::PurchaseCreditsSpent { needed, available } => format!(
                "❌ Вернуть эту покупку нельзя: её {} уже не все на балансе (доступно {available}).",
                credits_ru(u64::from(*needed))
            ),
            E::UnknownPurchase(_) => "❌ Такой покупки нет на вашем счёте.".into(),
            _ => "❌ Вернуть эту покупку не получилось. Напишите в /paysupport.".into(),
        }
    }

    fn refund_not_returned(&self) -> String {
        "⚠️ Telegram не принял возврат звёзд. Напишите в /paysupport — мы разберёмся.".into()
    }

    fn promo_usage(&self) -> String {
        "🎟 Отправьте промокод командой: <code>/promo КОД</code>".into()
    }

    fn promo_ask(&self) -> String {
        "🎟 Пришлите промокод одним сообщением (или /cancel).".into()
    }

    fn promo_redeemed(&self, code: &str, credits: u32, available: u64) -> String {
        format!(
            "🎟 Промокод {} принят: +{}. Теперь у вас <b>{available}</b>.",
            esc(code),
            credits_ru(u64::from(credits))
        )
    }

    fn promo_refused(&self, code: &str, why: crate::store::promo::PromoRefusal) -> String {
        use crate::store::promo::PromoRefusal as P;
        let code = esc(code);
        match why {
            P::Unknown => format!("❌ Промокода {code} нет. Проверьте, как он написан."),
            P::Expired => format!("❌ Срок действия промокода {code} закончился."),
            P::UsedUp => format!("❌ Промокод {code} уже использован максимальное число раз."),
            P::AlreadyUsed => {
                format!("❌ Вы уже использовали промокод {code}: он действует один раз.")
            }
        }
    }
}

impl LedgerTexts for En {
    fn btn_refund(&self) -> &'static str {
        "↩️ Refund a purchase"
    }

    fn btn_promo(&self) -> &'static str {
        "🎟 Promo code"
    }

    fn refund_choose(&self, refund_days: u64) -> String {
        format!(
            "↩️ <b>Refund a purchase</b>\n\nThese purchases can be refunded: at most {refund_days} days old, with their credits unspent. \
             The purchase's credits leave your balance and the Stars come back through Telegram. Choose one:"
        )
    }

    fn refund_button(&self, credits: u32, stars: u32, at: chrono::DateTime<chrono::Utc>) -> String {
        format!("{credits} credits — ⭐{stars}, {}", at.format("%Y-%m-%d"))
    }

    fn refund_none(&self, why: NoRefund, refund_days: u64) -> String {
        let why = match why {
            NoRefund::NoPurchases => "You have not bought anything yet.".to_owned(),
            NoRefund::AllRefunded => "All your purchases were refunded already.".to_owned(),
            NoRefund::WindowClosed => {
                format!("The refund period ({refund_days} days from a purchase) is over.")
            }
            NoRefund::CreditsSpent => {
                "The purchases' credits are spent: only a purchase whose credits are all still in your balance can be refunded.".to_owned()
            }
        };
        format!("↩️ Nothing can be refunded now. {why} Questions: /paysupport.")
    }

    fn refund_requested(&self) -> String {
        "⏳ Refund on its way: the credits are taken back and the Stars return within a minute."
            .into()
    }

    fn refund_already(&self) -> String {
        "This purchase was refunded already.".into()
    }

    fn refund_done(&self, stars: u32, credits: u32) -> String {
        format!("✅ Refunded: ⭐{stars} are back in your Telegram account, {credits} credits taken back.")
    }

    fn refund_refused(&self, refusal: &aggregates::AccountError) -> String {
        use aggregates::AccountError as E;
        match refusal {
            E::RefundWindowClosed { closed_at, .. } => format!(
                "❌ This purchase cannot be refunded: its refund period ended on {}.",
                closed_at.format("%Y-%m-%d")
            ),
            E::PurchaseCreditsSpent { needed, available } => format!(
                "❌ This purchase cannot be refunded: its {needed} credits are no longer all in your balance ({available} available)."
            ),
            E::UnknownPurchase(_) => "❌ There is no such purchase on your account.".into(),
            _ => "❌ This purchase could not be refunded. Please write to /paysupport.".into(),
        }
    }

    fn refund_not_returned(&self) -> String {
        "⚠️ Telegram did not accept the refund of the Stars. Please write to /paysupport and we will sort it out.".into()
    }

    fn promo_usage(&self) -> String {
        "🎟 Send your promo code like this: <code>/promo CODE</code>".into()
    }

    fn promo_ask(&self) -> String {
        "🎟 Send the promo code in one message (or /cancel).".into()
    }

    fn promo_redeemed(&self, code: &str, credits: u32, available: u64) -> String {
        format!(
            "🎟 Promo code {} accepted: +{credits} credits. You now have <b>{available}</b>.",
            esc(code)
        )
    }

    fn promo_refused(&self, code: &str, why: crate::store::promo::PromoRefusal) -> String {
        use crate::store::promo::PromoRefusal as P;
        let code = esc(code);
        match why {
            P::Unknown => format!("❌ There is no promo code {code}. Check how it is spelled."),
            P::Expired => format!("❌ Promo code {code} has expired."),
            P::UsedUp => format!("❌ Promo code {code} has been used as often as it may be."),
            P::AlreadyUsed => {
                format!("❌ You have used promo code {code} already: it works once per account.")
            }
        }
    }
}

/// Russian.
pub struct Ru;

impl Texts for Ru {
    fn welcome(&self, first_name: &str) -> String {
        format!(
            "👋 Привет, {}!\n\nЯ <b>Aisha</b>: обучу персонального ИИ-аватара по вашим фотографиям \
             и буду создавать с ним новые изображения по текстовому описанию.\n\n\
             🎭 Создайте аватар, загрузите {} фото — и через несколько минут он будет готов.",
            esc(first_name),
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn main_menu(&self) -> String {
        "🏠 <b>Главное меню</b>\n\nЧто сделаем?".into()
    }

    fn slow_down(&self) -> String {
        "🐢 Вы присылаете сообщения быстрее, чем я успеваю отвечать. Я отвечу на первые — дождитесь ответа, прежде чем писать дальше.".into()
    }

    fn quota_reached(&self, reached: super::quotas::QuotaReached) -> String {
        use super::quotas::QuotaReached as Q;
        match reached {
            Q::Avatars(n) => format!("⛔ У вас уже {n} аватаров — это максимум. Удалите ненужный в «Мои аватары», чтобы создать новый."),
            Q::TrainingsToday(n) => format!("⛔ За сутки можно запустить не больше {n} обучений. Попробуйте завтра."),
            Q::PendingGenerations(n) => format!("⏳ У вас уже создаются {n} изображения — дождитесь их, потом можно заказать ещё."),
            Q::GenerationsPerMinute(n) => format!("⏳ Не больше {n} генераций в минуту. Подождите минуту и попробуйте снова."),
            Q::ServiceToday => "⛔ Сегодня сервис исчерпал дневной лимит заданий. Попробуйте завтра — мы вас ждём.".into(),
        }
    }

    fn private_chat_only(&self, bot_link: &str) -> String {
        format!(
            "Я работаю только в личных сообщениях: фотографии и аватары — это личное. Напишите мне: {bot_link}"
        )
    }
    fn help(&self) -> String {
        format!(
            "❓ <b>Помощь</b>\n\n\
             /start — главное меню\n\
             /new — создать аватар\n\
             /avatars — мои аватары\n\
             /cancel — отменить текущее действие\n\
             /help — эта справка\n\
             /forgetme — удалить все мои данные\n\n\
             Как это работает:\n\
             1. Выберите тип аватара, пол и имя.\n\
             2. Загрузите {} фотографий (можно альбомом или файлами без сжатия).\n\
             3. Запустите обучение и дождитесь сообщения о готовности.\n\
             4. Выберите пресет, опишите картинку — и получите изображение.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn payment_commands(&self) -> [(&'static str, &'static str); 6] {
        [
            ("buy", "Купить кредиты"),
            ("balance", "Баланс и движения кредитов"),
            ("refund", "Вернуть покупку"),
            ("promo", "Ввести промокод"),
            ("paysupport", "Вопросы об оплате"),
            ("terms", "Условия"),
        ]
    }

    fn ledger(&self) -> &'static dyn LedgerTexts {
        &Ru
    }

    fn btn_buy(&self) -> &'static str {
        "💳 Купить кредиты"
    }

    fn payments_off(&self) -> String {
        "Оплата сейчас выключена: всё работает бесплатно, покупать ничего не нужно.".into()
    }

    fn choose_credit_pack(&self, available: u64) -> String {
        format!(
            "💳 <b>Кредиты</b>\n\nКредитами оплачиваются обучения и изображения. Сейчас у вас: <b>{available}</b>.\n\nВыберите пакет — оплата в Telegram Stars ⭐."
        )
    }

    fn pack_button(&self, pack: CreditPack) -> String {
        format!("{} кредитов — ⭐{}", pack.credits, pack.stars)
    }

    fn invoice_title(&self, pack: CreditPack) -> String {
        format!("{} кредитов Aisha", pack.credits)
    }

    fn invoice_description(&self, pack: CreditPack) -> String {
        format!(
            "{} кредитов на обучения аватаров и изображения в Aisha. Кредиты не передаются другим; неизрасходованные можно вернуть в срок возврата (/terms).",
            pack.credits
        )
    }

    fn invoice_label(&self, pack: CreditPack) -> String {
        format!("{} кредитов", pack.credits)
    }

    fn pack_unavailable(&self) -> String {
        "Этого пакета больше нет в продаже. Откройте /buy ещё раз.".into()
    }

    fn checkout_refused(&self) -> String {
        "Этот счёт устарел: такого пакета больше нет. Откройте /buy и выберите пакет заново — звёзды не списаны.".into()
    }

    fn purchase_credited(&self, credits: u32, available: u64) -> String {
        format!("✅ Оплата прошла: +{credits} кредитов. Теперь у вас <b>{available}</b>.")
    }

    fn purchase_not_credited(&self) -> String {
        "⚠️ Оплата пришла, но я не узнаю этот счёт, поэтому не начислил кредиты. Напишите в /paysupport — мы разберёмся или вернём звёзды.".into()
    }

    fn balance(&self, available: u64, reserved: u64, movements: &[String]) -> String {
        let mut text = format!("💰 <b>Баланс</b>\n\nДоступно: <b>{available}</b> кредитов");
        if reserved > 0 {
            text.push_str(&format!("\nЗарезервировано за идущую работу: {reserved}"));
        }
        if movements.is_empty() {
            text.push_str("\n\nДвижений пока не было.");
        } else {
            text.push_str("\n\nПоследние движения:\n");
            text.push_str(&movements.join("\n"));
        }
        text
    }

    fn movement(&self, event: &AccountEvent) -> String {
        match event {
            AccountEvent::CreditsGranted {
                credits, source, ..
            } => match source {
                GrantSource::Welcome => format!("+{credits} — приветственный подарок"),
                GrantSource::PromoCode { code } => format!("+{credits} — промокод {}", esc(code)),
                GrantSource::Operator { .. } => format!("+{credits} — от администрации"),
            },
            AccountEvent::CreditsPurchased { credits, stars, .. } => {
                format!("+{credits} — покупка за ⭐{stars}")
            }
            AccountEvent::CreditsReserved {
                credits, purpose, ..
            } => match purpose {
                ReservationPurpose::Training { .. } => format!("−{credits} — резерв на обучение"),
                ReservationPurpose::Generation { .. } => {
                    format!("−{credits} — резерв на изображения")
                }
            },
            AccountEvent::ReservationCaptured { credits, .. } => {
                format!("{credits} — списано за готовую работу")
            }
            AccountEvent::ReservationReleased { credits, .. } => {
                format!("+{credits} — резерв возвращён")
            }
            AccountEvent::PurchaseRefunded { credits, stars, .. } => {
                format!("−{credits} — возврат покупки (⭐{stars} возвращены)")
            }
        }
    }

    fn paysupport(&self, contact: Option<&str>) -> String {
        let whom = match contact {
            Some(contact) => format!("Напишите {}", esc(contact)),
            None => "Напишите владельцу бота (контакт — в описании бота)".into(),
        };
        format!(
            "🛟 <b>Вопросы об оплате</b>\n\n{whom}: укажите дату покупки и пакет — их видно в /balance. \
             Мы отвечаем на вопросы о списаниях, начислениях и возвратах. \
             Поддержка Telegram по покупкам в этом боте не помогает — только мы."
        )
    }

    fn terms(&self, refund_days: u64) -> String {
        format!(
            "📄 <b>Условия</b>\n\n\
             • Кредиты — внутренняя единица Aisha: ими оплачиваются обучения аватаров и изображения. Это не деньги, их нельзя вывести.\n\
             • Кредиты покупаются за Telegram Stars и привязаны к вашему аккаунту Telegram; передать их другому нельзя.\n\
             • Кредиты резервируются, когда работа принята, и списываются, когда она готова; если работа не удалась, они возвращаются.\n\
             • Покупку можно вернуть в течение {refund_days} дней, если её кредиты ещё не потрачены: откройте /refund, звёзды вернутся через Telegram.\n\
             • Изображения создаются ИИ по вашему описанию; вы отвечаете за загруженные фото и описания."
        )
    }

    fn insufficient_credits(&self, needed: u32, available: u64) -> String {
        format!(
            "💳 Не хватает кредитов: нужно {needed}, у вас {available}. Пополните баланс — выберите пакет:"
        )
    }

    fn price_line(&self, credits: u32, available: u64) -> String {
        format!(
            "💳 Стоимость: {} · на балансе {available}",
            credits_ru(u64::from(credits))
        )
    }

    fn again_price(&self, credits: u32) -> String {
        format!(
            "💳 «{}» — {}",
            self.btn_again(),
            credits_ru(u64::from(credits))
        )
    }

    fn price_list(&self, prices: &[(&str, u32)], available: u64) -> String {
        let lines: Vec<String> = prices
            .iter()
            .map(|(label, credits)| format!("{label} — {}", credits_ru(u64::from(*credits))))
            .collect();
        format!(
            "💳 Стоимость:\n{}\nНа балансе {available}",
            lines.join("\n")
        )
    }

    fn credits_returned(&self, credits: u32, reason: ReleaseReason, available: u64) -> String {
        let why = match reason {
            ReleaseReason::Failed => "работа не удалась",
            ReleaseReason::Cancelled => "работа отменена",
            ReleaseReason::DeadlinePassed => "результат не пришёл вовремя",
            ReleaseReason::AvatarDeleted => "аватар удалён",
            ReleaseReason::Refused => "работа не началась",
        };
        format!(
            "↩️ Возврат: {} снова на балансе ({why}). Доступно: {available}.",
            credits_ru(u64::from(credits))
        )
    }

    fn commands(&self) -> [(&'static str, &'static str); 6] {
        [
            ("start", "Главное меню"),
            ("new", "Создать аватар"),
            ("avatars", "Мои аватары"),
            ("cancel", "Отменить текущее действие"),
            ("help", "Помощь"),
            ("forgetme", "Удалить все мои данные"),
        ]
    }

    fn btn_create(&self) -> &'static str {
        "🎭 Создать аватар"
    }
    fn btn_gallery(&self) -> &'static str {
        "🖼 Мои аватары"
    }
    fn btn_generate(&self) -> &'static str {
        "✨ Сгенерировать"
    }
    fn btn_help(&self) -> &'static str {
        "❓ Помощь"
    }
    fn btn_menu(&self) -> &'static str {
        "🏠 Меню"
    }
    fn btn_back(&self) -> &'static str {
        "⬅️ Назад"
    }

    fn cancelled(&self) -> String {
        "✖️ Действие отменено.".into()
    }

    fn nothing_to_cancel(&self) -> String {
        "Сейчас нечего отменять.".into()
    }

    fn upload_stopped(&self, name: &str, photos: usize) -> String {
        format!(
            "✖️ Загрузка остановлена. Аватар «{}» сохранён как черновик ({photos} фото) — \
             продолжить можно из раздела «Мои аватары».",
            esc(name)
        )
    }

    fn unknown_input(&self) -> String {
        "🤔 Не понял. Выберите действие в меню или отправьте /help.".into()
    }

    fn choose_type(&self) -> String {
        "🎯 <b>Выберите тип аватара</b>\n\n\
         🎭 <b>Портретный</b> — специально для фотографий людей: селфи, портреты. Обучение 3–15 минут.\n\n\
         🎨 <b>Художественный</b> — для стилей и объектов. Обучение 5–30 минут."
            .into()
    }

    fn type_name(&self, avatar_type: AvatarType) -> &'static str {
        match avatar_type {
            AvatarType::Portrait => "Портретный",
            AvatarType::Style => "Художественный",
        }
    }

    fn type_button(&self, avatar_type: AvatarType) -> &'static str {
        match avatar_type {
            AvatarType::Portrait => "🎭 Портретный",
            AvatarType::Style => "🎨 Художественный",
        }
    }

    fn choose_gender(&self, avatar_type: AvatarType) -> String {
        format!(
            "Тип: <b>{}</b>\n\n👤 Выберите пол — это помогает точнее обучить аватар.",
            self.type_name(avatar_type)
        )
    }

    fn gender_button(&self, gender: Gender) -> &'static str {
        match gender {
            Gender::Male => "👨 Мужской",
            Gender::Female => "👩 Женский",
            Gender::Other => "🧑 Другое",
        }
    }

    fn ask_name(&self) -> String {
        "📝 Как назовём аватар? Отправьте имя одним сообщением (до 64 символов).".into()
    }

    fn name_expected(&self) -> String {
        "📝 Жду имя аватара текстом. Отменить: /cancel".into()
    }

    fn avatar_created(&self, name: &str, photo_retention: Option<std::time::Duration>) -> String {
        let kept = match photo_retention.map(whole_days) {
            None => "🔒 Фотографии хранятся, пока вы не удалите аватар.".to_owned(),
            Some(0) => "🔒 Фотографии нужны только для обучения: сразу после успешного обучения \
                        они будут удалены, модель останется."
                .to_owned(),
            Some(days) => format!(
                "🔒 Фотографии нужны только для обучения: через {} после успешного обучения \
                 они будут удалены, модель останется.",
                days_ru(days)
            ),
        };
        format!(
            "✅ Аватар «{}» создан!\n\n📸 Теперь отправьте {} фотографий — по одной, альбомом \
             или файлами без сжатия.\n\n<b>Советы:</b>\n\
             • высокое разрешение — минимум 512×512;\n\
             • разные ракурсы и выражения лица;\n\
             • хорошее, равномерное освещение;\n\
             • разнообразные фоны;\n\
             • на каждом фото только один человек.\n\n{kept}",
            esc(name),
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn photo_accepted(&self, count: usize) -> String {
        let tail = if count >= MAX_PHOTOS {
            "Это максимум — можно начинать обучение."
        } else if count >= MIN_PHOTOS {
            "Можно начинать обучение или добавить ещё фото."
        } else {
            "Отправьте ещё."
        };
        format!(
            "✅ Фото принято: {count} из {}. {tail}",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn photo_refused(&self, reason: &str, count: usize) -> String {
        format!(
            "❌ Фото не принято: {reason}\nЗагружено: {count} из {}.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn album_summary(&self, accepted: usize, refused: &[String], count: usize) -> String {
        let mut text = format!("📸 Альбом обработан: принято {accepted}");
        if refused.is_empty() {
            text.push('.');
        } else {
            text.push_str(&format!(", не принято {}:", refused.len()));
            for reason in refused {
                text.push_str("\n• ");
                text.push_str(reason);
            }
        }
        text.push_str(&format!(
            "\nЗагружено: {count} из {}.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        ));
        if count >= MIN_PHOTOS {
            text.push_str(" Можно начинать обучение.");
        }
        text
    }

    fn photo_error(&self, error: &PhotoError) -> String {
        match error {
            PhotoError::Empty => "файл пустой.".into(),
            PhotoError::TooLarge { bytes, max } => format!(
                "файл слишком большой ({:.1} МБ), максимум {} МБ.",
                *bytes as f64 / 1_048_576.0,
                max / 1_048_576
            ),
            PhotoError::NotAnImage => {
                "это не изображение. Пришлите фото в JPEG, PNG или WebP.".into()
            }
            PhotoError::UnsupportedFormat(format) => format!(
                "формат {} не поддерживается. Пришлите фото в JPEG, PNG или WebP.",
                esc(format)
            ),
            PhotoError::Corrupt(_) => "файл повреждён или загружен не полностью.".into(),
            PhotoError::TooManyPixels { width, height } => {
                format!("изображение {width}×{height} слишком велико для обработки.")
            }
            PhotoError::TooSmall { width, height, min } => format!(
                "изображение слишком маленькое ({width}×{height}), нужно минимум {min}×{min}."
            ),
            PhotoError::OverDecodeBudget {
                width,
                height,
                max_megapixels,
            } => format!(
                "слишком большое изображение: {width}×{height}, максимум {max_megapixels} мегапикселей. Уменьшите его или отправьте как фото, а не файлом."
            ),
        }
    }

    fn photo_download_failed(&self) -> String {
        "не удалось скачать файл из Telegram. Попробуйте отправить его ещё раз.".into()
    }

    fn not_collecting_photos(&self) -> String {
        "📸 Сейчас я не жду фотографий. Создайте аватар: /new — или откройте черновик в «Мои аватары».".into()
    }

    fn text_while_uploading(&self, count: usize) -> String {
        format!(
            "📸 Жду фотографии: загружено {count} из {}. Отменить: /cancel",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn upload_more(&self, name: &str, count: usize) -> String {
        format!(
            "📸 Отправляйте фото для аватара «{}»: загружено {count} из {}.",
            esc(name),
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn photo_hints(&self, hints: &[PhotoHint]) -> String {
        let advice: Vec<&str> = hints
            .iter()
            .map(|h| match h {
                PhotoHint::Blurry => "фото выглядит размытым — лицо в фокусе обучает лучше",
                PhotoHint::TooDark => "фото тёмное — лучше при дневном свете",
                PhotoHint::TooBright => "фото пересвечено — детали лица теряются",
                PhotoHint::LowContrast => "фото очень блёклое — лицо плохо отделяется от фона",
            })
            .collect();
        format!(
            "💡 Совет: {}. Его можно убрать и прислать другое.",
            advice.join("; ")
        )
    }

    fn album_hints(&self, hints: &[PhotoHint]) -> String {
        let advice: Vec<String> = hint_counts(hints)
            .into_iter()
            .map(|(hint, n)| {
                let what = match hint {
                    PhotoHint::Blurry => "размыты",
                    PhotoHint::TooDark => "тёмные",
                    PhotoHint::TooBright => "пересвечены",
                    PhotoHint::LowContrast => "очень блёклые",
                };
                format!("{what} — {n}")
            })
            .collect();
        format!(
            "💡 Совет по фото альбома: {}. Лучше заменить их чёткими снимками при дневном свете.",
            advice.join(", ")
        )
    }
    fn btn_remove_photo(&self) -> &'static str {
        "↩️ Убрать это фото"
    }
    fn btn_start_over(&self) -> &'static str {
        "🔄 Начать набор заново"
    }
    fn photo_removed(&self, count: usize) -> String {
        format!(
            "🗑 Фото убрано и удалено. Загружено: {count} из {}.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }
    fn set_started_over(&self, removed: usize) -> String {
        format!(
            "🔄 Набор начат заново: убрано и удалено фото — {removed}. Отправьте {} новых фото.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }
    fn photo_already_removed(&self) -> &'static str {
        "Этого фото уже нет в наборе."
    }
    fn btn_start_training(&self) -> &'static str {
        "🚀 Начать обучение"
    }
    fn btn_upload_photos(&self) -> &'static str {
        "📸 Загрузить фото"
    }

    fn choose_training_preset(&self, name: &str, photos: usize) -> String {
        format!(
            "🚀 <b>Обучение аватара «{}»</b> ({photos} фото)\n\nВыберите качество:\n\
             ⚡ Быстро — быстрее всего, чуть меньше деталей;\n\
             ⚖️ Сбалансировано — лучший выбор для большинства;\n\
             💎 Качество — дольше, максимум деталей.",
            esc(name)
        )
    }

    fn training_preset_button(&self, preset: TrainingPreset) -> &'static str {
        match preset {
            TrainingPreset::Fast => "⚡ Быстро",
            TrainingPreset::Balanced => "⚖️ Сбалансировано",
            TrainingPreset::Quality => "💎 Качество",
        }
    }

    fn training_started(
        &self,
        name: &str,
        avatar_type: AvatarType,
        preset: TrainingPreset,
    ) -> String {
        let (from, to) = training_minutes(avatar_type);
        format!(
            "🚀 Обучение аватара «{}» запущено ({}).\n⏳ Обычно это занимает {from}–{to} минут. \
             Я напишу, когда всё будет готово.",
            esc(name),
            self.training_preset_button(preset)
        )
    }

    fn training_completed(&self, name: &str) -> String {
        format!(
            "🎉 Аватар «{}» готов! Теперь можно создавать изображения.",
            esc(name)
        )
    }

    fn fal_failure(&self, kind: crate::fal::FailureKind) -> &'static str {
        use crate::fal::FailureKind as K;
        match kind {
            K::Busy => "Сервис генерации сейчас перегружен или не ответил вовремя — попробуйте чуть позже.",
            K::ContentPolicy => "Сервис отклонил запрос: описание или фотография не прошли проверку содержимого. Попробуйте изменить описание.",
            K::NothingGenerated => "Сервис не смог ничего создать по этому описанию. Попробуйте другое описание.",
            K::Rejected => "Сервис не принял запрос — это ошибка на нашей стороне, мы уже разбираемся.",
            K::Cancelled => "Запрос был отменён.",
            K::UnexpectedAddress => "Сервис вернул изображение с неожиданного адреса, поэтому мы его не показываем. Вашей вины здесь нет — попробуйте ещё раз.",
            K::Other => "Что-то пошло не так на стороне сервиса генерации.",
        }
    }

    fn training_failed(&self, name: &str) -> String {
        format!(
            "😔 Не удалось обучить аватар «{}». Фотографии сохранены — можно запустить обучение ещё раз.",
            esc(name)
        )
    }

    fn btn_retry_training(&self) -> &'static str {
        "🔁 Обучить ещё раз"
    }

    fn gallery(&self, lines: &[AvatarLine], page: usize, pages: usize, total: i64) -> String {
        let mut text = format!("🖼 <b>Мои аватары</b> ({total})");
        if pages > 1 {
            text.push_str(&format!(" — страница {} из {pages}", page + 1));
        }
        text.push('\n');
        for line in lines {
            text.push_str(&format!(
                "\n{} <b>{}</b> — {}, {} фото",
                type_icon(line.avatar_type),
                esc(&line.name),
                self.status_name(line.status),
                line.photos
            ));
        }
        text
    }

    fn gallery_empty(&self) -> String {
        "🖼 У вас пока нет аватаров. Создадим первый?".into()
    }

    fn status_name(&self, status: AvatarStatus) -> &'static str {
        match status {
            AvatarStatus::New | AvatarStatus::Draft => "📝 Черновик",
            AvatarStatus::Training => "⏳ Обучается",
            AvatarStatus::Trained => "✅ Готов",
            AvatarStatus::TrainingFailed => "❌ Ошибка обучения",
            AvatarStatus::Deleted => "🗑 Удалён",
        }
    }

    fn card(&self, card: &CardView) -> String {
        format!(
            "{} <b>{}</b>\n\n📂 <b>Тип:</b> {}\n📊 <b>Статус:</b> {}\n📸 <b>Фото:</b> {}\n🖼 <b>Генераций:</b> {}",
            type_icon(card.avatar_type),
            esc(&card.name),
            self.type_name(card.avatar_type),
            self.status_name(card.status),
            card.photos,
            card.generations
        )
    }

    fn btn_delete(&self) -> &'static str {
        "🗑 Удалить"
    }
    fn btn_previous(&self) -> &'static str {
        "◀️"
    }
    fn btn_next(&self) -> &'static str {
        "▶️"
    }

    fn delete_confirmation(
        &self,
        name: &str,
        status: AvatarStatus,
        fal_uploads_kept_for: Option<std::time::Duration>,
    ) -> String {
        let uploads = match fal_uploads_kept_for {
            Some(kept) => format!(
                " Архив фотографий и копии модели, которые мы загружали в FAL для работы, FAL \
                 удаляет сам не позже чем через {} после загрузки.",
                kept_for_ru(kept)
            ),
            None => String::new(),
        };
        format!(
            "🗑️ <b>Подтверждение удаления</b>\n\n\
             ❓ Вы действительно хотите удалить аватар?\n\n\
             🎭 <b>Название:</b> {}\n\
             📊 <b>Статус:</b> {}\n\n\
             ⚠️ <b>Внимание!</b> Это действие нельзя отменить.\n\
             Будут удалены навсегда:\n\
             • Обученная модель\n\
             • Загруженные фотографии\n\
             • История генераций: изображения и тексты запросов\n\n\
             У FAL (сервис, который обучает модель и создаёт изображения) мы удаляем все \
             запросы этого аватара вместе с их файлами, как только FAL их завершит.{uploads}\n\
             Останется лишь обезличенный журнал: какие события были и когда — без имени, \
             фотографий, запросов и файлов.\n\n\
             🤔 Подумайте ещё раз перед удалением.",
            esc(name),
            self.status_name(status)
        )
    }

    fn btn_confirm_delete(&self) -> &'static str {
        "❌ Да, удалить"
    }
    fn btn_cancel_delete(&self) -> &'static str {
        "✅ Отмена"
    }

    fn avatar_deleted(&self, name: &str) -> String {
        format!("🗑 Аватар «{name}» удалён.")
    }

    fn choose_avatar_for_generation(&self) -> String {
        "✨ <b>Генерация</b>\n\nВыберите аватар:".into()
    }

    fn last_used_button(&self, name: &str) -> String {
        format!("⭐ {name} (последний)")
    }

    fn no_trained_avatars(&self) -> String {
        "✨ Для генерации нужен обученный аватар, а у вас его пока нет. Создадим?".into()
    }

    fn choose_generation_preset(&self, name: &str) -> String {
        format!(
            "🎛 <b>Аватар «{}»</b>\n\nВыберите пресет (в скобках — примерное время):",
            esc(name)
        )
    }

    fn preset_name(&self, preset: GenerationPreset) -> &'static str {
        match preset {
            GenerationPreset::Fast => "Быстрый",
            GenerationPreset::Balanced => "Сбалансированный",
            GenerationPreset::Quality => "Качество",
            GenerationPreset::Ultra => "Ультра",
            GenerationPreset::Portrait => "Портрет",
            GenerationPreset::Landscape => "Пейзаж",
            GenerationPreset::Artistic => "Художественный",
            GenerationPreset::Photorealistic => "Фотореализм",
        }
    }

    fn preset_button(&self, preset: GenerationPreset) -> String {
        format!(
            "{} {} ({} с)",
            preset_icon(preset),
            self.preset_name(preset),
            seconds(preset)
        )
    }

    fn ask_prompt(&self, name: &str, preset: GenerationPreset) -> String {
        format!(
            "✍️ Аватар «{}», пресет «{}».\n\nОпишите изображение одним сообщением, например: \
             <i>портрет в парке на закате, мягкий свет</i>. До {MAX_PROMPT_CHARS} символов.",
            esc(name),
            self.preset_name(preset)
        )
    }

    fn prompt_expected(&self) -> String {
        "✍️ Жду описание изображения текстом. Отменить: /cancel".into()
    }

    fn generation_started(&self, name: &str, preset: Option<GenerationPreset>) -> String {
        match preset {
            Some(p) => format!(
                "🎨 Генерирую изображение с аватаром «{}» (пресет «{}»)… Обычно это {} секунд.",
                esc(name),
                self.preset_name(p),
                seconds(p)
            ),
            None => format!("🎨 Генерирую изображение с аватаром «{}»…", esc(name)),
        }
    }

    fn generation_done(&self, name: &str, hidden: usize) -> String {
        let mut text = format!("✨ Готово! Аватар «{}».", esc(name));
        if hidden > 0 {
            text.push_str(&format!(
                "\n🙈 Скрыто изображений: {hidden} — фильтр безопасности счёл их недопустимыми."
            ));
        }
        text
    }

    fn all_images_hidden(&self, name: &str, hidden: usize) -> String {
        format!(
            "🙈 Генерация с аватаром «{}» завершена, но фильтр безопасности скрыл все изображения \
             ({hidden}). Попробуйте изменить описание.",
            esc(name)
        )
    }

    fn generation_failed(&self, name: &str) -> String {
        format!(
            "😔 Не удалось создать изображение с аватаром «{}». Попробуйте ещё раз.",
            esc(name)
        )
    }

    fn btn_rename(&self) -> &'static str {
        "✏️ Переименовать"
    }
    fn ask_new_name(&self, name: &str) -> String {
        format!(
            "✏️ Новое имя для аватара «{}» — одним сообщением, до 64 символов.",
            esc(name)
        )
    }
    fn renamed(&self, name: &str) -> String {
        format!("✅ Теперь аватар называется «{}».", esc(name))
    }
    fn new_name_expected(&self) -> String {
        "✏️ Жду новое имя текстом. Отменить: /cancel".into()
    }
    fn batch_started(
        &self,
        name: &str,
        preset: GenerationPreset,
        started: u32,
        size: u32,
        refused: &[String],
    ) -> String {
        let mut text = format!(
            "🎨 Пакет из {size} описаний для аватара «{}» (пресет «{}»): запущено {started}. \
             Каждый результат придёт, как только будет готов.",
            esc(name),
            self.preset_name(preset)
        );
        if !refused.is_empty() {
            text.push_str("\nНе запущены:");
            for line in refused {
                text.push_str(&format!("\n{}", esc(line)));
            }
        }
        text
    }
    fn batch_progress(&self, index: u32, finished: u32, size: u32) -> String {
        format!(
            "📦 Описание {} из {size} · готово {finished} из {size}",
            index + 1
        )
    }
    fn prompt_options(&self, images: u32, aspect: Option<AspectRatio>) -> String {
        let frame = aspect.map_or("как в пресете", |a| a.ratio());
        format!("🖼 Изображений: {images} · формат: {frame}")
    }
    fn btn_preset_frame(&self) -> &'static str {
        "как в пресете"
    }
    fn btn_as_file(&self, n: Option<usize>) -> String {
        match n {
            Some(n) => format!("📎 Файл {n}"),
            None => "📎 Прислать файлом".into(),
        }
    }
    fn image_unavailable(&self) -> &'static str {
        "Это изображение больше недоступно."
    }
    fn btn_again(&self) -> &'static str {
        "🔁 Ещё раз"
    }
    fn btn_other_preset(&self) -> &'static str {
        "🎛 Другой пресет"
    }

    fn btn_packs(&self) -> &'static str {
        "🎨 Подборки"
    }
    fn choose_pack(&self, name: &str) -> String {
        format!(
            "🎨 Подборки для аватара «{}». Каждая — несколько готовых сюжетов сразу, результаты придут по мере готовности.",
            esc(name)
        )
    }
    fn no_packs(&self) -> &'static str {
        "Для этого аватара подборок пока нет."
    }
    fn pack_screen(&self, title: &str, description: &str, prompts: usize) -> String {
        format!(
            "🎨 <b>{}</b>\n{}\n\nСнимков: {prompts} — по одному на каждый сюжет.",
            esc(title),
            esc(description)
        )
    }
    fn btn_run_pack(&self, prompts: usize) -> String {
        format!("▶️ Запустить ({prompts})")
    }
    fn pack_started(&self, name: &str, title: &str, started: u32, size: u32) -> String {
        format!(
            "🎨 Подборка «{}» для аватара «{}»: запущено {started} из {size}. Каждый снимок придёт, как только будет готов.",
            esc(title),
            esc(name)
        )
    }
    fn starter_coming(&self, count: u32) -> String {
        format!("Уже готовлю первые снимки ({count}) — пришлю через минуту.")
    }
    fn starter_done(&self, name: &str) -> String {
        format!("✨ Первый снимок аватара «{}»", esc(name))
    }
    fn btn_make_main(&self) -> &'static str {
        "⭐ Сделать основным"
    }
    fn main_set(&self, name: &str) -> String {
        format!("⭐ «{name}» — теперь основной аватар")
    }
    fn main_badge(&self) -> &'static str {
        "⭐ Основной аватар"
    }
    fn btn_other_avatar(&self) -> &'static str {
        "👥 Другой аватар"
    }
    fn btn_upscale(&self, n: Option<usize>) -> String {
        match n {
            Some(n) => format!("🔍 {n}"),
            None => "🔍 Увеличить".into(),
        }
    }
    fn choose_upscale(&self, n: usize) -> String {
        format!("🔍 Во сколько раз увеличить изображение {n}? Результат придёт файлом.")
    }
    fn upscale_started(&self, times: u8) -> String {
        format!("🔍 Увеличиваю в {times} раза — пришлю файлом.")
    }
    fn upscale_done(&self, name: &str, times: u8, size: Option<(u32, u32)>) -> String {
        let size = size.map_or(String::new(), |(w, h)| format!(": {w}×{h}"));
        format!("🔍 Аватар «{}», увеличено в {times} раза{size}", esc(name))
    }
    fn upscale_failed(&self, name: &str) -> String {
        format!(
            "❌ Не удалось увеличить изображение аватара «{}».",
            esc(name)
        )
    }

    fn refusal(&self, error: &AvatarError) -> String {
        match error {
            AvatarError::AlreadyExists => "такой аватар уже есть.".into(),
            AvatarError::NotFound | AvatarError::NotOwner => "этот аватар недоступен.".into(),
            AvatarError::Deleted => "этот аватар удалён.".into(),
            AvatarError::NotPermitted { .. } => "это действие недоступно.".into(),
            AvatarError::EmptyName => "имя не может быть пустым.".into(),
            AvatarError::NameTooLong { max, actual } => {
                format!("имя слишком длинное ({actual} символов), максимум {max}.")
            }
            AvatarError::NameHasControlCharacters => {
                "в имени есть недопустимые служебные символы.".into()
            }
            AvatarError::NameHasInvisibleCharacters { code_point } => format!(
                "в имени есть невидимый символ ({code_point}), который может выдать имя за другое. Уберите его и напишите имя ещё раз."
            ),
            AvatarError::PhotosLocked => {
                "обучение уже запущено — фотографии больше нельзя менять.".into()
            }
            AvatarError::TooManyPhotos { max } => {
                format!("у аватара уже максимум фотографий ({max}).")
            }
            AvatarError::PhotoTooSmall { width, height, min } => format!(
                "изображение слишком маленькое ({width}×{height}), нужно минимум {min}×{min}."
            ),
            AvatarError::EmptyPhoto => "файл пустой.".into(),
            AvatarError::UnsupportedFormat(format) => format!(
                "формат {} не поддерживается. Пришлите фото в JPEG, PNG или WebP.",
                esc(format)
            ),
            AvatarError::DuplicatePhoto { .. } => "это фото уже загружено.".into(),
            AvatarError::UnknownPhoto(_) => "такого фото нет.".into(),
            AvatarError::NotEnoughPhotos { have, min } => {
                format!("для обучения нужно минимум {min} фото, сейчас {have}.")
            }
            AvatarError::TrainingAlreadyStarted => "обучение уже запущено.".into(),
            AvatarError::AlreadyTrained => "аватар уже обучен.".into(),
            AvatarError::NoTrainingInProgress
            | AvatarError::SubmissionAlreadyRecorded(_)
            | AvatarError::UnknownTrainingRequest(_) => "обучение сейчас не идёт.".into(),
            AvatarError::ModelDataMismatch { .. } => {
                "данные модели аватара повреждены; мы уже разбираемся.".into()
            }
            AvatarError::NotTrained => "аватар ещё не обучен.".into(),
            AvatarError::EmptyPrompt => "описание не может быть пустым.".into(),
            AvatarError::PromptTooLong { max, actual } => format!(
                "описание слишком длинное ({actual} символов), максимум {max}. Сократите его."
            ),
            AvatarError::InvalidImageCount { max, .. } => {
                format!("можно заказать от 1 до {max} изображений.")
            }
            AvatarError::InvalidBatch { size, max, .. } => format!(
                "в одном сообщении можно прислать не больше {max} описаний (по одному в строке), а здесь {size}."
            ),
            AvatarError::DuplicateGeneration(_) => "эта генерация уже запущена.".into(),
            AvatarError::DuplicateTraining(_) => "это обучение уже запущено.".into(),
            AvatarError::UnknownGeneration(_) => "такой генерации нет.".into(),
            AvatarError::GenerationFinished(_) | AvatarError::GenerationAlreadySubmitted { .. } => {
                "эта генерация уже выполняется или завершена.".into()
            }
            AvatarError::EmptyReason => "нужна причина.".into(),
            AvatarError::InvalidPack(_) | AvatarError::InvalidOrigin => {
                "такой подборки нет.".into()
            }
            AvatarError::ImageUnavailable { .. } => {
                "это изображение больше нельзя увеличить — создайте новое.".into()
            }
            AvatarError::AlreadyUpscaled => "это изображение уже увеличено.".into(),
        }
    }

    fn refused(&self, reason: &str) -> String {
        format!("❌ Не получилось: {reason}")
    }

    fn stale_button(&self) -> &'static str {
        "Эта кнопка устарела. Откройте меню: /start"
    }

    fn not_available(&self) -> &'static str {
        "Этот аватар недоступен."
    }

    fn avatar_gone(&self) -> &'static str {
        "Этот аватар удалён."
    }

    fn something_went_wrong(&self) -> String {
        "⚠️ Что-то пошло не так. Попробуйте ещё раз чуть позже.".into()
    }

    fn training_progress(
        &self,
        bar: &str,
        percent: u8,
        left: Option<std::time::Duration>,
    ) -> String {
        let left = match left.map(|d| d.as_secs().div_ceil(60)) {
            None => "ещё немного".to_owned(),
            Some(0 | 1) => "осталось меньше минуты".to_owned(),
            Some(m) if m < 60 => format!("осталось ~{m} мин"),
            Some(m) if m % 60 == 0 => format!("осталось ~{} ч", m / 60),
            Some(m) => format!("осталось ~{} ч {} мин", m / 60, m % 60),
        };
        format!("⏳ Обучение: {bar} {percent} % · {left}")
    }

    fn training_queued(&self, bar: &str) -> String {
        format!("⏳ Ждём свободного места для обучения: {bar} 0 %")
    }

    fn training_progress_done(&self, bar: &str) -> String {
        format!("✅ Обучение завершено: {bar} 100 %")
    }

    fn training_progress_failed(&self) -> String {
        "❌ Обучение не удалось.".into()
    }
}

/// English.
pub struct En;

impl Texts for En {
    fn welcome(&self, first_name: &str) -> String {
        format!(
            "👋 Hi, {}!\n\nI'm <b>Aisha</b>: I train a personal AI avatar from your photos and \
             then create new images of it from a text description.\n\n\
             🎭 Create an avatar, upload {} photos — and in a few minutes it is ready.",
            esc(first_name),
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn main_menu(&self) -> String {
        "🏠 <b>Main menu</b>\n\nWhat shall we do?".into()
    }

    fn slow_down(&self) -> String {
        "🐢 You are sending messages faster than I can answer. I will answer the first ones; please wait for them before sending more.".into()
    }

    fn quota_reached(&self, reached: super::quotas::QuotaReached) -> String {
        use super::quotas::QuotaReached as Q;
        match reached {
            Q::Avatars(n) => format!("⛔ You already have {n} avatars, the most allowed. Delete one in “My avatars” to create a new one."),
            Q::TrainingsToday(n) => format!("⛔ At most {n} trainings can be started a day. Please try again tomorrow."),
            Q::PendingGenerations(n) => format!("⏳ {n} images are already being created for you — wait for them, then you can ask for more."),
            Q::GenerationsPerMinute(n) => format!("⏳ At most {n} generations a minute. Wait a minute and try again."),
            Q::ServiceToday => "⛔ The service has used up today's budget of jobs. Please try again tomorrow.".into(),
        }
    }

    fn private_chat_only(&self, bot_link: &str) -> String {
        format!(
            "I only work in private messages: your photos and avatars are personal. Write to me: {bot_link}"
        )
    }
    fn help(&self) -> String {
        format!(
            "❓ <b>Help</b>\n\n\
             /start — main menu\n\
             /new — create an avatar\n\
             /avatars — my avatars\n\
             /cancel — cancel the current action\n\
             /help — this help\n\
             /forgetme — delete all my data\n\n\
             How it works:\n\
             1. Choose the avatar's type, gender and name.\n\
             2. Upload {} photos (one by one, as an album, or as uncompressed files).\n\
             3. Start training and wait for the message that it is ready.\n\
             4. Pick a preset, describe a picture — and get your image.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn payment_commands(&self) -> [(&'static str, &'static str); 6] {
        [
            ("buy", "Buy credits"),
            ("balance", "Balance and credit movements"),
            ("refund", "Refund a purchase"),
            ("promo", "Redeem a promo code"),
            ("paysupport", "Questions about payments"),
            ("terms", "Terms"),
        ]
    }

    fn ledger(&self) -> &'static dyn LedgerTexts {
        &En
    }

    fn btn_buy(&self) -> &'static str {
        "💳 Buy credits"
    }

    fn payments_off(&self) -> String {
        "Payments are off: everything is free, there is nothing to buy.".into()
    }

    fn choose_credit_pack(&self, available: u64) -> String {
        format!(
            "💳 <b>Credits</b>\n\nCredits pay for trainings and images. You have <b>{available}</b>.\n\nChoose a pack — paid in Telegram Stars ⭐."
        )
    }

    fn pack_button(&self, pack: CreditPack) -> String {
        format!("{} credits — ⭐{}", pack.credits, pack.stars)
    }

    fn invoice_title(&self, pack: CreditPack) -> String {
        format!("{} Aisha credits", pack.credits)
    }

    fn invoice_description(&self, pack: CreditPack) -> String {
        format!(
            "{} credits for avatar trainings and images in Aisha. Credits cannot be transferred; unspent ones can be refunded within the refund window (/terms).",
            pack.credits
        )
    }

    fn invoice_label(&self, pack: CreditPack) -> String {
        format!("{} credits", pack.credits)
    }

    fn pack_unavailable(&self) -> String {
        "This pack is no longer on sale. Open /buy again.".into()
    }

    fn checkout_refused(&self) -> String {
        "This invoice is out of date: the pack is no longer on sale. Open /buy and choose again — no Stars were taken.".into()
    }

    fn purchase_credited(&self, credits: u32, available: u64) -> String {
        format!("✅ Payment received: +{credits} credits. You now have <b>{available}</b>.")
    }

    fn purchase_not_credited(&self) -> String {
        "⚠️ A payment arrived, but I do not recognise its invoice, so no credits were added. Please write to /paysupport — we will sort it out or refund the Stars.".into()
    }

    fn balance(&self, available: u64, reserved: u64, movements: &[String]) -> String {
        let mut text = format!("💰 <b>Balance</b>\n\nAvailable: <b>{available}</b> credits");
        if reserved > 0 {
            text.push_str(&format!("\nReserved for work in progress: {reserved}"));
        }
        if movements.is_empty() {
            text.push_str("\n\nNo movements yet.");
        } else {
            text.push_str("\n\nLatest movements:\n");
            text.push_str(&movements.join("\n"));
        }
        text
    }

    fn movement(&self, event: &AccountEvent) -> String {
        match event {
            AccountEvent::CreditsGranted {
                credits, source, ..
            } => match source {
                GrantSource::Welcome => format!("+{credits} — welcome gift"),
                GrantSource::PromoCode { code } => format!("+{credits} — promo code {}", esc(code)),
                GrantSource::Operator { .. } => format!("+{credits} — from the team"),
            },
            AccountEvent::CreditsPurchased { credits, stars, .. } => {
                format!("+{credits} — bought for ⭐{stars}")
            }
            AccountEvent::CreditsReserved {
                credits, purpose, ..
            } => match purpose {
                ReservationPurpose::Training { .. } => format!("−{credits} — held for a training"),
                ReservationPurpose::Generation { .. } => format!("−{credits} — held for images"),
            },
            AccountEvent::ReservationCaptured { credits, .. } => {
                format!("{credits} — spent on finished work")
            }
            AccountEvent::ReservationReleased { credits, .. } => {
                format!("+{credits} — hold returned")
            }
            AccountEvent::PurchaseRefunded { credits, stars, .. } => {
                format!("−{credits} — purchase refunded (⭐{stars} returned)")
            }
        }
    }

    fn paysupport(&self, contact: Option<&str>) -> String {
        let whom = match contact {
            Some(contact) => format!("Write to {}", esc(contact)),
            None => "Write to the bot's owner (the contact is in the bot's description)".into(),
        };
        format!(
            "🛟 <b>Questions about payments</b>\n\n{whom} with the date and pack of your purchase — /balance shows them. \
             We answer questions about charges, credits and refunds. \
             Telegram's support cannot help with purchases in this bot — only we can."
        )
    }

    fn terms(&self, refund_days: u64) -> String {
        format!(
            "📄 <b>Terms</b>\n\n\
             • Credits are Aisha's own unit: they pay for avatar trainings and images. They are not money and cannot be cashed out.\n\
             • Credits are bought with Telegram Stars and belong to your Telegram account; they cannot be transferred to anyone else.\n\
             • Credits are held when work is accepted and spent when it is delivered; if the work fails, they come back.\n\
             • A purchase can be refunded within {refund_days} days while its credits are unspent: open /refund and the Stars come back through Telegram.\n\
             • Images are made by AI from your descriptions; you are responsible for the photos and descriptions you send."
        )
    }

    fn insufficient_credits(&self, needed: u32, available: u64) -> String {
        format!(
            "💳 Not enough credits: {needed} needed, you have {available}. Top up — choose a pack:"
        )
    }

    fn price_line(&self, credits: u32, available: u64) -> String {
        let word = if credits == 1 { "credit" } else { "credits" };
        format!("💳 Price: {credits} {word} · balance {available}")
    }

    fn again_price(&self, credits: u32) -> String {
        let word = if credits == 1 { "credit" } else { "credits" };
        format!("💳 “{}” costs {credits} {word}", self.btn_again())
    }

    fn price_list(&self, prices: &[(&str, u32)], available: u64) -> String {
        let lines: Vec<String> = prices
            .iter()
            .map(|(label, credits)| format!("{label} — {credits}"))
            .collect();
        format!(
            "💳 Price in credits:\n{}\nBalance {available}",
            lines.join("\n")
        )
    }

    fn credits_returned(&self, credits: u32, reason: ReleaseReason, available: u64) -> String {
        let why = match reason {
            ReleaseReason::Failed => "the work failed",
            ReleaseReason::Cancelled => "the work was cancelled",
            ReleaseReason::DeadlinePassed => "the result did not come in time",
            ReleaseReason::AvatarDeleted => "the avatar was deleted",
            ReleaseReason::Refused => "the work did not start",
        };
        let word = if credits == 1 {
            "credit is"
        } else {
            "credits are"
        };
        format!(
            "↩️ Refunded: {credits} {word} back on your balance ({why}). Available: {available}."
        )
    }

    fn commands(&self) -> [(&'static str, &'static str); 6] {
        [
            ("start", "Main menu"),
            ("new", "Create an avatar"),
            ("avatars", "My avatars"),
            ("cancel", "Cancel the current action"),
            ("help", "Help"),
            ("forgetme", "Delete all my data"),
        ]
    }

    fn btn_create(&self) -> &'static str {
        "🎭 Create avatar"
    }
    fn btn_gallery(&self) -> &'static str {
        "🖼 My avatars"
    }
    fn btn_generate(&self) -> &'static str {
        "✨ Generate"
    }
    fn btn_help(&self) -> &'static str {
        "❓ Help"
    }
    fn btn_menu(&self) -> &'static str {
        "🏠 Menu"
    }
    fn btn_back(&self) -> &'static str {
        "⬅️ Back"
    }

    fn cancelled(&self) -> String {
        "✖️ Cancelled.".into()
    }

    fn nothing_to_cancel(&self) -> String {
        "There is nothing to cancel right now.".into()
    }

    fn upload_stopped(&self, name: &str, photos: usize) -> String {
        format!(
            "✖️ Upload stopped. The avatar “{}” is kept as a draft ({photos} photos) — continue \
             any time from “My avatars”.",
            esc(name)
        )
    }

    fn unknown_input(&self) -> String {
        "🤔 I didn't get that. Choose an action from the menu or send /help.".into()
    }

    fn choose_type(&self) -> String {
        "🎯 <b>Choose the avatar type</b>\n\n\
         🎭 <b>Portrait</b> — made for photos of people: selfies, portraits. Training takes 3–15 minutes.\n\n\
         🎨 <b>Style</b> — for art styles and objects. Training takes 5–30 minutes."
            .into()
    }

    fn type_name(&self, avatar_type: AvatarType) -> &'static str {
        match avatar_type {
            AvatarType::Portrait => "Portrait",
            AvatarType::Style => "Style",
        }
    }

    fn type_button(&self, avatar_type: AvatarType) -> &'static str {
        match avatar_type {
            AvatarType::Portrait => "🎭 Portrait",
            AvatarType::Style => "🎨 Style",
        }
    }

    fn choose_gender(&self, avatar_type: AvatarType) -> String {
        format!(
            "Type: <b>{}</b>\n\n👤 Choose the gender — it helps to train the avatar more precisely.",
            self.type_name(avatar_type)
        )
    }

    fn gender_button(&self, gender: Gender) -> &'static str {
        match gender {
            Gender::Male => "👨 Male",
            Gender::Female => "👩 Female",
            Gender::Other => "🧑 Other",
        }
    }

    fn ask_name(&self) -> String {
        "📝 What shall we call the avatar? Send a name in one message (up to 64 characters).".into()
    }

    fn name_expected(&self) -> String {
        "📝 I'm waiting for the avatar's name as text. Cancel: /cancel".into()
    }

    fn avatar_created(&self, name: &str, photo_retention: Option<std::time::Duration>) -> String {
        let kept = match photo_retention.map(whole_days) {
            None => "🔒 Your photos are kept until you delete the avatar.".to_owned(),
            Some(0) => "🔒 Your photos are only for training: they are deleted as soon as it \
                        succeeds; the model stays."
                .to_owned(),
            Some(days) => format!(
                "🔒 Your photos are only for training: they are deleted {days} day{} after it \
                 succeeds; the model stays.",
                if days == 1 { "" } else { "s" }
            ),
        };
        format!(
            "✅ The avatar “{}” is created!\n\n📸 Now send {} photos — one by one, as an album or \
             as uncompressed files.\n\n<b>Tips:</b>\n\
             • high resolution — at least 512×512;\n\
             • different angles and facial expressions;\n\
             • good, even lighting;\n\
             • varied backgrounds;\n\
             • only one person in each photo.\n\n{kept}",
            esc(name),
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn photo_accepted(&self, count: usize) -> String {
        let tail = if count >= MAX_PHOTOS {
            "That's the maximum — you can start training."
        } else if count >= MIN_PHOTOS {
            "You can start training or add more photos."
        } else {
            "Send more."
        };
        format!(
            "✅ Photo accepted: {count} of {}. {tail}",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn photo_refused(&self, reason: &str, count: usize) -> String {
        format!(
            "❌ Photo not accepted: {reason}\nUploaded: {count} of {}.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn album_summary(&self, accepted: usize, refused: &[String], count: usize) -> String {
        let mut text = format!("📸 Album processed: {accepted} accepted");
        if refused.is_empty() {
            text.push('.');
        } else {
            text.push_str(&format!(", {} not accepted:", refused.len()));
            for reason in refused {
                text.push_str("\n• ");
                text.push_str(reason);
            }
        }
        text.push_str(&format!(
            "\nUploaded: {count} of {}.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        ));
        if count >= MIN_PHOTOS {
            text.push_str(" You can start training.");
        }
        text
    }

    fn photo_error(&self, error: &PhotoError) -> String {
        match error {
            PhotoError::Empty => "the file is empty.".into(),
            PhotoError::TooLarge { bytes, max } => format!(
                "the file is too large ({:.1} MB); at most {} MB.",
                *bytes as f64 / 1_048_576.0,
                max / 1_048_576
            ),
            PhotoError::NotAnImage => {
                "this is not an image. Send a JPEG, PNG or WebP photo.".into()
            }
            PhotoError::UnsupportedFormat(format) => format!(
                "{} is not supported. Send a JPEG, PNG or WebP photo.",
                esc(format)
            ),
            PhotoError::Corrupt(_) => "the file is damaged or incomplete.".into(),
            PhotoError::TooManyPixels { width, height } => {
                format!("the image ({width}×{height}) is too large to process.")
            }
            PhotoError::TooSmall { width, height, min } => format!(
                "the image is too small ({width}×{height}); at least {min}×{min} is needed."
            ),
            PhotoError::OverDecodeBudget {
                width,
                height,
                max_megapixels,
            } => format!(
                "the image is too large: {width}×{height}, at most {max_megapixels} megapixels. Make it smaller or send it as a photo rather than a file."
            ),
        }
    }

    fn photo_download_failed(&self) -> String {
        "the file could not be downloaded from Telegram. Please send it again.".into()
    }

    fn not_collecting_photos(&self) -> String {
        "📸 I'm not collecting photos right now. Create an avatar with /new — or open a draft in “My avatars”.".into()
    }

    fn text_while_uploading(&self, count: usize) -> String {
        format!(
            "📸 I'm waiting for photos: {count} of {} uploaded. Cancel: /cancel",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn upload_more(&self, name: &str, count: usize) -> String {
        format!(
            "📸 Send photos for the avatar “{}”: {count} of {} uploaded.",
            esc(name),
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }

    fn photo_hints(&self, hints: &[PhotoHint]) -> String {
        let advice: Vec<&str> = hints
            .iter()
            .map(|h| match h {
                PhotoHint::Blurry => "the photo looks blurry — a face in focus trains better",
                PhotoHint::TooDark => "the photo is dark — daylight works best",
                PhotoHint::TooBright => "the photo is overexposed — the face loses its detail",
                PhotoHint::LowContrast => "the photo is very flat — the face barely stands out",
            })
            .collect();
        format!(
            "💡 Tip: {}. You can remove it and send another.",
            advice.join("; ")
        )
    }
    fn album_hints(&self, hints: &[PhotoHint]) -> String {
        let advice: Vec<String> = hint_counts(hints)
            .into_iter()
            .map(|(hint, n)| {
                let what = match hint {
                    PhotoHint::Blurry => "blurry",
                    PhotoHint::TooDark => "dark",
                    PhotoHint::TooBright => "overexposed",
                    PhotoHint::LowContrast => "very flat",
                };
                format!("{n} {what}")
            })
            .collect();
        format!(
            "💡 Tip on this album's photos: {}. Sharp daylight photos instead would train better.",
            advice.join(", ")
        )
    }
    fn btn_remove_photo(&self) -> &'static str {
        "↩️ Remove this photo"
    }
    fn btn_start_over(&self) -> &'static str {
        "🔄 Start the set over"
    }
    fn photo_removed(&self, count: usize) -> String {
        format!(
            "🗑 Photo removed and deleted. Uploaded: {count} of {}.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }
    fn set_started_over(&self, removed: usize) -> String {
        format!(
            "🔄 The set is started over: {removed} photos removed and deleted. Send {} new photos.",
            range(MIN_PHOTOS, MAX_PHOTOS)
        )
    }
    fn photo_already_removed(&self) -> &'static str {
        "This photo is no longer in the set."
    }
    fn btn_start_training(&self) -> &'static str {
        "🚀 Start training"
    }
    fn btn_upload_photos(&self) -> &'static str {
        "📸 Upload photos"
    }

    fn choose_training_preset(&self, name: &str, photos: usize) -> String {
        format!(
            "🚀 <b>Training “{}”</b> ({photos} photos)\n\nChoose the quality:\n\
             ⚡ Fast — quickest, slightly less detail;\n\
             ⚖️ Balanced — the best choice for most;\n\
             💎 Quality — takes longer, most detail.",
            esc(name)
        )
    }

    fn training_preset_button(&self, preset: TrainingPreset) -> &'static str {
        match preset {
            TrainingPreset::Fast => "⚡ Fast",
            TrainingPreset::Balanced => "⚖️ Balanced",
            TrainingPreset::Quality => "💎 Quality",
        }
    }

    fn training_started(
        &self,
        name: &str,
        avatar_type: AvatarType,
        preset: TrainingPreset,
    ) -> String {
        let (from, to) = training_minutes(avatar_type);
        format!(
            "🚀 Training of “{}” has started ({}).\n⏳ It usually takes {from}–{to} minutes. \
             I'll message you when it's ready.",
            esc(name),
            self.training_preset_button(preset)
        )
    }

    fn training_completed(&self, name: &str) -> String {
        format!(
            "🎉 Your avatar “{}” is ready! You can create images now.",
            esc(name)
        )
    }

    fn fal_failure(&self, kind: crate::fal::FailureKind) -> &'static str {
        use crate::fal::FailureKind as K;
        match kind {
            K::Busy => "The image service is busy or did not answer in time — please try again a little later.",
            K::ContentPolicy => "The image service refused the request: the prompt or a photo did not pass its content check. Try rewording the prompt.",
            K::NothingGenerated => "The image service could not produce anything for this prompt. Try another one.",
            K::Rejected => "The image service did not accept the request — that is our fault, and we are looking into it.",
            K::Cancelled => "The request was cancelled.",
            K::UnexpectedAddress => "The image service returned a picture from an unexpected address, so we did not show it. This is not your fault — please try again.",
            K::Other => "Something went wrong on the image service's side.",
        }
    }

    fn training_failed(&self, name: &str) -> String {
        format!(
            "😔 Training of “{}” failed. Your photos are kept — you can start training again.",
            esc(name)
        )
    }

    fn btn_retry_training(&self) -> &'static str {
        "🔁 Train again"
    }

    fn gallery(&self, lines: &[AvatarLine], page: usize, pages: usize, total: i64) -> String {
        let mut text = format!("🖼 <b>My avatars</b> ({total})");
        if pages > 1 {
            text.push_str(&format!(" — page {} of {pages}", page + 1));
        }
        text.push('\n');
        for line in lines {
            text.push_str(&format!(
                "\n{} <b>{}</b> — {}, {} photos",
                type_icon(line.avatar_type),
                esc(&line.name),
                self.status_name(line.status),
                line.photos
            ));
        }
        text
    }

    fn gallery_empty(&self) -> String {
        "🖼 You have no avatars yet. Shall we create the first one?".into()
    }

    fn status_name(&self, status: AvatarStatus) -> &'static str {
        match status {
            AvatarStatus::New | AvatarStatus::Draft => "📝 Draft",
            AvatarStatus::Training => "⏳ Training",
            AvatarStatus::Trained => "✅ Ready",
            AvatarStatus::TrainingFailed => "❌ Training failed",
            AvatarStatus::Deleted => "🗑 Deleted",
        }
    }

    fn card(&self, card: &CardView) -> String {
        format!(
            "{} <b>{}</b>\n\n📂 <b>Type:</b> {}\n📊 <b>Status:</b> {}\n📸 <b>Photos:</b> {}\n🖼 <b>Generations:</b> {}",
            type_icon(card.avatar_type),
            esc(&card.name),
            self.type_name(card.avatar_type),
            self.status_name(card.status),
            card.photos,
            card.generations
        )
    }

    fn btn_delete(&self) -> &'static str {
        "🗑 Delete"
    }
    fn btn_previous(&self) -> &'static str {
        "◀️"
    }
    fn btn_next(&self) -> &'static str {
        "▶️"
    }

    fn delete_confirmation(
        &self,
        name: &str,
        status: AvatarStatus,
        fal_uploads_kept_for: Option<std::time::Duration>,
    ) -> String {
        let uploads = match fal_uploads_kept_for {
            Some(kept) => format!(
                " The photo archive and model copies we uploaded to FAL for its work are \
                 deleted by FAL itself no later than {} after each upload.",
                kept_for_en(kept)
            ),
            None => String::new(),
        };
        format!(
            "🗑️ <b>Confirm deletion</b>\n\n\
             ❓ Do you really want to delete this avatar?\n\n\
             🎭 <b>Name:</b> {}\n\
             📊 <b>Status:</b> {}\n\n\
             ⚠️ <b>Warning!</b> This cannot be undone.\n\
             Deleted for good:\n\
             • The trained model\n\
             • The uploaded photos\n\
             • The generation history: images and prompts\n\n\
             At FAL (the service that trains the model and makes the images) we delete every \
             request of this avatar with its files as soon as FAL has finished it.{uploads}\n\
             What remains is an anonymous log: which events happened and when — without the \
             name, photos, prompts or files.\n\n\
             🤔 Think it over once more before deleting.",
            esc(name),
            self.status_name(status)
        )
    }

    fn btn_confirm_delete(&self) -> &'static str {
        "❌ Yes, delete"
    }
    fn btn_cancel_delete(&self) -> &'static str {
        "✅ Cancel"
    }

    fn avatar_deleted(&self, name: &str) -> String {
        format!("🗑 The avatar “{name}” is deleted.")
    }

    fn choose_avatar_for_generation(&self) -> String {
        "✨ <b>Generate</b>\n\nChoose an avatar:".into()
    }

    fn last_used_button(&self, name: &str) -> String {
        format!("⭐ {name} (last used)")
    }

    fn no_trained_avatars(&self) -> String {
        "✨ Generating needs a trained avatar, and you don't have one yet. Shall we create one?"
            .into()
    }

    fn choose_generation_preset(&self, name: &str) -> String {
        format!(
            "🎛 <b>Avatar “{}”</b>\n\nChoose a preset (approximate time in brackets):",
            esc(name)
        )
    }

    fn preset_name(&self, preset: GenerationPreset) -> &'static str {
        match preset {
            GenerationPreset::Fast => "Fast",
            GenerationPreset::Balanced => "Balanced",
            GenerationPreset::Quality => "Quality",
            GenerationPreset::Ultra => "Ultra",
            GenerationPreset::Portrait => "Portrait",
            GenerationPreset::Landscape => "Landscape",
            GenerationPreset::Artistic => "Artistic",
            GenerationPreset::Photorealistic => "Photorealistic",
        }
    }

    fn preset_button(&self, preset: GenerationPreset) -> String {
        format!(
            "{} {} ({} s)",
            preset_icon(preset),
            self.preset_name(preset),
            seconds(preset)
        )
    }

    fn ask_prompt(&self, name: &str, preset: GenerationPreset) -> String {
        format!(
            "✍️ Avatar “{}”, preset “{}”.\n\nDescribe the image in one message, for example: \
             <i>portrait in a park at sunset, soft light</i>. Up to {MAX_PROMPT_CHARS} characters.",
            esc(name),
            self.preset_name(preset)
        )
    }

    fn prompt_expected(&self) -> String {
        "✍️ I'm waiting for the image description as text. Cancel: /cancel".into()
    }

    fn generation_started(&self, name: &str, preset: Option<GenerationPreset>) -> String {
        match preset {
            Some(p) => format!(
                "🎨 Generating an image of “{}” (preset “{}”)… This usually takes {} seconds.",
                esc(name),
                self.preset_name(p),
                seconds(p)
            ),
            None => format!("🎨 Generating an image of “{}”…", esc(name)),
        }
    }

    fn generation_done(&self, name: &str, hidden: usize) -> String {
        let mut text = format!("✨ Done! Avatar “{}”.", esc(name));
        if hidden > 0 {
            text.push_str(&format!(
                "\n🙈 Hidden images: {hidden} — the safety filter flagged them."
            ));
        }
        text
    }

    fn all_images_hidden(&self, name: &str, hidden: usize) -> String {
        format!(
            "🙈 The generation with “{}” finished, but the safety filter hid all images \
             ({hidden}). Try changing the description.",
            esc(name)
        )
    }

    fn generation_failed(&self, name: &str) -> String {
        format!(
            "😔 The image of “{}” could not be created. Please try again.",
            esc(name)
        )
    }

    fn btn_rename(&self) -> &'static str {
        "✏️ Rename"
    }
    fn ask_new_name(&self, name: &str) -> String {
        format!(
            "✏️ Send the new name for “{}” in one message, up to 64 characters.",
            esc(name)
        )
    }
    fn renamed(&self, name: &str) -> String {
        format!("✅ The avatar is now called “{}”.", esc(name))
    }
    fn new_name_expected(&self) -> String {
        "✏️ I'm waiting for the new name as text. Cancel: /cancel".into()
    }
    fn batch_started(
        &self,
        name: &str,
        preset: GenerationPreset,
        started: u32,
        size: u32,
        refused: &[String],
    ) -> String {
        let mut text = format!(
            "🎨 A batch of {size} prompts for “{}” (preset “{}”): {started} started. \
             Each result comes as soon as it is ready.",
            esc(name),
            self.preset_name(preset)
        );
        if !refused.is_empty() {
            text.push_str("\nNot started:");
            for line in refused {
                text.push_str(&format!("\n{}", esc(line)));
            }
        }
        text
    }
    fn batch_progress(&self, index: u32, finished: u32, size: u32) -> String {
        format!(
            "📦 Prompt {} of {size} · {finished} of {size} ready",
            index + 1
        )
    }
    fn prompt_options(&self, images: u32, aspect: Option<AspectRatio>) -> String {
        let frame = aspect.map_or("the preset's", |a| a.ratio());
        format!("🖼 Images: {images} · frame: {frame}")
    }
    fn btn_preset_frame(&self) -> &'static str {
        "preset's"
    }
    fn btn_as_file(&self, n: Option<usize>) -> String {
        match n {
            Some(n) => format!("📎 File {n}"),
            None => "📎 Send as file".into(),
        }
    }
    fn image_unavailable(&self) -> &'static str {
        "This image is no longer available."
    }
    fn btn_again(&self) -> &'static str {
        "🔁 Generate again"
    }
    fn btn_other_preset(&self) -> &'static str {
        "🎛 Another preset"
    }

    fn btn_packs(&self) -> &'static str {
        "🎨 Packs"
    }
    fn choose_pack(&self, name: &str) -> String {
        format!(
            "🎨 Packs for “{}”. Each one runs several ready-made scenes at once; the pictures arrive as they are done.",
            esc(name)
        )
    }
    fn no_packs(&self) -> &'static str {
        "There are no packs for this avatar yet."
    }
    fn pack_screen(&self, title: &str, description: &str, prompts: usize) -> String {
        format!(
            "🎨 <b>{}</b>\n{}\n\nPictures: {prompts}, one per scene.",
            esc(title),
            esc(description)
        )
    }
    fn btn_run_pack(&self, prompts: usize) -> String {
        format!("▶️ Run ({prompts})")
    }
    fn pack_started(&self, name: &str, title: &str, started: u32, size: u32) -> String {
        format!(
            "🎨 Pack “{}” for “{}”: {started} of {size} started. Each picture arrives as soon as it is ready.",
            esc(title),
            esc(name)
        )
    }
    fn starter_coming(&self, count: u32) -> String {
        format!("I'm already making your first {count} pictures — they'll arrive in a minute.")
    }
    fn starter_done(&self, name: &str) -> String {
        format!("✨ A first picture of “{}”", esc(name))
    }
    fn btn_make_main(&self) -> &'static str {
        "⭐ Make main"
    }
    fn main_set(&self, name: &str) -> String {
        format!("⭐ “{name}” is now your main avatar")
    }
    fn main_badge(&self) -> &'static str {
        "⭐ Main avatar"
    }
    fn btn_other_avatar(&self) -> &'static str {
        "👥 Another avatar"
    }
    fn btn_upscale(&self, n: Option<usize>) -> String {
        match n {
            Some(n) => format!("🔍 {n}"),
            None => "🔍 Upscale".into(),
        }
    }
    fn choose_upscale(&self, n: usize) -> String {
        format!("🔍 How much larger should image {n} be? It will come as a file.")
    }
    fn upscale_started(&self, times: u8) -> String {
        format!("🔍 Upscaling ×{times} — it will come as a file.")
    }
    fn upscale_done(&self, name: &str, times: u8, size: Option<(u32, u32)>) -> String {
        let size = size.map_or(String::new(), |(w, h)| format!(": {w}×{h}"));
        format!("🔍 “{}”, upscaled ×{times}{size}", esc(name))
    }
    fn upscale_failed(&self, name: &str) -> String {
        format!("❌ Could not upscale the image of “{}”.", esc(name))
    }

    fn refusal(&self, error: &AvatarError) -> String {
        match error {
            AvatarError::AlreadyExists => "this avatar already exists.".into(),
            AvatarError::NotFound | AvatarError::NotOwner => "this avatar is not available.".into(),
            AvatarError::Deleted => "this avatar was deleted.".into(),
            AvatarError::NotPermitted { .. } => "this action is not available.".into(),
            AvatarError::EmptyName => "the name cannot be empty.".into(),
            AvatarError::NameTooLong { max, actual } => {
                format!("the name is too long ({actual} characters); at most {max}.")
            }
            AvatarError::NameHasControlCharacters => {
                "the name contains characters that are not allowed.".into()
            }
            AvatarError::NameHasInvisibleCharacters { code_point } => format!(
                "the name contains an invisible character ({code_point}) that can disguise it. Remove it and type the name again."
            ),
            AvatarError::PhotosLocked => {
                "training has started — the photos can no longer change.".into()
            }
            AvatarError::TooManyPhotos { max } => {
                format!("the avatar already has the maximum of {max} photos.")
            }
            AvatarError::PhotoTooSmall { width, height, min } => format!(
                "the image is too small ({width}×{height}); at least {min}×{min} is needed."
            ),
            AvatarError::EmptyPhoto => "the file is empty.".into(),
            AvatarError::UnsupportedFormat(format) => format!(
                "{} is not supported. Send a JPEG, PNG or WebP photo.",
                esc(format)
            ),
            AvatarError::DuplicatePhoto { .. } => "this photo was already uploaded.".into(),
            AvatarError::UnknownPhoto(_) => "there is no such photo.".into(),
            AvatarError::NotEnoughPhotos { have, min } => {
                format!("training needs at least {min} photos; there are {have}.")
            }
            AvatarError::TrainingAlreadyStarted => "training has already started.".into(),
            AvatarError::AlreadyTrained => "the avatar is already trained.".into(),
            AvatarError::NoTrainingInProgress
            | AvatarError::SubmissionAlreadyRecorded(_)
            | AvatarError::UnknownTrainingRequest(_) => "no training is running.".into(),
            AvatarError::ModelDataMismatch { .. } => {
                "the avatar's model data is damaged; we are looking into it.".into()
            }
            AvatarError::NotTrained => "the avatar is not trained yet.".into(),
            AvatarError::EmptyPrompt => "the description cannot be empty.".into(),
            AvatarError::PromptTooLong { max, actual } => format!(
                "the description is too long ({actual} characters); at most {max}. Please shorten it."
            ),
            AvatarError::InvalidImageCount { max, .. } => {
                format!("1 to {max} images can be ordered.")
            }
            AvatarError::InvalidBatch { size, max, .. } => format!(
                "one message can carry at most {max} prompts (one per line); this one has {size}."
            ),
            AvatarError::DuplicateGeneration(_) => "this generation is already running.".into(),
            AvatarError::DuplicateTraining(_) => "this training was already started.".into(),
            AvatarError::UnknownGeneration(_) => "there is no such generation.".into(),
            AvatarError::GenerationFinished(_) | AvatarError::GenerationAlreadySubmitted { .. } => {
                "this generation is already running or finished.".into()
            }
            AvatarError::EmptyReason => "a reason is needed.".into(),
            AvatarError::InvalidPack(_) | AvatarError::InvalidOrigin => {
                "there is no such pack.".into()
            }
            AvatarError::ImageUnavailable { .. } => {
                "this image can no longer be upscaled — generate a new one.".into()
            }
            AvatarError::AlreadyUpscaled => "this image is already upscaled.".into(),
        }
    }

    fn refused(&self, reason: &str) -> String {
        format!("❌ That didn't work: {reason}")
    }

    fn stale_button(&self) -> &'static str {
        "This button is out of date. Open the menu: /start"
    }

    fn not_available(&self) -> &'static str {
        "This avatar is not available."
    }

    fn avatar_gone(&self) -> &'static str {
        "This avatar was deleted."
    }

    fn something_went_wrong(&self) -> String {
        "⚠️ Something went wrong. Please try again a bit later.".into()
    }

    fn training_progress(
        &self,
        bar: &str,
        percent: u8,
        left: Option<std::time::Duration>,
    ) -> String {
        let left = match left.map(|d| d.as_secs().div_ceil(60)) {
            None => "almost there".to_owned(),
            Some(0 | 1) => "less than a minute left".to_owned(),
            Some(m) if m < 60 => format!("about {m} min left"),
            Some(m) if m % 60 == 0 => format!("about {} h left", m / 60),
            Some(m) => format!("about {} h {} min left", m / 60, m % 60),
        };
        format!("⏳ Training: {bar} {percent} % · {left}")
    }

    fn training_queued(&self, bar: &str) -> String {
        format!("⏳ Waiting for a free trainer: {bar} 0 %")
    }

    fn training_progress_done(&self, bar: &str) -> String {
        format!("✅ Training done: {bar} 100 %")
    }

    fn training_progress_failed(&self) -> String {
        "❌ Training failed.".into()
    }
}

fn type_icon(avatar_type: AvatarType) -> &'static str {
    match avatar_type {
        AvatarType::Portrait => "🎭",
        AvatarType::Style => "🎨",
    }
}

fn preset_icon(preset: GenerationPreset) -> &'static str {
    match preset {
        GenerationPreset::Fast => "⚡",
        GenerationPreset::Balanced => "⚖️",
        GenerationPreset::Quality => "💎",
        GenerationPreset::Ultra => "🚀",
        GenerationPreset::Portrait => "🖼",
        GenerationPreset::Landscape => "🏞",
        GenerationPreset::Artistic => "🎨",
        GenerationPreset::Photorealistic => "📷",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_only_for_english_speakers() {
        assert_eq!(Lang::from_code(Some("en")), Lang::En);
        assert_eq!(Lang::from_code(Some("en-GB")), Lang::En);
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("de")), Lang::Ru);
        assert_eq!(Lang::from_code(None), Lang::Ru);
    }

    #[test]
    fn user_text_is_escaped() {
        let text = Ru.avatar_created("<b>x</b> & y", None);
        assert!(text.contains("&lt;b&gt;x&lt;/b&gt; &amp; y"));
    }

    #[test]
    fn the_upload_screen_says_when_the_photos_go() {
        let days = |n: u64| Some(std::time::Duration::from_secs(n * 24 * 60 * 60));
        assert!(Ru
            .avatar_created("Маша", days(30))
            .contains("через 30 дней после успешного обучения они будут удалены"));
        assert!(Ru
            .avatar_created("Маша", days(1))
            .contains("через 1 день после"));
        assert!(Ru
            .avatar_created("Маша", days(3))
            .contains("через 3 дня после"));
        assert!(Ru
            .avatar_created("Маша", days(0))
            .contains("сразу после успешного обучения"));
        assert!(Ru
            .avatar_created("Маша", None)
            .contains("хранятся, пока вы не удалите аватар"));
        assert!(En
            .avatar_created("Masha", days(30))
            .contains("they are deleted 30 days after it succeeds"));
        assert!(En
            .avatar_created("Masha", days(1))
            .contains("deleted 1 day after"));
        assert!(En
            .avatar_created("Masha", None)
            .contains("kept until you delete the avatar"));
    }

    #[test]
    fn credits_agree_with_their_number_in_russian() {
        let words: Vec<String> = [1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 101, 111]
            .into_iter()
            .map(credits_ru)
            .collect();
        assert_eq!(
            words,
            [
                "1 кредит",
                "2 кредита",
                "4 кредита",
                "5 кредитов",
                "11 кредитов",
                "12 кредитов",
                "14 кредитов",
                "21 кредит",
                "22 кредита",
                "25 кредитов",
                "101 кредит",
                "111 кредитов"
            ]
        );
    }

    #[test]
    fn toasts_fit_telegrams_200_characters() {
        for lang in [Lang::Ru, Lang::En] {
            let t = lang.texts();
            for toast in [t.stale_button(), t.not_available(), t.avatar_gone()] {
                assert!(toast.chars().count() <= 200);
            }
        }
    }
}
