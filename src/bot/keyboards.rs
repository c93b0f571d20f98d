//! The inline keyboards of every screen, built from [`Callback`]s and the user's texts.

use aggregates::avatar::MIN_PHOTOS;
use aggregates::presets::MAX_IMAGES_PER_GENERATION;
use aggregates::{
    AspectRatio, AvatarStatus, AvatarType, Gender, GenerationPreset, TrainingPreset, UpscaleFactor,
};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use uuid::Uuid;

use super::callbacks::Callback;
use super::pricing::CreditPacks;
use super::texts::Texts;
use super::users::GenerationOptions;

fn button(text: impl Into<String>, callback: Callback) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(text, callback.encode())
}

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

fn preset_rows(
    t: &dyn Texts,
    callback: impl Fn(GenerationPreset) -> Callback,
) -> Vec<Vec<InlineKeyboardButton>> {
    GenerationPreset::ALL
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .map(|p| button(t.preset_button(*p), callback(*p)))
                .collect()
        })
        .collect()
}

/// The eight generation presets for an avatar, its packs, and (when "Generate" came straight
/// to the main avatar) the way to the others.
pub fn generation_presets(t: &dyn Texts, avatar_id: Uuid, via_main: bool) -> InlineKeyboardMarkup {
    let mut rows = preset_rows(t, |p| Callback::GeneratePreset(avatar_id, p));
    rows.push(vec![button(t.btn_packs(), Callback::Packs(avatar_id))]);
    if via_main {
        rows.push(vec![
            button(t.btn_other_avatar(), Callback::AllAvatars),
            button(t.btn_menu(), Callback::Menu),
        ]);
    } else {
        rows.push(vec![button(t.btn_back(), Callback::Card(avatar_id))]);
    }
    InlineKeyboardMarkup::new(rows)
}

/// The packs offered for an avatar, one per row: `(tag, title)`.
pub fn packs(t: &dyn Texts, avatar: Uuid, packs: &[(u32, String)]) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = packs
        .iter()
        .map(|(pack, title)| {
            vec![button(
                title.clone(),
                Callback::Pack {
                    avatar,
                    pack: *pack,
                },
            )]
        })
        .collect();
    rows.push(vec![button(t.btn_back(), Callback::Generate(avatar))]);
    InlineKeyboardMarkup::new(rows)
}

/// One pack's screen: run it, or back to the list.
pub fn pack(t: &dyn Texts, avatar: Uuid, pack: u32, prompts: usize) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([
        vec![button(
            t.btn_run_pack(prompts),
            Callback::RunPack {
                avatar,
                pack,
                press: rand::random(),
            },
        )],
        vec![button(t.btn_back(), Callback::Packs(avatar))],
    ])
}

/// How much to enlarge one image.
pub fn upscale_factors(
    t: &dyn Texts,
    avatar: Uuid,
    generation: Uuid,
    image: u8,
) -> InlineKeyboardMarkup {
    // One press value for the screen: ×2 and ×4 are different requests anyway.
    let press: u32 = rand::random();
    let factors = UpscaleFactor::ALL
        .into_iter()
        .map(|factor| {
            button(
                format!("×{}", factor.times()),
                Callback::Upscale {
                    avatar,
                    generation,
                    image,
                    factor,
                    press,
                },
            )
        })
        .collect::<Vec<_>>();
    InlineKeyboardMarkup::new([factors, vec![button(t.btn_menu(), Callback::Menu)]])
}

/// Under an upscaled file: more of the same avatar, or the menu.
pub fn upscaled(t: &dyn Texts, avatar: Uuid) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        button(t.btn_generate(), Callback::Generate(avatar)),
        button(t.btn_menu(), Callback::Menu),
    ]])
}

/// The presets for running a finished generation's prompt again.
pub fn regeneration_presets(t: &dyn Texts, avatar: Uuid, generation: Uuid) -> InlineKeyboardMarkup {
    let mut rows = preset_rows(t, |preset| Callback::Regenerate {
        avatar,
        generation,
        preset,
    });
    rows.push(vec![button(t.btn_menu(), Callback::Menu)]);
    InlineKeyboardMarkup::new(rows)
}

/// While waiting for a prompt: back to the presets.
/// The prompt screen: how many images and which frame (the current choice marked), the user's
/// recent prompts to reuse with one tap, and back.
pub fn prompt(
    t: &dyn Texts,
    avatar: Uuid,
    preset: GenerationPreset,
    options: GenerationOptions,
    recent: &[(Uuid, String)],
) -> InlineKeyboardMarkup {
    let mark = |chosen: bool, label: String| {
        if chosen {
            format!("✓ {label}")
        } else {
            label
        }
    };
    let images = options.images();
    let counts = (1..=MAX_IMAGES_PER_GENERATION as u8)
        .map(|n| {
            button(
                mark(u32::from(n) == images, n.to_string()),
                Callback::PromptOptions {
                    avatar,
                    preset,
                    images: n,
                    aspect: options.aspect,
                },
            )
        })
        .collect::<Vec<_>>();
    let frames = std::iter::once(None)
        .chain(AspectRatio::ALL.into_iter().map(Some))
        .map(|aspect| {
            let label = aspect.map_or(t.btn_preset_frame().to_owned(), |a| a.ratio().to_owned());
            button(
                mark(aspect == options.aspect, label),
                Callback::PromptOptions {
                    avatar,
                    preset,
                    images: images as u8,
                    aspect,
                },
            )
        })
        .collect::<Vec<_>>();
    let (first, second) = frames.split_at(3);
    let mut rows = vec![counts, first.to_vec(), second.to_vec()];
    for (generation, prompt) in recent.iter().take(RECENT_PROMPTS) {
        rows.push(vec![button(
            format!("↺ {}", shortened(prompt, 40)),
            Callback::Reuse {
                avatar,
                preset,
                generation: *generation,
            },
        )]);
    }
    rows.push(vec![button(t.btn_back(), Callback::Generate(avatar))]);
    InlineKeyboardMarkup::new(rows)
}

/// Recent prompts offered on the prompt screen.
pub const RECENT_PROMPTS: usize = 5;

/// At most `max` characters of `text` on one line, an ellipsis when cut.
fn shortened(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Under a generation's result: each of its `images` (as sent) as a file or upscaled, again,
/// another preset, the menu.
pub fn generation_result(
    t: &dyn Texts,
    avatar: Uuid,
    generation: Uuid,
    images: usize,
) -> InlineKeyboardMarkup {
    let files = (0..images.min(MAX_IMAGES_PER_GENERATION as usize))
        .map(|n| {
            let label = t.btn_as_file((images > 1).then_some(n + 1));
            button(
                label,
                Callback::AsFile {
                    avatar,
                    generation,
                    image: n as u8,
                },
            )
        })
        .collect::<Vec<_>>();
    let upscales = (0..images.min(MAX_IMAGES_PER_GENERATION as usize))
        .map(|n| {
            button(
                t.btn_upscale((images > 1).then_some(n + 1)),
                Callback::UpscaleMenu {
                    avatar,
                    generation,
                    image: n as u8,
                },
            )
        })
        .collect::<Vec<_>>();
    let mut rows = Vec::new();
    if !files.is_empty() {
        rows.push(files);
        rows.push(upscales);
    }
    rows.push(vec![
        button(t.btn_again(), Callback::Again { avatar, generation }),
        button(
            t.btn_other_preset(),
            Callback::OtherPreset { avatar, generation },
        ),
    ]);
    rows.push(vec![button(t.btn_menu(), Callback::Menu)]);
    InlineKeyboardMarkup::new(rows)
}
