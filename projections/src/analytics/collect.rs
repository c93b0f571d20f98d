//! How one event changes the batch's counts and the working tables.

use aggregates::{AvatarEvent, Origin};
use chrono::{DateTime, NaiveDate, Utc};

use crate::generations::effective_aspect_ratio;
use crate::jobs::seconds;
use crate::labels::{DEFAULT_PRESET, UNKNOWN, UPSCALE_PRESET};
use crate::FeedEvent;

use super::deltas::{Deltas, GENERATION_WORK, TRAINING_WORK};
use super::memory::{AvatarMemo, Memory, OpenGeneration};

fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// Whether a Telegram user issued the event's command (metadata `actor` = `telegram:<id>`).
/// Only the fact is kept, not the id: the owner is the gallery's to know.
fn by_telegram_user(e: &FeedEvent) -> bool {
    e.metadata
        .get("actor")
        .is_some_and(|actor| actor.starts_with("telegram:"))
}

pub(super) fn collect(e: &FeedEvent, m: &mut Memory, d: &mut Deltas) {
    let at = e.event.at();
    let today = day(at);
    let id = e.avatar_id;
    if by_telegram_user(e) {
        d.active.insert((today, id));
    }
    match &e.event {
        AvatarEvent::AvatarCreated { avatar_type, .. } => {
            if m.avatar(id).is_some() {
                return;
            }
            m.avatars.insert(
                id,
                Some(AvatarMemo {
                    avatar_type: avatar_type.as_str().to_owned(),
                    training_started_at: None,
                    training_endpoint: None,
                }),
            );
            m.avatars_changed.insert(id);
            d.avatars
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .created += 1;
        }
        AvatarEvent::ModelDataCorrected { avatar_type, .. } => {
            if let Some(a) = m.avatar(id) {
                a.avatar_type = avatar_type.as_str().to_owned();
                m.avatars_changed.insert(id);
            }
        }
        AvatarEvent::TrainingStarted {
            avatar_type,
            endpoint,
            ..
        } => {
            if let Some(a) = m.avatar(id) {
                a.training_started_at = Some(at);
                a.training_endpoint = Some(endpoint.clone());
                m.avatars_changed.insert(id);
            }
            d.trainings
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .started += 1;
        }
        AvatarEvent::TrainingSubmitted { endpoint, .. } => {
            if let Some(a) = m.avatar(id) {
                a.training_endpoint = Some(endpoint.clone());
                m.avatars_changed.insert(id);
            }
        }
        AvatarEvent::TrainingCompleted { .. } => {
            let (avatar_type, started) = m.training_of(id);
            let trainer = m
                .avatar(id)
                .and_then(|a| a.training_endpoint.clone())
                .unwrap_or_else(|| UNKNOWN.to_owned());
            // The start is forgotten on success only: a success that arrives after a failure
            // still measures from the user's request.
            if let Some(a) = m.avatar(id) {
                a.training_started_at = None;
                m.avatars_changed.insert(id);
            }
            let counts = d.trainings.entry((today, avatar_type)).or_default();
            counts.completed += 1;
            counts.completed_seconds += started.map_or(0.0, |s| seconds(s, at));
            d.fal
                .entry((today, trainer, TRAINING_WORK))
                .or_default()
                .requests += 1;
        }
        AvatarEvent::TrainingFailed { .. } => {
            let (avatar_type, started) = m.training_of(id);
            let counts = d.trainings.entry((today, avatar_type)).or_default();
            counts.failed += 1;
            counts.failed_seconds += started.map_or(0.0, |s| seconds(s, at));
        }
        AvatarEvent::GenerationRequested {
            generation_id,
            preset,
            endpoint,
            arguments,
            aspect,
            origin: from,
            ..
        } => {
            let upscale = match from {
                Some(Origin::Upscale { factor, .. }) => Some(i64::from(factor.times())),
                _ => None,
            };
            let frame =
                effective_aspect_ratio(endpoint, arguments, *preset, *aspect, from.as_ref());
            let preset = match (preset, upscale) {
                (Some(p), _) => p.as_str(),
                (None, Some(_)) => UPSCALE_PRESET,
                (None, None) => DEFAULT_PRESET,
            };
            let open = OpenGeneration {
                avatar_id: id,
                preset: preset.to_owned(),
                requested_at: at,
                endpoint: Some(endpoint.clone()),
                origin_kind: from.as_ref().map(|o| o.kind().to_owned()),
                pack: from.as_ref().and_then(Origin::pack).map(str::to_owned),
                upscale_factor: upscale,
                aspect_ratio: frame,
            };
            d.generations
                .entry((today, preset.to_owned()))
                .or_default()
                .requested += 1;
            if let Some(c) = d.pack(today, &open) {
                c.requested += 1;
            }
            if let Some(c) = d.aspect(today, &open) {
                c.generations += 1;
            }
            if let Some(c) = d.upscale(today, &open) {
                c.requested += 1;
            }
            m.open.insert(*generation_id, Some(open));
            m.opened.insert(*generation_id);
        }
        AvatarEvent::GenerationCompleted {
            generation_id,
            images,
            ..
        } => {
            let images = images.len() as i64;
            let Some(open) = m.close(*generation_id) else {
                let counts = d
                    .generations
                    .entry((today, UNKNOWN.to_owned()))
                    .or_default();
                counts.completed += 1;
                counts.images += images;
                return;
            };
            let counts = d
                .generations
                .entry((today, open.preset.clone()))
                .or_default();
            counts.completed += 1;
            counts.images += images;
            counts.completed_seconds += seconds(open.requested_at, at);
            if let Some(c) = d.pack(today, &open) {
                c.completed += 1;
                c.images += images;
            }
            if let Some(c) = d.aspect(today, &open) {
                c.images += images;
            }
            if let Some(c) = d.upscale(today, &open) {
                c.completed += 1;
            }
            let endpoint = open.endpoint.unwrap_or_else(|| UNKNOWN.to_owned());
            let work = d.fal.entry((today, endpoint, GENERATION_WORK)).or_default();
            work.requests += 1;
            work.images += images;
        }
        AvatarEvent::GenerationFailed { generation_id, .. } => {
            let Some(open) = m.close(*generation_id) else {
                d.generations
                    .entry((today, UNKNOWN.to_owned()))
                    .or_default()
                    .failed += 1;
                return;
            };
            d.generations
                .entry((today, open.preset.clone()))
                .or_default()
                .failed += 1;
            if let Some(c) = d.pack(today, &open) {
                c.failed += 1;
            }
            if let Some(c) = d.upscale(today, &open) {
                c.failed += 1;
            }
        }
        AvatarEvent::AvatarDeleted { .. } => {
            let (avatar_type, _) = m.training_of(id);
            d.avatars.entry((today, avatar_type)).or_default().deleted += 1;
            m.avatars.insert(id, None);
            m.avatars_changed.remove(&id);
            m.avatars_deleted.insert(id);
            // Its days of activity go with it (the table's rows in `Memory::save`).
            d.active.retain(|(_, avatar)| *avatar != id);
            // Its generations pending in this batch are dropped with it.
            let mut dropped = Vec::new();
            for (gid, open) in &mut m.open {
                if open.as_ref().is_some_and(|o| o.avatar_id == id) {
                    *open = None;
                    dropped.push(*gid);
                }
            }
            for gid in dropped {
                m.opened.remove(&gid);
            }
        }
        AvatarEvent::AvatarRenamed { .. }
        | AvatarEvent::PhotoUploaded { .. }
        | AvatarEvent::PhotoRemoved { .. }
        | AvatarEvent::TrainingPhotosDeleted { .. }
        | AvatarEvent::GenerationSubmitted { .. } => {}
    }
}
