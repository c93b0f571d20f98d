//! Everything the bot says, in one place per language: [`Ru`] (the default) and [`En`].
//!
//! Texts are HTML (the bot sends with `ParseMode::Html`); anything a user typed — avatar names,
//! prompts — goes through [`esc`] before it is put into a text. Refusals from the domain and the
//! photo checks are turned into sentences here, one arm per reason, so the compiler points at
//! every place a new reason must be explained.

use aggregates::{
    AspectRatio, AvatarError, AvatarStatus, AvatarType, Gender, GenerationPreset, TrainingPreset,
};

use aggregates::{AccountEvent, ReleaseReason};

use super::pricing::CreditPack;
use crate::photos::hints::PhotoHint;
use crate::photos::PhotoError;

mod en;
mod ru;

pub use en::En;
pub use ru::Ru;

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
