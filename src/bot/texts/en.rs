//! What the bot says in English, to users whose Telegram speaks it.

use aggregates::avatar::{MAX_PHOTOS, MIN_PHOTOS};
use aggregates::presets::MAX_PROMPT_CHARS;
use aggregates::{AccountEvent, GrantSource, ReleaseReason, ReservationPurpose};
use aggregates::{
    AspectRatio, AvatarError, AvatarStatus, AvatarType, Gender, GenerationPreset, TrainingPreset,
};

use super::*;
use crate::bot::pricing::CreditPack;
use crate::photos::hints::PhotoHint;
use crate::photos::PhotoError;

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

    fn quota_reached(&self, reached: crate::bot::quotas::QuotaReached) -> String {
        use crate::bot::quotas::QuotaReached as Q;
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
