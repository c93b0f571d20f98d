//! The read models forget (issue #14): once an avatar is deleted no read-model row names it, its
//! owner, its name or its prompts; the daily counts stay as they were; a rebuild from its erased
//! events gives the live tables back; and an erased user leaves no user id in the analytics.

use std::collections::{BTreeMap, BTreeSet};

use aggregates::presets::AspectRatio;
use aggregates::{
    Action, AvatarEvent, AvatarType, Gender, GenerationPreset, Origin, TrainingOutput,
    TrainingPreset, UpscaleFactor,
};
use aisha::audit;
use aisha::store::feed::Feed;
use aisha::store::{AvatarStore, Database};
use projections::analytics;
use uuid::Uuid;

use crate::projections::{catch_up_all, day, images, system, t, trained_at, user};
use crate::support::*;

on_both_backends!(
    a_deleted_avatar_leaves_no_row_naming_it_and_the_daily_counts_stay,
    a_rebuild_from_a_deleted_avatars_erased_events_gives_the_live_tables,
    an_erased_user_leaves_no_user_id_behind,
);

/// The user whose data must go.
const ALICE: i64 = 918_273_645;
/// The user who stays, active on the same days.
const BORIS: i64 = 5_566_778;
/// The next day, when Alice deletes: nothing counted on the first day may change.
const NEXT_DAY: i64 = 24 * 60;

/// One of Alice's avatars and what its events recorded that no row may keep once it is deleted.
struct Deletable {
    avatar: Uuid,
    personal: Vec<String>,
}

/// Alice's portrait, from `t(start)`: trained, a generation with images, one failed from a pack
/// in a frame of her choice, an upscale, and one still pending.
async fn alices_portrait(store: &AvatarStore, start: i64) -> Deletable {
    let avatar = Uuid::new_v4();
    let name = format!("Зоя Кракен {start}");
    let [done, failed, upscale, pending] = [(); 4].map(|_| Uuid::new_v4());
    let prompts = [
        format!("кракен пьёт чай {start}"),
        format!("мармелад на луне {start}"),
        format!("последний промпт {start}"),
    ];
    let request = format!("req-alice-{avatar}");
    let archive = format!("http://fal/files/alice-{avatar}.zip");
    let lora = format!("http://fal/files/alice-{avatar}.safetensors");
    let reason = format!("refused: the kraken policy {start}");
    let a = |at: i64, action| run(store, avatar, user(ALICE, t(start + at), action));
    let s = |at: i64, action| run(store, avatar, system(t(start + at), action));
    a(
        0,
        Action::Create {
            avatar_id: avatar,
            name: name.as_str().into(),
            gender: Gender::Female,
            avatar_type: AvatarType::Portrait,
        },
    )
    .await;
    for n in 1..=10 {
        a(
            n as i64,
            Action::UploadPhoto {
                photo: photo(300 + n),
            },
        )
        .await;
    }
    a(
        11,
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Fast,
            style: Default::default(),
        },
    )
    .await;
    s(
        12,
        Action::RecordTrainingSubmission {
            request_id: request.clone(),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            status_url: "http://fal/status".into(),
            response_url: "http://fal/response".into(),
            cancel_url: "http://fal/cancel".into(),
            archive_url: Some(archive.clone()),
        },
    )
    .await;
    s(
        20,
        Action::CompleteTraining {
            request_id: request.clone(),
            output: TrainingOutput {
                lora_file_url: Some(lora.clone()),
                config_file_url: None,
                finetune_id: None,
            },
        },
    )
    .await;
    let generate = |generation_id, prompt: &String, preset, aspect, origin| Action::Generate {
        generation_id,
        prompt: prompt.clone(),
        preset,
        num_images: 2,
        aspect,
        batch: None,
        origin,
    };
    a(
        21,
        generate(
            done,
            &prompts[0],
            Some(GenerationPreset::Quality),
            None,
            None,
        ),
    )
    .await;
    s(
        22,
        Action::CompleteGeneration {
            generation_id: done,
            images: images(done, 2),
        },
    )
    .await;
    a(
        23,
        generate(
            failed,
            &prompts[1],
            None,
            Some(AspectRatio::Wide),
            Some(Origin::Pack {
                pack: "travel".into(),
            }),
        ),
    )
    .await;
    s(
        24,
        Action::FailGeneration {
            generation_id: failed,
            reason: reason.clone(),
            abandon: false,
        },
    )
    .await;
    a(
        25,
        Action::Upscale {
            generation_id: upscale,
            of: done,
            image: 1,
            factor: UpscaleFactor::X2,
        },
    )
    .await;
    s(
        26,
        Action::CompleteGeneration {
            generation_id: upscale,
            images: images(upscale, 1),
        },
    )
    .await;
    a(27, generate(pending, &prompts[2], None, None, None)).await;
    let mut personal = vec![
        avatar.to_string(),
        ALICE.to_string(),
        name,
        request,
        archive,
        lora,
        reason,
    ];
    personal.extend(prompts);
    // Image URLs name their generation.
    personal.extend([done, failed, upscale, pending].map(|g| g.to_string()));
    Deletable { avatar, personal }
}

/// Alice's draft style avatar with a few photos, from `t(start)`.
async fn alices_draft(store: &AvatarStore, start: i64) -> Deletable {
    let avatar = Uuid::new_v4();
    let name = format!("Акварель Алисы {start}");
    let a = |at: i64, action| run(store, avatar, user(ALICE, t(start + at), action));
    a(
        0,
        Action::Create {
            avatar_id: avatar,
            name: name.as_str().into(),
            gender: Gender::Other,
            avatar_type: AvatarType::Style,
        },
    )
    .await;
    for n in 1..=3 {
        a(
            n as i64,
            Action::UploadPhoto {
                photo: photo(400 + n),
            },
        )
        .await;
    }
    Deletable {
        avatar,
        personal: vec![avatar.to_string(), ALICE.to_string(), name],
    }
}

/// Boris's trained portrait with one generation, on the same first day.
async fn boris_portrait(store: &AvatarStore) -> Uuid {
    let avatar = trained_at(store, BORIS, 100, false).await;
    let generation = Uuid::new_v4();
    run(
        store,
        avatar,
        user(
            BORIS,
            t(130),
            Action::Generate {
                generation_id: generation,
                prompt: "Борис в лесу".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            },
        ),
    )
    .await;
    run(
        store,
        avatar,
        system(
            t(131),
            Action::CompleteGeneration {
                generation_id: generation,
                images: images(generation, 1),
            },
        ),
    )
    .await;
    avatar
}

async fn delete(store: &AvatarStore, avatar: Uuid, at: i64) {
    run(store, avatar, user(ALICE, t(at), Action::Delete)).await;
}

/// The analysts' views over the read models, dumped with their tables.
const VIEWS: &[&str] = &[
    "avatars_live",
    "analytics_users",
    "analytics_daily",
    "analytics_trainings",
    "analytics_generations",
    "analytics_packs",
    "analytics_aspect_ratios",
    "analytics_upscales",
    "money_fal_usage",
];

/// Every row of every avatar read model and analysts' view, each as text, by table: what a
/// deletion must leave nothing of, and what a rebuild must give back exactly.
async fn dump(db: &Database) -> BTreeMap<String, Vec<String>> {
    let names: Vec<String> = projections::all()
        .iter()
        .flat_map(|p| p.tables().iter().map(|t| (*t).to_owned()))
        .chain(VIEWS.iter().map(|v| (*v).to_owned()))
        .collect();
    let mut out = BTreeMap::new();
    for name in names {
        let mut rows: Vec<String> = match db {
            Database::Postgres(pool) => {
                sqlx::query_scalar(&format!("SELECT row_to_json(r)::text FROM {name} r"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
            }
            Database::Sqlite(pool) => {
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{name}')"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                let row = columns
                    .iter()
                    .map(|c| format!("'{c}=' || quote({c})"))
                    .collect::<Vec<_>>()
                    .join(" || ',' || ");
                sqlx::query_scalar(&format!("SELECT {row} FROM {name}"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
            }
        };
        rows.sort();
        out.insert(name, rows);
    }
    out
}

/// Each (table, row) that holds one of `needles`.
fn holding<'a>(
    dump: &'a BTreeMap<String, Vec<String>>,
    needles: &[String],
) -> Vec<(&'a str, &'a str)> {
    dump.iter()
        .flat_map(|(table, rows)| rows.iter().map(move |r| (table.as_str(), r.as_str())))
        .filter(|(_, row)| needles.iter().any(|n| row.contains(n.as_str())))
        .collect()
}

/// The daily counters (not the active avatars, which go with a deleted avatar).
fn counts(dump: &BTreeMap<String, Vec<String>>) -> BTreeSet<(String, String)> {
    dump.iter()
        .filter(|(table, _)| table.starts_with("daily_") && *table != "daily_active_avatars")
        .flat_map(|(table, rows)| rows.iter().map(move |r| (table.clone(), r.clone())))
        .collect()
}

async fn active_users(db: &Database) -> (Vec<i64>, i64) {
    let mut conn = db.acquire().await.unwrap();
    let summary = analytics::summary(&mut conn.tx(), day(1), day(4))
        .await
        .unwrap();
    (
        summary.days.iter().map(|d| d.active_users).collect(),
        summary.totals.active_users,
    )
}

async fn paid_jobs_on_the_first_day(db: &Database) -> i64 {
    let mut conn = db.acquire().await.unwrap();
    analytics::paid_jobs_on(&mut conn.tx(), day(2))
        .await
        .unwrap()
}

async fn a_deleted_avatar_leaves_no_row_naming_it_and_the_daily_counts_stay(db: Database) {
    // Given Alice's portrait and Boris's, used on the same day,
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let alice = alices_portrait(&store, 0).await;
    boris_portrait(&store).await;
    catch_up_all(&feed).await;
    let before = dump(&db).await;
    // (the rows hold what the test looks for: every table it must vanish from is in the dump)
    let held: BTreeSet<&str> = holding(&before, &alice.personal)
        .into_iter()
        .map(|(table, _)| table)
        .collect();
    for table in [
        "gallery_avatars",
        "training_jobs",
        "generations",
        "generation_images",
        "analytics_avatars",
        "analytics_open_generations",
        "daily_active_avatars",
        "avatars_live",
        "analytics_users",
    ] {
        assert!(
            held.contains(table),
            "{table} holds nothing of Alice's: {held:?}"
        );
    }
    assert_eq!(active_users(&db).await, (vec![2], 2));
    // Two trainings and five generations were paid for that day.
    assert_eq!(paid_jobs_on_the_first_day(&db).await, 7);

    // when she deletes it the next day,
    delete(&store, alice.avatar, NEXT_DAY + 5).await;
    catch_up_all(&feed).await;
    let after = dump(&db).await;

    // then no row of any read model or view holds its id, her id, its name, a prompt or a URL,
    assert_eq!(holding(&after, &alice.personal), Vec::<(&str, &str)>::new());
    // the counts of the first day are as they were, and the deletion is counted on its own day,
    let (kept, added): (BTreeSet<_>, BTreeSet<_>) = (counts(&before), counts(&after));
    assert_eq!(
        kept.difference(&added).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new()
    );
    let new: Vec<_> = added.difference(&kept).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0].0, "daily_avatars");
    assert!(new[0].1.contains("2026-03-03"), "{new:?}");
    // only Boris is still counted as active, while the service's paid jobs of the day stay,
    assert_eq!(active_users(&db).await, (vec![1, 0], 1));
    assert_eq!(paid_jobs_on_the_first_day(&db).await, 7);
    // Boris's rows did not move,
    for table in [
        "gallery_avatars",
        "training_jobs",
        "generations",
        "generation_images",
    ] {
        assert_eq!(
            after[table],
            without(&before[table], &alice.personal),
            "{table}"
        );
    }
    // and the audit agrees with the events.
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.drifts);
    assert_eq!(report.avatars, 2);
}

/// `rows` but those holding one of `needles`.
fn without(rows: &[String], needles: &[String]) -> Vec<String> {
    rows.iter()
        .filter(|row| !needles.iter().any(|n| row.contains(n.as_str())))
        .cloned()
        .collect()
}

async fn a_rebuild_from_a_deleted_avatars_erased_events_gives_the_live_tables(db: Database) {
    // Given Alice's deleted portrait and Boris's, applied live,
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let alice = alices_portrait(&store, 0).await;
    boris_portrait(&store).await;
    delete(&store, alice.avatar, NEXT_DAY + 5).await;
    catch_up_all(&feed).await;
    let live = dump(&db).await;

    // when its key is destroyed, so that its events read with placeholders,
    assert!(store.keys().destroy_avatar_key(alice.avatar).await.unwrap());
    let history = store.history(alice.avatar).await.unwrap();
    assert_eq!(history.len(), 22);
    let created = &history[0];
    assert!(created.erased);
    match &created.event {
        AvatarEvent::AvatarCreated { owner, name, .. } => {
            assert_eq!((*owner, name.to_string().as_str()), (0, "[erased]"));
        }
        other => panic!("the first event is {other:?}"),
    }
    // and every read model is rebuilt from the first event,
    audit::rebuild(&feed, None).await.unwrap();
    catch_up_all(&feed).await;

    // then nothing of Alice's came back,
    let rebuilt = dump(&db).await;
    assert_eq!(
        holding(&rebuilt, &alice.personal),
        Vec::<(&str, &str)>::new()
    );
    // the audit, replaying the erased events, finds no drift,
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.drifts);
    assert_eq!(report.avatars, 2);
    // and every table and view holds exactly what the live run left (the image counters need
    // each erased `GenerationCompleted` to keep how many images it returned).
    for (table, rows) in &live {
        assert_eq!(&rebuilt[table], rows, "{table} after the rebuild");
    }
}

async fn an_erased_user_leaves_no_user_id_behind(db: Database) {
    // Given Alice with a used portrait and a draft, and Boris active the same day,
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let portrait = alices_portrait(&store, 0).await;
    let draft = alices_draft(&store, 40).await;
    boris_portrait(&store).await;
    catch_up_all(&feed).await;
    let before = dump(&db).await;
    assert_eq!(active_users(&db).await, (vec![2], 2));

    // when she is erased: every avatar of hers deleted, then her keys destroyed,
    delete(&store, portrait.avatar, NEXT_DAY + 5).await;
    delete(&store, draft.avatar, NEXT_DAY + 6).await;
    assert!(store.keys().destroy_user_keys(ALICE).await.unwrap() >= 2);
    catch_up_all(&feed).await;
    let live = dump(&db).await;
    // and the read models rebuilt from the events as they now read,
    audit::rebuild(&feed, None).await.unwrap();
    catch_up_all(&feed).await;
    let rebuilt = dump(&db).await;

    // then neither the live tables nor the rebuilt ones hold her id or anything of her avatars,
    let mut personal = portrait.personal.clone();
    personal.extend(draft.personal.clone());
    assert_eq!(holding(&live, &personal), Vec::<(&str, &str)>::new());
    assert_eq!(holding(&rebuilt, &personal), Vec::<(&str, &str)>::new());
    // the active users are (day, avatar) pairs, with no user id column to hold one,
    let mut conn = db.acquire().await.unwrap();
    let columns_sql = match &db {
        Database::Postgres(_) => {
            "SELECT column_name AS name FROM information_schema.columns
              WHERE table_name = 'daily_active_avatars' AND table_schema = current_schema()
              ORDER BY ordinal_position"
        }
        Database::Sqlite(_) => "SELECT name FROM pragma_table_info('daily_active_avatars')",
    };
    let columns: Vec<String> = conn
        .tx()
        .fetch_all(columns_sql, vec![])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("name").unwrap())
        .collect();
    drop(conn);
    assert_eq!(columns, ["day", "avatar_id"]);
    // and only Boris is counted, while the daily counts of the first day stay.
    assert_eq!(active_users(&db).await, (vec![1, 0], 1));
    let (kept, now) = (counts(&before), counts(&live));
    assert!(
        kept.is_subset(&now),
        "{:?}",
        kept.difference(&now).collect::<Vec<_>>()
    );
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.drifts);
    // The rebuild gave the live tables back.
    for (table, rows) in &live {
        assert_eq!(&rebuilt[table], rows, "{table} after the rebuild");
    }
}
