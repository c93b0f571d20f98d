//! The inline keyboards of every screen, built from [`Callback`]s and the user's texts.

use aggregates::avatar::MIN_PHOTOS;
use aggregates::{AvatarStatus, AvatarType, Gender, TrainingPreset};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use uuid::Uuid;

use super::callbacks::Callback;
use super::pricing::CreditPacks;
use super::texts::Texts;

mod generation;

use generation::button;
pub use generation::{
    generation_presets, generation_result, pack, packs, prompt, regeneration_presets,
    upscale_factors, upscaled, RECENT_PROMPTS,
};

/// The main menu under the welcome and menu messages.
pub fn main_menu(t: &dyn Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(t.btn_create(), Callback::NewAvatar)],
        vec![
            button(t.btn_gallery(), Callback::Gallery(0)),
            button(t.btn_generate(), Callback::GenerateMenu),
        ],
        vec![button(t.btn_help(), Callback::Help)],
    ])
}

/// The main menu with "Buy credits" under it, when credits are sold.
pub fn main_menu_with_buy(t: &dyn Texts) -> InlineKeyboardMarkup {
    main_menu(t).append_row([button(t.btn_buy(), Callback::Buy)])
}

/// One button per pack on sale, then back to the menu.
pub fn credit_packs(t: &dyn Texts, packs: &CreditPacks) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = packs
        .iter()
        .map(|pack| vec![button(t.pack_button(*pack), Callback::BuyPack(*pack))])
        .collect();
    // The balance screen shows this keyboard too: a refund and a promo code start there.
    rows.push(vec![
        button(t.ledger().btn_refund(), Callback::Refunds),
        button(t.ledger().btn_promo(), Callback::Promo),
    ]);
    rows.push(vec![button(t.btn_menu(), Callback::Menu)]);
    InlineKeyboardMarkup::new(rows)
}

/// One button per refundable purchase (`(charge tag, label)`), then back to the menu.
pub fn refunds(t: &dyn Texts, purchases: &[(u32, String)]) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = purchases
        .iter()
        .map(|(charge, label)| vec![button(label.clone(), Callback::Refund { charge: *charge })])
        .collect();
    rows.push(vec![button(t.btn_menu(), Callback::Menu)]);
    InlineKeyboardMarkup::new(rows)
}

/// A single "back to the menu" button.
pub fn to_menu(t: &dyn Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[button(t.btn_menu(), Callback::Menu)]])
}

pub fn avatar_types(t: &dyn Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![
            button(
                t.type_button(AvatarType::Portrait),
                Callback::ChooseType(AvatarType::Portrait),
            ),
            button(
                t.type_button(AvatarType::Style),
                Callback::ChooseType(AvatarType::Style),
            ),
        ],
        vec![button(t.btn_back(), Callback::Menu)],
    ])
}

pub fn genders(t: &dyn Texts, avatar_type: AvatarType) -> InlineKeyboardMarkup {
    let g = |gender| {
        button(
            t.gender_button(gender),
            Callback::ChooseGender(avatar_type, gender),
        )
    };
    InlineKeyboardMarkup::new([
        vec![g(Gender::Male), g(Gender::Female)],
        vec![g(Gender::Other)],
        vec![button(t.btn_back(), Callback::NewAvatar)],
    ])
}

/// Under a photo reply or the upload screen: remove the photo just accepted (`just_accepted`,
/// its [`super::callbacks::photo_tag`]), start the set over, and start training once there are
/// enough photos.
pub fn after_photo(
    t: &dyn Texts,
    avatar_id: Uuid,
    count: usize,
    just_accepted: Option<u64>,
) -> Option<InlineKeyboardMarkup> {
    let mut rows = Vec::new();
    if count >= MIN_PHOTOS {
        rows.push(vec![button(
            t.btn_start_training(),
            Callback::Train(avatar_id),
        )]);
    }
    let mut editing = Vec::new();
    if let Some(photo) = just_accepted {
        editing.push(button(
            t.btn_remove_photo(),
            Callback::RemovePhoto {
                avatar: avatar_id,
                photo,
            },
        ));
    }
    if count > 0 {
        editing.push(button(t.btn_start_over(), Callback::StartOver(avatar_id)));
    }
    if !editing.is_empty() {
        rows.push(editing);
    }
    (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))
}

pub fn training_presets(t: &dyn Texts, avatar_id: Uuid) -> InlineKeyboardMarkup {
    let row = TrainingPreset::ALL
        .into_iter()
        .map(|p| {
            button(
                t.training_preset_button(p),
                Callback::StartTraining(avatar_id, p),
            )
        })
        .collect::<Vec<_>>();
    InlineKeyboardMarkup::new([row, vec![button(t.btn_back(), Callback::Card(avatar_id))]])
}

/// After "training completed".
pub fn trained(t: &dyn Texts, avatar_id: Uuid) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![
            button(t.btn_generate(), Callback::Generate(avatar_id)),
            button(t.btn_packs(), Callback::Packs(avatar_id)),
        ],
        vec![button(t.btn_gallery(), Callback::Gallery(0))],
    ])
}

/// After "training failed".
pub fn training_failed(t: &dyn Texts, avatar_id: Uuid) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(t.btn_retry_training(), Callback::Train(avatar_id))],
        vec![button(t.btn_gallery(), Callback::Gallery(0))],
    ])
}

/// The gallery: one button per avatar, page navigation, create and menu.
pub fn gallery(
    t: &dyn Texts,
    avatars: &[(Uuid, String, AvatarType)],
    page: u32,
    has_previous: bool,
    has_next: bool,
) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = avatars
        .iter()
        .map(|(id, name, avatar_type)| {
            let icon = match avatar_type {
                AvatarType::Portrait => "🎭",
                AvatarType::Style => "🎨",
            };
            vec![button(format!("{icon} {name}"), Callback::Card(*id))]
        })
        .collect();
    let mut nav = Vec::new();
    if has_previous {
        nav.push(button(
            t.btn_previous(),
            Callback::Gallery(page.saturating_sub(1)),
        ));
    }
    if has_next {
        nav.push(button(t.btn_next(), Callback::Gallery(page + 1)));
    }
    if !nav.is_empty() {
        rows.push(nav);
    }
    rows.push(vec![
        button(t.btn_create(), Callback::NewAvatar),
        button(t.btn_menu(), Callback::Menu),
    ]);
    InlineKeyboardMarkup::new(rows)
}

/// An avatar card's actions, depending on where the avatar is in its life.
pub fn card(
    t: &dyn Texts,
    avatar_id: Uuid,
    status: AvatarStatus,
    photos: usize,
    is_main: bool,
) -> InlineKeyboardMarkup {
    let mut rows = Vec::new();
    match status {
        AvatarStatus::Trained => {
            rows.push(vec![
                button(t.btn_generate(), Callback::Generate(avatar_id)),
                button(t.btn_packs(), Callback::Packs(avatar_id)),
            ]);
            if !is_main {
                rows.push(vec![button(
                    t.btn_make_main(),
                    Callback::MakeMain(avatar_id),
                )]);
            }
        }
        AvatarStatus::Draft | AvatarStatus::TrainingFailed => {
            rows.push(vec![button(
                t.btn_upload_photos(),
                Callback::Upload(avatar_id),
            )]);
            if photos >= MIN_PHOTOS {
                rows.push(vec![button(
                    t.btn_start_training(),
                    Callback::Train(avatar_id),
                )]);
            }
        }
        AvatarStatus::Training | AvatarStatus::New | AvatarStatus::Deleted => {}
    }
    rows.push(vec![
        button(t.btn_rename(), Callback::Rename(avatar_id)),
        button(t.btn_delete(), Callback::Delete(avatar_id)),
    ]);
    rows.push(vec![button(t.btn_back(), Callback::Gallery(0))]);
    InlineKeyboardMarkup::new(rows)
}

/// Seed 003's confirmation: confirm and cancel, side by side.
pub fn delete_confirmation(t: &dyn Texts, avatar_id: Uuid) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        button(t.btn_confirm_delete(), Callback::DeleteConfirm(avatar_id)),
        button(t.btn_cancel_delete(), Callback::DeleteCancel(avatar_id)),
    ]])
}

/// Trained avatars to generate with; the last used one first.
pub fn generation_avatars(
    t: &dyn Texts,
    avatars: &[(Uuid, String)],
    last_used: Option<Uuid>,
) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = Vec::new();
    if let Some((id, name)) = last_used.and_then(|l| avatars.iter().find(|(id, _)| *id == l)) {
        rows.push(vec![button(
            t.last_used_button(name),
            Callback::Generate(*id),
        )]);
    }
    for (id, name) in avatars {
        if Some(*id) != last_used {
            rows.push(vec![button(name.clone(), Callback::Generate(*id))]);
        }
    }
    rows.push(vec![button(t.btn_menu(), Callback::Menu)]);
    InlineKeyboardMarkup::new(rows)
}

pub fn no_trained_avatars(t: &dyn Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(t.btn_create(), Callback::NewAvatar)],
        vec![button(t.btn_menu(), Callback::Menu)],
    ])
}
