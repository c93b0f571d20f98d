//! The keyboards of generating: presets, packs, the prompt screen and what comes under a result.

use aggregates::presets::MAX_IMAGES_PER_GENERATION;
use aggregates::{AspectRatio, GenerationPreset, UpscaleFactor};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use uuid::Uuid;

use crate::bot::callbacks::Callback;
use crate::bot::texts::Texts;
use crate::bot::users::GenerationOptions;

pub(super) fn button(text: impl Into<String>, callback: Callback) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(text, callback.encode())
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
