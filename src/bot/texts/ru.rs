//! What the bot says in Russian, the default language.

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

    fn quota_reached(&self, reached: crate::bot::quotas::QuotaReached) -> String {
        use crate::bot::quotas::QuotaReached as Q;
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
