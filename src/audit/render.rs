//! What the auditing commands print: an avatar's history and state, and an account's
//! movements, as tables a person reads in a terminal (user text escaped so it cannot steer it).

use aggregates::{AccountEvent, AvatarEvent};

use crate::store::accounts::AccountHistoryEntry;
use crate::store::HistoryEntry;

/// An avatar's state as a few readable lines.
pub fn render_state(s: &crate::audit::StateAt) -> String {
    let a = &s.state;
    let model = match &a.model {
        Some(aggregates::TrainedModel::Portrait { lora_file_url, .. }) => {
            format!("portrait LoRA {lora_file_url}")
        }
        Some(aggregates::TrainedModel::StyleLora { lora_file_url, .. }) => {
            format!("style LoRA {lora_file_url}")
        }
        Some(aggregates::TrainedModel::ProFinetune { finetune_id, .. }) => {
            format!("style finetune {finetune_id}")
        }
        None => "none".into(),
    };
    let training = match &a.training {
        Some(run) => format!(
            "running, FAL request {}",
            run.request_id.as_deref().unwrap_or("not submitted yet")
        ),
        None => "none running".into(),
    };
    format!(
        "state after event {} of {} ({}, {} by {}):\n\
         \x20 status:      {}\n\
         \x20 name:        {}\n\
         \x20 type:        {}\n\
         \x20 owner:       {}\n\
         \x20 photos:      {}\n\
         \x20 training:    {}\n\
         \x20 model:       {}\n\
         \x20 generations: {} completed, {} failed, {} pending\n",
        s.sequence,
        s.latest_sequence,
        s.event_type,
        s.at.format("%Y-%m-%d %H:%M:%S UTC"),
        escape_for_terminal(s.actor.as_deref().unwrap_or("?")),
        a.status.as_str(),
        a.name
            .as_ref()
            .map_or("-".into(), |n| escape_for_terminal(n.as_str())),
        a.avatar_type.map_or("-", |t| t.as_str()),
        a.owner,
        a.photos.len(),
        training,
        model,
        a.generations_completed,
        a.generations_failed,
        a.pending_generations.len(),
    )
}

/// An account's movements as a table, one line each.
pub fn render_account_history(history: &[AccountHistoryEntry]) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|h| {
            let delta = h.event.available_delta();
            vec![
                h.sequence.to_string(),
                h.at().format("%Y-%m-%d %H:%M:%S").to_string(),
                escape_for_terminal(h.actor.as_deref().unwrap_or("?")),
                h.event_type.clone(),
                if delta > 0 {
                    format!("+{delta}")
                } else {
                    delta.to_string()
                },
                escape_for_terminal(&describe_account(&h.event)),
            ]
        })
        .collect();
    let header = ["seq", "at (UTC)", "by", "event", "available", "details"];
    render_table(&header, &rows)
}

/// Rows under a header, every column but the last padded to its widest cell.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w.saturating_sub(cell.chars().count()) + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// One line on what an account event says.
pub fn describe_account(event: &AccountEvent) -> String {
    use aggregates::{GrantSource, RefundRequester, ReleaseReason, ReservationPurpose};
    let purpose = |purpose: &ReservationPurpose| match purpose {
        ReservationPurpose::Training { avatar_id, preset } => {
            format!("{} training of avatar {avatar_id}", preset.as_str())
        }
        ReservationPurpose::Generation {
            avatar_id,
            generation_id,
            images,
            ..
        } => format!("generation {generation_id} ({images} image(s)) of avatar {avatar_id}"),
    };
    match event {
        AccountEvent::CreditsGranted {
            credits, source, ..
        } => match source {
            GrantSource::Welcome => format!("{credits} welcome credits"),
            GrantSource::PromoCode { code } => format!("{credits} credits for promo code {code}"),
            GrantSource::Operator { operator, reason } => {
                format!("{credits} credits from {operator}: {reason}")
            }
        },
        AccountEvent::CreditsPurchased {
            pack,
            credits,
            stars,
            telegram_payment_charge_id,
            ..
        } => format!(
            "pack {pack}: {credits} credits for {stars} Stars, charge {telegram_payment_charge_id}"
        ),
        AccountEvent::CreditsReserved {
            reservation_id,
            credits,
            purpose: what,
            ..
        } => format!("{credits} held by {reservation_id} for {}", purpose(what)),
        AccountEvent::ReservationCaptured {
            reservation_id,
            credits,
            ..
        } => format!("{credits} spent by {reservation_id}"),
        AccountEvent::ReservationReleased {
            reservation_id,
            credits,
            reason,
            ..
        } => format!(
            "{credits} back from {reservation_id}: {}",
            match reason {
                ReleaseReason::Failed => "failed",
                ReleaseReason::Cancelled => "cancelled",
                ReleaseReason::DeadlinePassed => "deadline passed",
                ReleaseReason::AvatarDeleted => "avatar deleted",
                ReleaseReason::Refused => "refused",
            }
        ),
        AccountEvent::PurchaseRefunded {
            telegram_payment_charge_id,
            credits,
            stars,
            by,
            ..
        } => format!(
            "charge {telegram_payment_charge_id}: {credits} credits out, {stars} Stars back, {}",
            match by {
                RefundRequester::User => "asked by the user".to_owned(),
                RefundRequester::Operator { operator, reason } => {
                    format!("by {operator}: {reason}")
                }
            }
        ),
    }
}

/// User text made safe for a terminal: control and invisible format characters (which could
/// move the cursor, clear the screen or reorder the line) are shown as `\u{…}` escapes.
pub fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || aggregates::values::is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The history as a table a person can read.
pub fn render_history(history: &[HistoryEntry]) -> String {
    let rows: Vec<[String; 5]> = history
        .iter()
        .map(|h| {
            [
                h.sequence.to_string(),
                h.event.at().format("%Y-%m-%d %H:%M:%S").to_string(),
                escape_for_terminal(h.actor.as_deref().unwrap_or("?")),
                h.event_type.clone(),
                escape_for_terminal(&if h.erased {
                    // Its key was destroyed: texts read [erased], ids 0.
                    format!("{} · personal data erased", describe(&h.event))
                } else {
                    describe(&h.event)
                }),
            ]
        })
        .collect();
    let header = ["seq", "at (UTC)", "by", "event", "details"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 5]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                out.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// One line on what an event says.
pub fn describe(event: &AvatarEvent) -> String {
    use aggregates::TrainedModel;
    match event {
        AvatarEvent::AvatarCreated {
            name,
            avatar_type,
            gender,
            owner,
            ..
        } => format!(
            "\"{name}\", {avatar_type}, {}, owner {owner}",
            gender.as_str()
        ),
        AvatarEvent::AvatarRenamed { name, .. } => format!("now \"{name}\""),
        AvatarEvent::PhotoUploaded {
            photo, photo_count, ..
        } => format!(
            "photo {} {}x{} {:?} ({} bytes), {photo_count} in total",
            photo.photo_id, photo.width, photo.height, photo.format, photo.byte_size
        ),
        AvatarEvent::PhotoRemoved {
            photo_id,
            photo_count,
            ..
        } => format!("photo {photo_id}, {photo_count} left"),
        AvatarEvent::TrainingStarted {
            preset,
            endpoint,
            photo_keys,
            ..
        } => format!(
            "{} preset on {endpoint} with {} photos",
            preset.as_str(),
            photo_keys.len()
        ),
        AvatarEvent::TrainingSubmitted {
            request_id,
            endpoint,
            ..
        } => format!("FAL request {request_id} on {endpoint}"),
        AvatarEvent::TrainingCompleted {
            request_id, model, ..
        } => match model {
            TrainedModel::Portrait { lora_file_url, .. } => {
                format!("request {request_id}: LoRA {lora_file_url}")
            }
            TrainedModel::StyleLora { lora_file_url, .. } => {
                format!("request {request_id}: style LoRA {lora_file_url}")
            }
            TrainedModel::ProFinetune { finetune_id, .. } => {
                format!("request {request_id}: finetune {finetune_id}")
            }
        },
        AvatarEvent::TrainingFailed {
            request_id, reason, ..
        } => format!(
            "request {}: {reason}",
            request_id.as_deref().unwrap_or("(not submitted)")
        ),
        AvatarEvent::TrainingPhotosDeleted { photo_keys, .. } => {
            format!(
                "{} training photos deleted after their retention",
                photo_keys.len()
            )
        }
        AvatarEvent::GenerationRequested {
            generation_id,
            preset,
            endpoint,
            num_images,
            prompt,
            ..
        } => format!(
            "{generation_id}: {num_images} image(s), {} preset on {endpoint}: \"{prompt}\"",
            preset.map_or("default", |p| p.as_str())
        ),
        AvatarEvent::GenerationSubmitted {
            generation_id,
            request_id,
            ..
        } => format!("{generation_id}: FAL request {request_id}"),
        AvatarEvent::GenerationCompleted {
            generation_id,
            images,
            ..
        } => format!("{generation_id}: {} image(s)", images.len()),
        AvatarEvent::GenerationFailed {
            generation_id,
            reason,
            ..
        } => format!("{generation_id}: {reason}"),
        AvatarEvent::AvatarDeleted { photo_keys, .. } => {
            format!("with {} photos", photo_keys.len())
        }
        AvatarEvent::ModelDataCorrected {
            corrected_by,
            reason,
            previous_type,
            avatar_type,
            ..
        } => format!("{previous_type} → {avatar_type} by {corrected_by}: {reason}"),
    }
}
