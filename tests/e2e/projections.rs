//! The read models on both backends: exact rows for a full avatar life (and none left once it is
//! deleted), crash recovery of a real projection, `audit verify` catching drift that a rebuild
//! then repairs, and the analysts' views of packs, frames and upscales.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregates::presets::{AspectRatio, PORTRAIT_GENERATOR, PRO_GENERATOR, PRO_TRAINER, UPSCALER};
use aggregates::{
    Action, Actor, AvatarType, Command, Gender, GeneratedImage, GenerationPreset, Origin,
    StyleTrainer, TrainingOutput, TrainingPreset, UpscaleFactor,
};
use aisha::audit;
use aisha::store::feed::Feed;
use aisha::store::runner::ProjectionRunner;
use aisha::store::{AvatarStore, Database};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use db::Tx;
use futures::future::BoxFuture;
use projections::{analytics, gallery, generations, jobs, FeedEvent, Projection, ProjectionError};
use uuid::Uuid;

use crate::support::*;

/// The style avatar's owner (the portrait belongs to [`OWNER`]).
pub const OTHER_OWNER: i64 = 5151;

on_both_backends!(
    a_full_avatar_life_gives_exact_rows,
    a_real_projection_killed_mid_batch_resumes_with_nothing_lost_or_doubled,
    audit_verify_reports_injected_drift_until_a_rebuild,
    the_state_at_a_sequence_replays_only_that_far,
    a_rebuild_runs_while_commands_keep_coming,
    packs_frames_and_upscales_give_exact_view_rows,
);

/// 2026-03-02 10:00 UTC plus `minutes`.
pub fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

pub fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

pub fn user(owner: i64, at: DateTime<Utc>, action: Action) -> Command {
    Command::new(Actor::User(owner), at, action)
}

pub fn system(at: DateTime<Utc>, action: Action) -> Command {
    Command::new(Actor::System("test".into()), at, action)
}

/// What [`full_life`] created.
pub struct Life {
    /// A portrait trained, used (one generation completed, one failed, one pending) and deleted.
    pub portrait: Uuid,
    /// A style avatar whose training failed before reaching FAL, the next day.
    pub style: Uuid,
    pub completed: Uuid,
    pub failed: Uuid,
    pub pending: Uuid,
    /// Events in all.
    pub events: usize,
}

pub const REQUEST: &str = "req-portrait-1";

/// Two avatars' lives with fixed times: 22 events for the portrait, 13 for the style.
pub async fn full_life(store: &AvatarStore) -> Life {
    let life = portrait_in_use(store).await;
    delete_the_portrait(store, &life).await;
    the_style_fails(store, life).await
}

/// The first 21 events of [`full_life`]: the portrait trained and used, not yet deleted (the
/// style's ids are not in use yet).
pub async fn portrait_in_use(store: &AvatarStore) -> Life {
    let portrait = Uuid::new_v4();
    let (completed, failed, pending) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let p = |at, action| run(store, portrait, user(OWNER, at, action));
    p(
        t(0),
        Action::Create {
            avatar_id: portrait,
            name: "Аиша".into(),
            gender: Gender::Female,
            avatar_type: AvatarType::Portrait,
        },
    )
    .await;
    for n in 1..=11 {
        p(t(n as i64), Action::UploadPhoto { photo: photo(n) }).await;
    }
    p(
        t(12),
        Action::RemovePhoto {
            photo_id: "photo-11".into(),
        },
    )
    .await;
    p(
        t(13),
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Fast,
            style: Default::default(),
        },
    )
    .await;
    let s = |at, action| run(store, portrait, system(at, action));
    s(
        t(14),
        Action::RecordTrainingSubmission {
            request_id: REQUEST.into(),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            status_url: "http://fal/status".into(),
            response_url: "http://fal/response".into(),
            cancel_url: "http://fal/cancel".into(),
            archive_url: Some("http://fal/files/photos.zip".into()),
        },
    )
    .await;
    s(
        t(23),
        Action::CompleteTraining {
            request_id: REQUEST.into(),
            output: TrainingOutput {
                lora_file_url: Some("http://fal/files/lora.safetensors".into()),
                config_file_url: None,
                finetune_id: None,
            },
        },
    )
    .await;
    let generate = |id, preset| Action::Generate {
        generation_id: id,
        prompt: "в горах на закате".into(),
        preset,
        num_images: 2,
        aspect: None,
        batch: None,
        origin: None,
    };
    p(t(30), generate(completed, Some(GenerationPreset::Quality))).await;
    p(t(31), generate(failed, None)).await;
    let image = |n: u32| GeneratedImage {
        url: format!("http://fal/files/image-{n}.jpg"),
        width: Some(1024),
        height: Some(1024),
        content_type: Some("image/jpeg".into()),
        nsfw: false,
    };
    s(
        t(32),
        Action::CompleteGeneration {
            generation_id: completed,
            images: vec![image(1), image(2)],
        },
    )
    .await;
    s(
        t(33),
        Action::FailGeneration {
            generation_id: failed,
            reason: "generator timed out".into(),
            abandon: false,
        },
    )
    .await;
    p(t(40), generate(pending, None)).await;
    Life {
        portrait,
        style: Uuid::new_v4(),
        completed,
        failed,
        pending,
        events: 21,
    }
}

/// The portrait's owner deletes it (its 22nd event).
pub async fn delete_the_portrait(store: &AvatarStore, life: &Life) {
    run(store, life.portrait, user(OWNER, t(50), Action::Delete)).await;
}

/// The next day, another user's style avatar fails before reaching FAL (its 13 events).
pub async fn the_style_fails(store: &AvatarStore, life: Life) -> Life {
    let style = life.style;
    let next_day = 24 * 60;
    let o = |at, action| run(store, style, user(OTHER_OWNER, at, action));
    o(
        t(next_day),
        Action::Create {
            avatar_id: style,
            name: "Акварель".into(),
            gender: Gender::Other,
            avatar_type: AvatarType::Style,
        },
    )
    .await;
    for n in 1..=10 {
        o(
            t(next_day + n as i64),
            Action::UploadPhoto {
                photo: photo(100 + n),
            },
        )
        .await;
    }
    o(
        t(next_day + 11),
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Balanced,
            style: Default::default(),
        },
    )
    .await;
    run(
        store,
        style,
        system(
            t(next_day + 12),
            Action::FailTraining {
                request_id: None,
                reason: "the archive could not be uploaded".into(),
                abandon: false,
            },
        ),
    )
    .await;
    Life {
        style,
        events: 22 + 13,
        ..life
    }
}

/// Applies every projection until none is behind (waiting out other writers on PostgreSQL).
pub async fn catch_up_all(feed: &Feed) {
    for projection in projections::all() {
        let runner = ProjectionRunner::new(feed.clone(), projection);
        caught_up(feed, &runner).await;
    }
}

pub async fn caught_up(feed: &Feed, runner: &ProjectionRunner) {
    for _ in 0..400 {
        runner.catch_up().await.expect("catch up");
        let mut conn = feed.database().acquire().await.unwrap();
        let cursor = aisha::store::checkpoints::load_checkpoint(&mut conn.tx(), runner.name())
            .await
            .unwrap();
        if feed.lag(cursor).await.unwrap().events_behind == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} did not catch up in 10 s", runner.name());
}

async fn a_full_avatar_life_gives_exact_rows(db: Database) {
    // Given a portrait trained and used, its rows applied,
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let life = portrait_in_use(&store).await;
    catch_up_all(&feed).await;
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();

    // the gallery card shows it,
    let card = gallery::card(&mut tx, life.portrait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        card,
        gallery::AvatarCard {
            avatar_id: life.portrait,
            owner: OWNER,
            name: "Аиша".into(),
            avatar_type: "portrait".into(),
            gender: "female".into(),
            status: "trained".into(),
            photo_count: 10,
            has_model: true,
            model_ref: Some("http://fal/files/lora.safetensors".into()),
            trigger_word: Some(format!(
                "PERSON_{}",
                life.portrait.simple().to_string()[..8].to_uppercase()
            )),
            training_preset: Some("fast".into()),
            training_started_at: Some(t(13)),
            trained_at: Some(t(23)),
            generations_requested: 3,
            generations_completed: 1,
            generations_failed: 1,
            images_generated: 2,
            last_generation_at: Some(t(32)),
            created_at: t(0),
            updated_at: t(40),
            last_sequence: 21,
        }
    );
    let page = gallery::page(&mut tx, OWNER, 0, 5).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].avatar_id, life.portrait);

    // its training is a job completed through FAL,
    let portrait_jobs = jobs::for_avatar(&mut tx, life.portrait).await.unwrap();
    assert_eq!(
        portrait_jobs,
        vec![jobs::TrainingJob {
            avatar_id: life.portrait,
            started_sequence: 14,
            owner: OWNER,
            avatar_type: "portrait".into(),
            preset: "fast".into(),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            request_id: Some(REQUEST.into()),
            status: "completed".into(),
            started_at: t(13),
            submitted_at: Some(t(14)),
            finished_at: Some(t(23)),
            duration_seconds: Some(600.0),
            fal_seconds: Some(540.0),
            failure_reason: None,
        }]
    );
    assert_eq!(
        jobs::by_request_id(&mut tx, REQUEST).await.unwrap(),
        portrait_jobs.into_iter().next()
    );

    // and its generations are rows: completed with images, failed, pending.
    let completed = generations::get(&mut tx, life.completed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        completed,
        generations::Generation {
            generation_id: life.completed,
            avatar_id: life.portrait,
            owner: OWNER,
            prompt: "в горах на закате".into(),
            preset: Some("quality".into()),
            endpoint: "fal-ai/flux-lora".into(),
            num_images: 2,
            status: "completed".into(),
            image_count: 2,
            requested_at: t(30),
            finished_at: Some(t(32)),
            duration_seconds: Some(120.0),
            failure_reason: None,
            origin_kind: None,
            pack: None,
            upscale_of: None,
            upscale_image: None,
            upscale_factor: None,
            aspect_ratio: Some("1:1".into()),
        }
    );
    let failed = generations::get(&mut tx, life.failed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            failed.status.as_str(),
            failed.preset.as_deref(),
            failed.image_count
        ),
        ("failed", None, 0)
    );
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("generator timed out")
    );
    assert_eq!(failed.duration_seconds, Some(120.0));
    let pending = generations::get(&mut tx, life.pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (pending.status.as_str(), pending.finished_at),
        ("requested", None)
    );
    let images = generations::images(&mut tx, life.completed).await.unwrap();
    assert_eq!(
        images.iter().map(|i| i.url.as_str()).collect::<Vec<_>>(),
        [
            "http://fal/files/image-1.jpg",
            "http://fal/files/image-2.jpg"
        ]
    );
    assert_eq!((images[0].width, images[0].nsfw), (Some(1024), false));
    assert_eq!(
        generations::for_avatar(&mut tx, life.portrait, 0, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    let counts_before = analytics::summary(&mut tx, day(1), day(4)).await.unwrap();
    assert_eq!(counts_before.days[0].active_users, 1);
    drop(conn);

    // When the owner deletes it and, the next day, another user's style avatar fails,
    delete_the_portrait(&store, &life).await;
    let life = the_style_fails(&store, life).await;
    catch_up_all(&feed).await;
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();

    // then the portrait has no row left: no card, job, generation or image,
    assert_eq!(gallery::card(&mut tx, life.portrait).await.unwrap(), None);
    assert_eq!(gallery::page(&mut tx, OWNER, 0, 5).await.unwrap().total, 0);
    assert!(jobs::for_avatar(&mut tx, life.portrait)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(jobs::by_request_id(&mut tx, REQUEST).await.unwrap(), None);
    for generation in [life.completed, life.failed, life.pending] {
        assert_eq!(generations::get(&mut tx, generation).await.unwrap(), None);
        assert!(generations::images(&mut tx, generation)
            .await
            .unwrap()
            .is_empty());
    }
    assert!(generations::for_owner(&mut tx, OWNER, 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        generations::pending_for_owner(&mut tx, OWNER)
            .await
            .unwrap(),
        0
    );

    // while the style avatar's rows are as its events say.
    let page = gallery::page(&mut tx, OTHER_OWNER, 0, 5).await.unwrap();
    assert_eq!(page.total, 1);
    assert!(!page.has_next() && !page.has_previous());
    assert_eq!(
        page.items,
        vec![gallery::GalleryItem {
            avatar_id: life.style,
            name: "Акварель".into(),
            avatar_type: "style".into(),
            status: "training_failed".into(),
            photo_count: 10,
            has_model: false,
            created_at: t(24 * 60),
            updated_at: t(24 * 60 + 12),
            last_generation_at: None,
        }]
    );
    let style_jobs = jobs::for_avatar(&mut tx, life.style).await.unwrap();
    assert_eq!(style_jobs.len(), 1);
    let job = &style_jobs[0];
    assert_eq!(
        (
            job.status.as_str(),
            job.request_id.as_deref(),
            job.preset.as_str()
        ),
        ("failed", None, "balanced")
    );
    assert_eq!(job.endpoint, "fal-ai/flux-lora-fast-training");
    assert_eq!(job.duration_seconds, Some(60.0));
    assert_eq!(job.fal_seconds, None);
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("the archive could not be uploaded")
    );

    // Analytics: exact daily counts, the deleted portrait's included.
    let summary = analytics::summary(&mut tx, day(1), day(4)).await.unwrap();
    assert_eq!(summary.days.len(), 2);
    let first = &summary.days[0];
    assert_eq!(first.day, day(2));
    assert_eq!(first.avatars_created, [("portrait".to_owned(), 1)].into());
    assert_eq!(first.avatars_deleted, 1);
    assert_eq!(first.trainings, counts_before.days[0].trainings);
    assert_eq!(first.generations, counts_before.days[0].generations);
    assert_eq!(
        first.trainings,
        [(
            "portrait".to_owned(),
            analytics::TrainingDay {
                started: 1,
                completed: 1,
                failed: 0,
                avg_completed_seconds: Some(600.0)
            }
        )]
        .into()
    );
    assert_eq!(
        first.generations,
        [
            (
                "default".to_owned(),
                analytics::GenerationDay {
                    requested: 2,
                    completed: 0,
                    failed: 1,
                    images: 0,
                    avg_completed_seconds: None
                }
            ),
            (
                "quality".to_owned(),
                analytics::GenerationDay {
                    requested: 1,
                    completed: 1,
                    failed: 0,
                    images: 2,
                    avg_completed_seconds: Some(120.0)
                }
            ),
        ]
        .into()
    );
    // The only avatar its user was active with is gone, and with it their activity.
    assert_eq!(first.active_users, 0);
    let second = &summary.days[1];
    assert_eq!(second.day, day(3));
    assert_eq!(second.avatars_created, [("style".to_owned(), 1)].into());
    assert_eq!(second.avatars_deleted, 0);
    assert_eq!(
        second.trainings["style"],
        analytics::TrainingDay {
            started: 1,
            completed: 0,
            failed: 1,
            avg_completed_seconds: None
        }
    );
    assert!(second.generations.is_empty());
    assert_eq!(second.active_users, 1);
    assert_eq!(summary.totals.active_users, 1);
    assert_eq!(summary.totals.trainings.started, 2);
    assert_eq!(summary.totals.generations.requested, 3);

    // The analysts' view agrees with the tables.
    let rows = tx
        .fetch_all(
            "SELECT day, avatars_created, trainings_failed, generations_requested, active_users,
                    training_avg_seconds
               FROM analytics_daily ORDER BY day",
            vec![],
        )
        .await
        .unwrap();
    let view: Vec<(NaiveDate, i64, i64, i64, i64, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                r.get("day").unwrap(),
                r.get("avatars_created").unwrap(),
                r.get("trainings_failed").unwrap(),
                r.get("generations_requested").unwrap(),
                r.get("active_users").unwrap(),
                r.get("training_avg_seconds").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (day(2), 1, 0, 3, 0, Some(600.0)),
            (day(3), 1, 1, 0, 1, None)
        ]
    );
    assert_eq!(life.events, 35);
}

/// A projection that applies part of one batch and then fails, as a crash mid-batch would.
struct CrashMidBatch {
    inner: Arc<dyn Projection>,
    batches: AtomicUsize,
    crash_on_batch: usize,
    applied_before_crash: usize,
}

impl Projection for CrashMidBatch {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let batch = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
            if batch == self.crash_on_batch && events.len() > self.applied_before_crash {
                // The writes of the first events happen, then the process "dies".
                self.inner
                    .apply_batch(tx, &events[..self.applied_before_crash])
                    .await?;
                return Err(ProjectionError::Invalid("simulated crash".into()));
            }
            self.inner.apply_batch(tx, events).await
        })
    }
}

/// Everything the read models answer for `life`, as one comparable text.
async fn read_models(db: &Database, life: &Life) -> String {
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();
    let mut out = format!("{:#?}\n", gallery::all_cards(&mut tx).await.unwrap());
    for avatar in [life.portrait, life.style] {
        out += &format!("{:#?}\n", jobs::for_avatar(&mut tx, avatar).await.unwrap());
    }
    for generation in [life.completed, life.failed, life.pending] {
        out += &format!(
            "{:#?}\n{:#?}\n",
            generations::get(&mut tx, generation).await.unwrap(),
            generations::images(&mut tx, generation).await.unwrap()
        );
    }
    out += &format!(
        "{:#?}\n",
        analytics::summary(&mut tx, day(1), day(4)).await.unwrap()
    );
    out + &all_views_csv(&mut tx).await
}

/// Every exportable analytics view as CSV, for March 2026.
async fn all_views_csv(tx: &mut Tx<'_>) -> String {
    let mut out = String::new();
    for view in analytics::VIEWS {
        out += &analytics::view_csv(tx, view.name, day(1), day(31))
            .await
            .unwrap()
            .unwrap();
    }
    out
}

async fn a_real_projection_killed_mid_batch_resumes_with_nothing_lost_or_doubled(db: Database) {
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let life = full_life(&store).await;

    for projection in projections::all() {
        let crashing = Arc::new(CrashMidBatch {
            inner: projection.clone(),
            batches: AtomicUsize::new(0),
            crash_on_batch: 2,
            applied_before_crash: 3,
        });
        let runner = ProjectionRunner::new(feed.clone(), crashing).with_batch_size(5);
        assert_eq!(
            first_nonempty_batch(&runner).await,
            5,
            "{}",
            projection.name()
        );
        assert_crashes(&runner).await;
        // "Restart": a fresh runner carries on from the checkpoint of the first batch.
        let restarted = ProjectionRunner::new(feed.clone(), projection.clone()).with_batch_size(5);
        caught_up(&feed, &restarted).await;
    }
    let recovered = read_models(&db, &life).await;

    // The analytics counters would show a doubled or lost event; check them exactly.
    let mut conn = db.acquire().await.unwrap();
    let summary = analytics::summary(&mut conn.tx(), day(1), day(4))
        .await
        .unwrap();
    drop(conn);
    assert_eq!(summary.totals.avatars_created.values().sum::<i64>(), 2);
    assert_eq!(summary.totals.avatars_deleted, 1);
    assert_eq!(
        (
            summary.totals.trainings.started,
            summary.totals.trainings.completed,
            summary.totals.trainings.failed
        ),
        (2, 1, 1)
    );
    assert_eq!(
        (
            summary.totals.generations.requested,
            summary.totals.generations.completed,
            summary.totals.generations.failed,
            summary.totals.generations.images
        ),
        (3, 1, 1, 2)
    );

    // And the whole of every read model equals a clean replay.
    let rebuilt = audit::rebuild(&feed, None).await.unwrap();
    assert!(
        rebuilt.iter().all(|r| r.events <= life.events),
        "{rebuilt:?}"
    );
    catch_up_all(&feed).await;
    assert_eq!(read_models(&db, &life).await, recovered);
}

/// The runner's next non-empty batch fails (PostgreSQL may hold the feed back for a moment).
async fn assert_crashes(runner: &ProjectionRunner) {
    for _ in 0..200 {
        match runner.apply_one_batch().await {
            Err(_) => return,
            Ok(Some(0)) | Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(Some(n)) => panic!("{} applied {n} events instead of crashing", runner.name()),
        }
    }
    panic!("the feed stayed empty for 10 s");
}

async fn first_nonempty_batch(runner: &ProjectionRunner) -> usize {
    for _ in 0..200 {
        match runner.apply_one_batch().await.expect("first batch") {
            Some(n) if n > 0 => return n,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the feed stayed empty for 10 s");
}

async fn audit_verify_reports_injected_drift_until_a_rebuild(db: Database) {
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let life = full_life(&store).await;
    let kept = avatar_with_photos(&store, 3).await;
    // On a busy PostgreSQL cluster the feed may be held back for a moment; the audit compares
    // at the checkpoint, so let it cover every event first for exact counts.
    catch_up_all(&feed).await;

    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.drifts);
    assert_eq!((report.avatars, report.events), (3, 39));
    assert_cli_verify(&db, true).await;

    // Drift: a wrong count, a lost row, a row with no events behind it.
    let ghost = Uuid::new_v4();
    for sql in [
        format!("UPDATE gallery_avatars SET photo_count = 99 WHERE avatar_id = '{kept}'"),
        format!(
            "DELETE FROM gallery_avatars WHERE avatar_id = '{}'",
            life.style
        ),
        format!(
            "INSERT INTO gallery_avatars (avatar_id, owner, name, avatar_type, gender, status,
                 created_at, updated_at, last_sequence)
             SELECT '{ghost}', owner, name, avatar_type, gender, status, created_at, updated_at,
                    last_sequence
               FROM gallery_avatars WHERE avatar_id = '{kept}'"
        ),
    ] {
        let mut conn = db.acquire().await.unwrap();
        conn.tx().execute(&sql, vec![]).await.unwrap();
    }
    let report = audit::verify(&feed).await.unwrap();
    let mut found: Vec<(String, &str, String, String)> = report
        .drifts
        .iter()
        .map(|d| {
            (
                d.avatar_id.clone(),
                d.field,
                d.expected.clone(),
                d.found.clone(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (
            kept.to_string(),
            "photo_count",
            "3".to_owned(),
            "99".to_owned(),
        ),
        (
            life.style.to_string(),
            "row",
            "present".to_owned(),
            "missing".to_owned(),
        ),
        (
            ghost.to_string(),
            "row",
            "absent (no events)".to_owned(),
            "present".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert_cli_verify(&db, false).await;

    // The operator rebuilds the gallery through the CLI; the audit passes again.
    let output = aisha_cli(&db, &["projections", "rebuild", "gallery"]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("events replayed"));
    catch_up_all(&feed).await;
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.drifts);
    assert_cli_verify(&db, true).await;
}

/// Runs `aisha audit verify` on `db` and checks its exit code and report.
async fn assert_cli_verify(db: &Database, clean: bool) {
    let output = aisha_cli(db, &["audit", "verify"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.success(), clean, "{stdout}");
    if clean {
        assert!(stdout.contains("no drift"), "{stdout}");
    } else {
        assert!(stdout.contains("drift: avatar"), "{stdout}");
        assert!(stdout.contains("3 drift(s)"), "{stdout}");
    }
}

/// Runs the `aisha` binary against `db`.
pub async fn aisha_cli(db: &Database, args: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_aisha"));
    command
        .arg("--database-url")
        .arg(database_url(db))
        .args(args)
        .env("RUST_LOG", "warn");
    command.output().await.expect("run aisha")
}

/// The URL of the database behind a pool.
pub fn database_url(db: &Database) -> String {
    match db {
        Database::Sqlite(pool) => format!(
            "sqlite://{}",
            pool.connect_options().get_filename().display()
        ),
        Database::Postgres(pool) => {
            let o = pool.connect_options();
            format!(
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("postgres")
            )
        }
    }
}

async fn the_state_at_a_sequence_replays_only_that_far(db: Database) {
    let store = AvatarStore::new(db.clone());
    let life = full_life(&store).await;

    let s = audit::state_at(&store, life.portrait, Some(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.sequence, s.latest_sequence), (3, 22));
    assert_eq!(s.state.photos.len(), 2);
    assert_eq!(s.state.status, aggregates::AvatarStatus::Draft);
    assert_eq!(s.actor.as_deref(), Some("telegram:4242"));
    assert_eq!(s.at, t(2));

    let s = audit::state_at(&store, life.portrait, Some(16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.state.status, aggregates::AvatarStatus::Trained);
    assert_eq!(s.event_type, "TrainingCompleted");
    assert_eq!(s.actor.as_deref(), Some("system:test"));
    assert!(s.state.model.is_some());

    let latest = audit::state_at(&store, life.portrait, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.state.status, aggregates::AvatarStatus::Deleted);
    assert!(audit::state_at(&store, life.portrait, Some(23))
        .await
        .unwrap()
        .is_none());
    assert!(audit::state_at(&store, life.portrait, Some(0))
        .await
        .unwrap()
        .is_none());
    assert!(audit::state_at(&store, Uuid::new_v4(), None)
        .await
        .unwrap()
        .is_none());

    // The CLI prints the same, with who issued each command.
    let id = life.portrait.to_string();
    let output = aisha_cli(&db, &["history", &id, "--at", "16"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("telegram:4242") && stdout.contains("system:test"),
        "{stdout}"
    );
    assert!(stdout.contains("state after event 16 of 22"), "{stdout}");
    assert!(stdout.contains("status:      trained"), "{stdout}");
    assert!(!stdout.contains("GenerationRequested"), "{stdout}");
    let output = aisha_cli(&db, &["history", &id, "--at", "3", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON state");
    assert_eq!(json["sequence"], 3);
    assert_eq!(json["state"]["photos"].as_array().map(Vec::len), Some(2));
}

async fn a_rebuild_runs_while_commands_keep_coming(db: Database) {
    let store = Arc::new(AvatarStore::new(db.clone()));
    let feed = Feed::new(db.clone());
    full_life(&store).await;
    catch_up_all(&feed).await;

    // Users keep creating avatars and live runners keep applying them during the rebuild.
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            for _ in 0..30 {
                avatar_with_photos(&store, 2).await;
            }
        }
    });
    let live: Vec<_> = projections::all()
        .into_iter()
        .map(|p| tokio::spawn(ProjectionRunner::new(feed.clone(), p).run()))
        .collect();
    let rebuilt = audit::rebuild(&feed, None).await.unwrap();
    assert!(rebuilt.iter().all(|r| r.events >= 35), "{rebuilt:?}");
    writer.await.unwrap();
    live.iter().for_each(|runner| runner.abort());

    catch_up_all(&feed).await;
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.drifts);
    assert_eq!((report.avatars, report.events), (32, 35 + 30 * 3));
    let mut conn = db.acquire().await.unwrap();
    let page = gallery::page(&mut conn.tx(), OWNER, 0, 100).await.unwrap();
    assert_eq!(page.total, 30);
    let summary = analytics::summary(&mut conn.tx(), day(1), day(31))
        .await
        .unwrap();
    assert_eq!(summary.totals.avatars_created.values().sum::<i64>(), 2);
    // No leftovers of the shadow tables.
    let leftover = conn
        .tx()
        .fetch_i64(
            "SELECT count(*) FROM feed_checkpoints WHERE consumer LIKE '%:rebuild'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(leftover, Some(0));
}

/// PostgreSQL puts rebuilt tables in place of the live ones rather than copying rows into them:
/// afterwards the schema is still the one the migrations made (columns, constraints and indexes
/// under their own names, which later migrations refer to; views), and every view and table
/// answers with the same rows.
#[sqlx::test(migrations = false)]
async fn on_postgres_a_rebuild_leaves_the_schema_and_every_view_as_they_were(pool: sqlx::PgPool) {
    let db = Database::Postgres(pool.clone());
    db.migrate().await.expect("migrate postgres");
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    full_life(&store).await;
    trained_at(&store, OTHER_OWNER, 100, false).await;
    trained_at(&store, OTHER_OWNER, 200, true).await;
    catch_up_all(&feed).await;
    let (schema, rows) = (schema_of(&pool).await, rows_of(&pool).await);
    assert!(schema.contains("index gallery_avatars_owner: "), "{schema}");
    let filled = rows.iter().filter(|(_, n, _)| *n > 0).count();
    assert!(filled >= 5, "the life leaves rows to compare: {rows:?}");

    let rebuilt = audit::rebuild_all(&feed).await.unwrap();
    assert_eq!(
        rebuilt.len(),
        projections::all().len() + projections::ledger().len()
    );

    assert_eq!(schema_of(&pool).await, schema);
    assert_eq!(rows_of(&pool).await, rows);
    let shadows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'aisha_rebuild_%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(shadows, 0, "no shadow schema is left");
    // The live runners go on writing into the swapped-in tables.
    trained_at(&store, OWNER, 300, false).await;
    catch_up_all(&feed).await;
    assert_eq!(audit::verify(&feed).await.unwrap().drifts.len(), 0);
}

/// The current schema as text, a line per column, constraint, index and view. Columns by their
/// rank, not their number: a copied table has no gaps where a migration dropped a column.
async fn schema_of(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar(
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
             SELECT format('column %s.%s #%s %s %s %s', table_name, column_name,
                           row_number() OVER (PARTITION BY table_name ORDER BY ordinal_position),
                           data_type, is_nullable, column_default) AS line
               FROM information_schema.columns WHERE table_schema = current_schema()
             UNION ALL
             SELECT format('constraint %s %s: %s', conrelid::regclass, conname,
                           pg_get_constraintdef(oid))
               FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
             UNION ALL
             SELECT format('index %s: %s', indexname, indexdef)
               FROM pg_indexes WHERE schemaname = current_schema()
             UNION ALL
             SELECT format('view %s: %s', viewname, definition)
               FROM pg_views WHERE schemaname = current_schema()
         ) s",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every view's and every read model table's rows: its name, how many, and a digest of them.
async fn rows_of(pool: &sqlx::PgPool) -> Vec<(String, i64, String)> {
    let mut names: Vec<String> = sqlx::query_scalar(
        "SELECT viewname::text FROM pg_views WHERE schemaname = current_schema()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for p in projections::all() {
        names.extend(p.tables().iter().map(|t| t.to_string()));
    }
    for p in projections::ledger() {
        names.extend(p.tables().iter().map(|t| t.to_string()));
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let (n, digest): (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '')
               FROM {name} r"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((name, n, digest));
    }
    out
}

/// A trained avatar of `owner` whose events start at `t(start)` and end at `t(start + 20)`: a
/// portrait LoRA, or a style avatar on the pro finetune trainer (the ultra endpoint).
pub async fn trained_at(store: &AvatarStore, owner: i64, start: i64, pro: bool) -> Uuid {
    let id = Uuid::new_v4();
    let u = |at, action| run(store, id, user(owner, t(at), action));
    u(
        start,
        Action::Create {
            avatar_id: id,
            name: "Пакеты".into(),
            gender: Gender::Female,
            avatar_type: if pro {
                AvatarType::Style
            } else {
                AvatarType::Portrait
            },
        },
    )
    .await;
    for n in 1..=10 {
        u(start + n as i64, Action::UploadPhoto { photo: photo(n) }).await;
    }
    u(
        start + 11,
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Fast,
            style: if pro {
                StyleTrainer::ProFinetune
            } else {
                StyleTrainer::default()
            },
        },
    )
    .await;
    let request = format!("req-{id}");
    let s = |at, action| run(store, id, system(t(at), action));
    s(
        start + 12,
        Action::RecordTrainingSubmission {
            request_id: request.clone(),
            endpoint: if pro {
                PRO_TRAINER.into()
            } else {
                "fal-ai/flux-lora-portrait-trainer".into()
            },
            status_url: "http://fal/status".into(),
            response_url: "http://fal/response".into(),
            cancel_url: "http://fal/cancel".into(),
            archive_url: Some("http://fal/files/photos.zip".into()),
        },
    )
    .await;
    s(
        start + 20,
        Action::CompleteTraining {
            request_id: request,
            output: TrainingOutput {
                lora_file_url: (!pro).then(|| "http://fal/files/lora.safetensors".into()),
                config_file_url: None,
                finetune_id: pro.then(|| "finetune-1".into()),
            },
        },
    )
    .await;
    id
}

pub fn images(generation: Uuid, n: usize) -> Vec<GeneratedImage> {
    (0..n)
        .map(|i| GeneratedImage {
            url: format!("http://fal/files/{generation}-{i}.jpg"),
            width: Some(1024),
            height: Some(1024),
            content_type: Some("image/jpeg".into()),
            nsfw: false,
        })
        .collect()
}

/// The rows of `sql`, each as its columns' text (NULL as `-`), sorted.
async fn rows(
    tx: &mut Tx<'_>,
    sql: &str,
    columns: &[(&str, analytics::ColumnKind)],
) -> Vec<String> {
    let mut out: Vec<String> = tx
        .fetch_all(sql, vec![])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(c, kind)| match kind {
                    analytics::ColumnKind::Day => r.get::<NaiveDate>(c).unwrap().to_string(),
                    analytics::ColumnKind::Integer => r.get::<i64>(c).unwrap().to_string(),
                    analytics::ColumnKind::Real => r
                        .get::<Option<f64>>(c)
                        .unwrap()
                        .map_or("-".into(), |v| v.to_string()),
                    analytics::ColumnKind::Text => {
                        r.get::<Option<String>>(c).unwrap().unwrap_or("-".into())
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

/// The three new views and the generation rows, as comparable text.
async fn origin_views(
    db: &Database,
    ids: &[Uuid],
) -> (Vec<String>, Vec<String>, Vec<String>, String) {
    use analytics::ColumnKind::{Day as D, Integer as I, Text as T};
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();
    let packs = rows(
        &mut tx,
        "SELECT * FROM analytics_packs",
        &[
            ("day", D),
            ("pack", T),
            ("origin_kind", T),
            ("requested", I),
            ("completed", I),
            ("failed", I),
            ("images", I),
        ],
    )
    .await;
    let frames = rows(
        &mut tx,
        "SELECT * FROM analytics_aspect_ratios",
        &[
            ("day", D),
            ("aspect_ratio", T),
            ("endpoint", T),
            ("generations", I),
            ("images", I),
        ],
    )
    .await;
    let upscales = rows(
        &mut tx,
        "SELECT * FROM analytics_upscales",
        &[
            ("day", D),
            ("factor", I),
            ("requested", I),
            ("completed", I),
            ("failed", I),
        ],
    )
    .await;
    let mut generations_text = String::new();
    for id in ids {
        generations_text += &format!("{:?}\n", generations::get(&mut tx, *id).await.unwrap());
    }
    (packs, frames, upscales, generations_text)
}

async fn packs_frames_and_upscales_give_exact_view_rows(db: Database) {
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let portrait = trained_at(&store, OWNER, 0, false).await;
    let pro = trained_at(&store, OTHER_OWNER, 50, true).await;
    let next_day = 24 * 60;
    let ids: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    let [starter, typed, pack_1, pack_2, pack_failed, upscale_4, upscale_2, upscale_late, ultra] =
        ids[..]
    else {
        unreachable!()
    };
    let generate = |generation_id, preset, aspect, num_images, origin| Action::Generate {
        generation_id,
        prompt: format!("prompt of {generation_id}"),
        preset,
        num_images,
        aspect,
        batch: None,
        origin,
    };
    let pack = |id: &str| Some(Origin::Pack { pack: id.into() });
    let p = |at, action| run(&store, portrait, user(OWNER, t(at), action));
    let s = |at, avatar, action| run(&store, avatar, system(t(at), action));
    let complete = |generation_id, n| Action::CompleteGeneration {
        generation_id,
        images: images(generation_id, n),
    };
    let fail = |generation_id| Action::FailGeneration {
        generation_id,
        reason: "generator timed out".into(),
        abandon: false,
    };
    let upscale = |generation_id, of, image, factor| Action::Upscale {
        generation_id,
        of,
        image,
        factor,
    };

    // The bot's starter samples, under the same pack id a user can also pick.
    s(
        21,
        portrait,
        generate(
            starter,
            Some(GenerationPreset::Balanced),
            None,
            2,
            Some(Origin::Starter {
                pack: "portrait-business".into(),
            }),
        ),
    )
    .await;
    s(22, portrait, complete(starter, 2)).await;
    p(30, generate(typed, None, None, 2, None)).await;
    s(31, portrait, complete(typed, 2)).await;
    p(
        32,
        generate(
            pack_1,
            Some(GenerationPreset::Portrait),
            None,
            1,
            pack("portrait-business"),
        ),
    )
    .await;
    s(33, portrait, complete(pack_1, 1)).await;
    // Requested today, returned tomorrow: each counts on its own day.
    p(
        34,
        generate(
            pack_2,
            None,
            Some(AspectRatio::Wide),
            2,
            pack("portrait-business"),
        ),
    )
    .await;
    p(35, generate(pack_failed, None, None, 1, pack("travel"))).await;
    s(36, portrait, fail(pack_failed)).await;
    p(40, upscale(upscale_4, typed, 0, UpscaleFactor::X4)).await;
    s(41, portrait, complete(upscale_4, 1)).await;
    p(42, upscale(upscale_2, typed, 1, UpscaleFactor::X2)).await;
    s(43, portrait, fail(upscale_2)).await;
    // The ultra endpoint names its frame itself: the landscape preset's is 4:3.
    run(
        &store,
        pro,
        user(
            OTHER_OWNER,
            t(71),
            generate(ultra, Some(GenerationPreset::Landscape), None, 1, None),
        ),
    )
    .await;
    s(72, pro, complete(ultra, 1)).await;
    s(next_day + 1, portrait, complete(pack_2, 2)).await;
    p(
        next_day + 2,
        upscale(upscale_late, pack_1, 0, UpscaleFactor::X4),
    )
    .await;

    // Small batches, so that pending generations cross batches through the working tables.
    for projection in projections::all() {
        let runner = ProjectionRunner::new(feed.clone(), projection).with_batch_size(3);
        caught_up(&feed, &runner).await;
    }
    let live = origin_views(&db, &ids).await;
    let (packs, frames, upscales, _) = &live;
    assert_eq!(
        packs,
        &[
            "2026-03-02 portrait-business pack 2 1 0 1",
            "2026-03-02 portrait-business starter 1 1 0 2",
            "2026-03-02 travel pack 1 0 1 0",
            "2026-03-03 portrait-business pack 0 1 0 2",
        ]
    );
    let lora = PORTRAIT_GENERATOR;
    let mut expected_frames = vec![
        // starter, typed and the failed pack prompt: the default and balanced squares.
        format!("2026-03-02 1:1 {lora} 3 4"),
        format!("2026-03-02 16:9 {lora} 1 0"),
        format!("2026-03-02 3:4 {lora} 1 1"),
        format!("2026-03-02 4:3 {PRO_GENERATOR} 1 1"),
        format!("2026-03-03 16:9 {lora} 0 2"),
    ];
    expected_frames.sort();
    assert_eq!(frames, &expected_frames);
    assert_eq!(
        upscales,
        &[
            "2026-03-02 2 1 0 1",
            "2026-03-02 4 1 1 0",
            "2026-03-03 4 1 0 0",
        ]
    );

    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();
    // Upscales have a preset label of their own in the per-preset counts.
    let by_preset = rows(
        &mut tx,
        "SELECT day, preset, requested, completed, failed, images FROM analytics_generations
          WHERE preset = 'upscale'",
        &[
            ("day", analytics::ColumnKind::Day),
            ("preset", analytics::ColumnKind::Text),
            ("requested", analytics::ColumnKind::Integer),
            ("completed", analytics::ColumnKind::Integer),
            ("failed", analytics::ColumnKind::Integer),
            ("images", analytics::ColumnKind::Integer),
        ],
    )
    .await;
    assert_eq!(
        by_preset,
        ["2026-03-02 upscale 2 1 1 1", "2026-03-03 upscale 1 0 0 0"]
    );

    // The generation rows say where each came from.
    let row = |g: &generations::Generation| {
        (
            g.origin_kind.clone(),
            g.pack.clone(),
            g.upscale_of,
            g.upscale_image,
            g.upscale_factor,
            g.aspect_ratio.clone(),
        )
    };
    let typed_row = generations::get(&mut tx, typed).await.unwrap().unwrap();
    assert_eq!(
        row(&typed_row),
        (None, None, None, None, None, Some("1:1".into()))
    );
    let pack_2_row = generations::get(&mut tx, pack_2).await.unwrap().unwrap();
    assert_eq!(
        row(&pack_2_row),
        (
            Some("pack".into()),
            Some("portrait-business".into()),
            None,
            None,
            None,
            Some("16:9".into())
        )
    );
    let starter_row = generations::get(&mut tx, starter).await.unwrap().unwrap();
    assert_eq!(
        (
            starter_row.origin_kind.as_deref(),
            starter_row.pack.as_deref()
        ),
        (Some("starter"), Some("portrait-business"))
    );
    let upscale_row = generations::get(&mut tx, upscale_4).await.unwrap().unwrap();
    assert_eq!(
        row(&upscale_row),
        (
            Some("upscale".into()),
            None,
            Some(typed),
            Some(0),
            Some(4),
            None
        )
    );
    assert_eq!(
        (
            upscale_row.endpoint.as_str(),
            upscale_row.num_images,
            upscale_row.image_count,
            upscale_row.status.as_str(),
            upscale_row.prompt.as_str(),
        ),
        (UPSCALER, 1, 1, "completed", typed_row.prompt.as_str())
    );
    let late = generations::get(&mut tx, upscale_late)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (late.status.as_str(), late.upscale_of, late.upscale_factor),
        ("requested", Some(pack_1), Some(4))
    );
    let ultra_row = generations::get(&mut tx, ultra).await.unwrap().unwrap();
    assert_eq!(
        (
            ultra_row.endpoint.as_str(),
            ultra_row.aspect_ratio.as_deref()
        ),
        (PRO_GENERATOR, Some("4:3"))
    );

    // The prompt screen offers what the user wrote or picked: no upscales, no starter samples.
    let recent: Vec<Uuid> = generations::recent_prompts_for_owner(&mut tx, OWNER, 0, 50)
        .await
        .unwrap()
        .iter()
        .map(|g| g.generation_id)
        .collect();
    assert_eq!(recent, [pack_failed, pack_2, pack_1, typed]);
    assert_eq!(
        generations::for_owner(&mut tx, OWNER, 0, 50)
            .await
            .unwrap()
            .len(),
        8
    );

    // The CSV exports, in key order on both backends.
    assert_eq!(
        analytics::view_csv(&mut tx, "analytics_packs", day(1), day(31))
            .await
            .unwrap()
            .as_deref(),
        Some(
            "day,pack,origin_kind,requested,completed,failed,images\n\
             2026-03-02,portrait-business,pack,2,1,0,1\n\
             2026-03-02,portrait-business,starter,1,1,0,2\n\
             2026-03-02,travel,pack,1,0,1,0\n\
             2026-03-03,portrait-business,pack,0,1,0,2\n"
        )
    );
    assert_eq!(
        analytics::view_csv(&mut tx, "analytics_aspect_ratios", day(1), day(31))
            .await
            .unwrap()
            .as_deref(),
        Some(
            format!(
                "day,aspect_ratio,endpoint,generations,images\n\
                 2026-03-02,16:9,{lora},1,0\n\
                 2026-03-02,1:1,{lora},3,4\n\
                 2026-03-02,3:4,{lora},1,1\n\
                 2026-03-02,4:3,{PRO_GENERATOR},1,1\n\
                 2026-03-03,16:9,{lora},0,2\n"
            )
            .as_str()
        )
    );
    assert_eq!(
        analytics::view_csv(&mut tx, "analytics_upscales", day(3), day(3))
            .await
            .unwrap()
            .as_deref(),
        Some("day,factor,requested,completed,failed\n2026-03-03,4,1,0,0\n")
    );
    assert_eq!(
        analytics::view_csv(&mut tx, "generations", day(1), day(31))
            .await
            .unwrap(),
        None
    );
    // Every exportable view reads on this backend, the older ones included.
    let everything = all_views_csv(&mut tx).await;
    assert!(
        everything.contains("2026-03-02,upscale,2,1,1,1,"),
        "{everything}"
    );
    drop(conn);

    // A rebuild from the events, in one big batch, gives the same rows.
    audit::rebuild(&feed, None).await.unwrap();
    catch_up_all(&feed).await;
    assert_eq!(origin_views(&db, &ids).await, live);
    let mut conn = db.acquire().await.unwrap();
    assert_eq!(all_views_csv(&mut conn.tx()).await, everything);
}
