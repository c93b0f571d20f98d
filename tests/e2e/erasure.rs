//! Delete means delete, proven from outside: a user makes two avatars (one photo carrying its
//! location), trains both, generates with prompts nobody else would write, deletes one avatar,
//! then erases themselves. After each step every table of the database, the photo store and
//! FAL's (the simulator's) file store are searched for what was deleted: its name, its prompts,
//! the Telegram id, each photo's hash and bytes. Nothing is found, yet every event is still in
//! the history, the audit is clean, and the read models rebuild to what they are.

use std::collections::BTreeSet;
use std::time::Duration;

use aggregates::{AvatarEvent, TrainedModel};
use aisha::bot::callbacks::Callback;
use aisha::store::{Database, HistoryEntry};
use bytes::Bytes;
use fake_telegram::FakeUser;
use object_store::ObjectStoreExt as _;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::bot::create_avatar;
use crate::steps::{button, photo, press, press_and_see, text, train};
use crate::support::s3::S3Bucket;
use crate::support::{postgres_url, spawn_app_with, TestApp, TestAppSettings};

/// A Telegram id long enough that a chance match in a timestamp or a count is impossible.
const ERIN: i64 = 918_273_645;

/// What one avatar left that must go with it.
struct Traces {
    avatar_id: Uuid,
    name: String,
    prompt: String,
    /// Stored photos: their hex SHA-256 and a slice of their bytes.
    photo_hashes: Vec<String>,
    photo_slices: Vec<Vec<u8>>,
    /// Every URL we or FAL recorded for its archive, model and images.
    urls: Vec<String>,
    events: usize,
}

impl Traces {
    fn texts(&self) -> Vec<String> {
        let mut t = vec![self.name.clone(), self.prompt.clone()];
        t.extend(self.photo_hashes.iter().cloned());
        t
    }
}

/// A JPEG that carries its location in EXIF, as phones send documents.
fn with_gps(photo: &[u8]) -> Bytes {
    let place = b"GPS 55 45 21 N 37 37 4 E Erin's flat";
    let mut exif = b"Exif\0\0II\x2A\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    exif.extend_from_slice(place);
    let mut out = photo[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&photo[2..]);
    Bytes::from(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every row of every table, as text: what a stolen backup would show.
async fn dump(db: &Database) -> String {
    let mut out = String::new();
    match db {
        Database::Postgres(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables
                  WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                out.push_str(&format!("\n== {table}\n{}", rows.join("\n")));
            }
        }
        Database::Sqlite(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                let list: Vec<String> = columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
                let rows: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT json_array({}) FROM \"{table}\"",
                    list.join(", ")
                ))
                .fetch_all(pool)
                .await
                .unwrap();
                out.push_str(&format!("\n== {table}\n{}", rows.join("\n")));
            }
        }
    }
    out
}

/// Whether `text` holds `number` as a value of its own, not as digits that happen to occur
/// inside a random id or a sealed blob (which, being random, sometimes hold any four digits).
fn holds_number(text: &str, number: i64) -> bool {
    let digits = number.to_string();
    let apart = |c: Option<char>| {
        c.is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/')))
    };
    text.match_indices(&digits).any(|(at, _)| {
        apart(text[..at].chars().next_back()) && apart(text[at + digits.len()..].chars().next())
    })
}

#[test]
fn a_number_is_found_as_a_value_and_not_inside_an_id() {
    assert!(holds_number(r#"{"owner":4242,"x":1}"#, 4242));
    assert!(holds_number(r#"["'telegram:4242'"]"#, 4242));
    assert!(holds_number(r#"["4242"]"#, 4242));
    assert!(!holds_number("7d0c4242-3d3c-4c59-9a53-3bd2b6f8a2c1", 4242));
    assert!(!holds_number(r#""_sealed":"q8+4242/Zx""#, 4242));
    assert!(!holds_number("42424", 4242));
}

/// Every object the photo store holds, by name with its bytes.
async fn photo_store_objects(app: &TestApp, bucket: Option<&S3Bucket>) -> Vec<(String, Vec<u8>)> {
    match bucket {
        Some(bucket) => {
            let raw = bucket.raw();
            let mut out = Vec::new();
            for name in bucket.object_names().await {
                let bytes = raw
                    .get(&object_store::path::Path::from(name.as_str()))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                out.push((name, bytes.to_vec()));
            }
            out
        }
        None => {
            let root = app.photos_dir();
            crate::support::files_under(&root)
                .into_iter()
                .map(|name| {
                    let bytes = std::fs::read(root.join(&name)).unwrap_or_default();
                    (name, bytes)
                })
                .collect()
        }
    }
}

fn feed_of(app: &TestApp) -> aisha::store::feed::Feed {
    aisha::store::feed::Feed::new(app.db.clone())
}

/// Waits until nothing is left to do: no pending work, every read model at the feed's head.
async fn settle(app: &TestApp) {
    for _ in 0..600 {
        let pending: i64 = {
            let mut conn = app.db.acquire().await.unwrap();
            conn.tx()
                .fetch_i64(
                    "SELECT count(*) FROM work_items WHERE status = 'pending'",
                    vec![],
                )
                .await
                .unwrap()
                .unwrap_or_default()
        };
        let behind = feed_of(app)
            .consumers(&[])
            .await
            .unwrap()
            .iter()
            .filter(|c| c.lag.events_behind > 0)
            .count();
        if pending == 0 && behind == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the application never settled");
}

/// Asserts that nothing of `needles` / `slices` is anywhere we or FAL keep data.
async fn assert_nowhere(
    app: &TestApp,
    bucket: Option<&S3Bucket>,
    step: &str,
    needles: &[String],
    slices: &[Vec<u8>],
) {
    let dump = dump(&app.db).await;
    for needle in needles {
        if let Some(at) = dump.find(needle.as_str()) {
            let from = dump[..at].rfind("\n== ").unwrap_or(0);
            let table = dump[from..].lines().nth(1).unwrap_or_default().to_owned();
            let start = at.saturating_sub(120);
            panic!(
                "{step}: `{needle}` is still in the database ({table}): …{}…",
                &dump[boundary_at_or_before(&dump, start)
                    ..boundary_at_or_after(&dump, (at + 120).min(dump.len()))]
            );
        }
    }
    for (name, bytes) in photo_store_objects(app, bucket).await {
        for needle in needles {
            assert!(
                !contains(&bytes, needle.as_bytes()) && !name.contains(needle.as_str()),
                "{step}: `{needle}` is in the photo store ({name})"
            );
        }
        for slice in slices {
            assert!(
                !contains(&bytes, slice),
                "{step}: a photo's bytes are in the photo store ({name})"
            );
        }
    }
    for (url, bytes) in app.sim.stored_files() {
        for slice in slices {
            assert!(
                !contains(&bytes, slice),
                "{step}: a photo's bytes are at FAL ({url})"
            );
        }
        for needle in needles {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{step}: `{needle}` is at FAL ({url})"
            );
        }
    }
}

async fn assert_gone(step: &str, urls: &[String]) {
    let http = reqwest::Client::new();
    for url in urls {
        let status = http.get(url).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 404, "{step}: {url} still answers {status}");
    }
}

/// Makes an avatar, uploads ten photos (the first as a document with its location), trains it
/// and generates one image with `prompt`; returns what it left behind.
async fn avatar_with_history(
    app: &TestApp,
    erin: &FakeUser,
    name: &str,
    seed: u8,
    prompt: &str,
) -> Traces {
    create_avatar(erin, "p", "f", name, "is created").await;
    let originals: Vec<Bytes> = (0..10).map(|n| photo(seed + n)).collect();
    erin.send_document(with_gps(&originals[0]), "IMG_0001.jpg", "image/jpeg");
    text(erin, "accepted: 1 of 10–20").await;
    let mut last = None;
    for (n, p) in originals.iter().enumerate().skip(1) {
        erin.send_photo(p.clone());
        last = Some(text(erin, &format!("accepted: {} of 10–20", n + 1)).await);
    }
    let last = last.unwrap();
    let ready = train(
        erin,
        &last,
        aggregates::TrainingPreset::Fast,
        "minutes",
        "is ready",
    )
    .await;
    let avatar_id = crate::steps::avatar_of(&button(&ready, "ge:"));

    let presets = press_and_see(erin, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        erin,
        &presets,
        &button(&presets, "gp:b:"),
        "Describe the image",
    )
    .await;
    let done = crate::steps::count_bot_texts(erin, "Done!");
    erin.send_text(prompt);
    erin.wait_until(|entries| {
        entries
            .iter()
            .filter(|e| matches!(e, fake_telegram::Entry::Bot(m) if m.text().is_some_and(|t| t.contains("Done!"))))
            .count()
            > done
    })
    .await
    .unwrap();

    let state = app.store.load(avatar_id).await.unwrap();
    let mut slices = Vec::new();
    for p in &state.photos {
        let stored = app.bot_photos().get(&p.storage_key).await.unwrap();
        let mid = stored.len() / 2;
        slices.push(stored[mid..mid + 256].to_vec());
        assert_eq!(hex::encode(Sha256::digest(&stored)), p.content_hash);
    }
    let history = app.store.history(avatar_id).await.unwrap();
    Traces {
        avatar_id,
        name: name.to_owned(),
        prompt: prompt.to_owned(),
        photo_hashes: state
            .photos
            .iter()
            .map(|p| p.content_hash.clone())
            .collect(),
        photo_slices: slices,
        urls: recorded_urls(&history),
        events: history.len(),
    }
}

/// Every file URL the avatar's history names: the archive, the model's files, the images.
fn recorded_urls(history: &[HistoryEntry]) -> Vec<String> {
    let mut urls = BTreeSet::new();
    for entry in history {
        match &entry.event {
            AvatarEvent::TrainingSubmitted {
                archive_url: Some(url),
                ..
            } => {
                urls.insert(url.clone());
            }
            AvatarEvent::TrainingCompleted { model, .. } => {
                if let TrainedModel::Portrait {
                    lora_file_url,
                    config_file_url,
                    ..
                } = model
                {
                    urls.insert(lora_file_url.clone());
                    urls.extend(config_file_url.clone());
                }
            }
            AvatarEvent::GenerationCompleted { images, .. } => {
                urls.extend(images.iter().map(|i| i.url.clone()));
            }
            _ => {}
        }
    }
    urls.into_iter().filter(|u| u.starts_with("http")).collect()
}

/// The history still tells every step, with the personal parts erased.
async fn assert_history_kept(app: &TestApp, traces: &Traces) {
    let history = app.store.history(traces.avatar_id).await.unwrap();
    // Every event recorded before, and the deletion.
    assert_eq!(
        history.len(),
        traces.events + 1,
        "every event is still there"
    );
    assert!(history
        .iter()
        .all(|e| !format!("{:?}", e.event).contains(&traces.name)));
    assert!(
        history.iter().any(|e| e.erased),
        "the personal fields read [erased]"
    );
    assert!(matches!(
        history.last().unwrap().event,
        AvatarEvent::AvatarDeleted { .. }
    ));
}

async fn assert_audit_clean(app: &TestApp) {
    let report = aisha::audit::verify(&feed_of(app)).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn erasure_proof(app: TestApp, bucket: Option<S3Bucket>) {
    let bucket = bucket.as_ref();
    let erin = app.user(ERIN, "Erin", "en");
    let first = avatar_with_history(
        &app,
        &erin,
        "Zanzibarella",
        10,
        "a lighthouse of marmalade 7731",
    )
    .await;
    let second = avatar_with_history(
        &app,
        &erin,
        "Quixotella",
        40,
        "windmills knitting scarves 4410",
    )
    .await;
    settle(&app).await;
    // The searches below can see: before any deletion they find what is there.
    let before = dump(&app.db).await;
    assert!(before.contains(&first.name) && before.contains(&ERIN.to_string()));
    assert!(
        before.contains(&first.prompt),
        "the generations read model lists the prompt"
    );
    // Sealed at rest even while the avatar lives: the events show no photo's hash.
    assert!(!before.contains(&first.photo_hashes[0]));
    assert!(
        photo_store_objects(&app, bucket)
            .await
            .iter()
            .any(|(_, bytes)| contains(bytes, &first.photo_slices[0])),
        "the photo store holds the first photo"
    );
    assert!(!first.urls.is_empty());

    // Delete the first avatar from its card.
    erin.send_command("/avatars");
    let gallery = text(&erin, "🖼").await;
    let card = press_and_see(
        &erin,
        &gallery,
        &Callback::Card(first.avatar_id).encode(),
        "Type:",
    )
    .await;
    let confirm = press_and_see(
        &erin,
        &card,
        &Callback::Delete(first.avatar_id).encode(),
        "",
    )
    .await;
    press(
        &erin,
        &confirm,
        &Callback::DeleteConfirm(first.avatar_id).encode(),
    )
    .await;
    settle(&app).await;

    let mut needles = first.texts();
    assert_nowhere(
        &app,
        bucket,
        "after deleting an avatar",
        &needles,
        &first.photo_slices,
    )
    .await;
    assert_gone("after deleting an avatar", &first.urls).await;
    assert_history_kept(&app, &first).await;
    assert_audit_clean(&app).await;
    // The other avatar is untouched.
    assert!(dump(&app.db).await.contains(&second.name));
    assert!(app
        .store
        .history(second.avatar_id)
        .await
        .unwrap()
        .iter()
        .all(|e| !e.erased));

    // Erase everything about Erin.
    erin.send_command("/forgetme");
    let ask = text(&erin, "Delete all my data?").await;
    press(&erin, &ask, &Callback::ForgetMeConfirm.encode()).await;
    text(&erin, "Your data is deleted").await;
    settle(&app).await;

    needles.extend(second.texts());
    needles.push(ERIN.to_string());
    let mut slices = first.photo_slices.clone();
    slices.extend(second.photo_slices.iter().cloned());
    assert_nowhere(&app, bucket, "after erasing the user", &needles, &slices).await;
    assert_gone("after erasing the user", &second.urls).await;
    assert_history_kept(&app, &first).await;
    assert_history_kept(&app, &second).await;
    assert_audit_clean(&app).await;

    // A rebuild of every read model from the events gives what is there now.
    aisha::audit::rebuild_all(&feed_of(&app)).await.unwrap();
    settle(&app).await;
    assert_nowhere(&app, bucket, "after rebuilding", &needles, &slices).await;
    assert_audit_clean(&app).await;
    app.shutdown().await;
}

fn settings(database_url: Option<String>, bucket: Option<&S3Bucket>) -> TestAppSettings {
    TestAppSettings {
        database_url,
        s3_photos: bucket.map(|b| b.photos("photos")),
        ..TestAppSettings::default()
    }
}

#[tokio::test]
async fn nothing_of_a_deleted_avatar_or_an_erased_user_remains_on_sqlite_with_a_folder() {
    erasure_proof(spawn_app_with(settings(None, None)).await, None).await;
}

#[tokio::test]
async fn nothing_of_a_deleted_avatar_or_an_erased_user_remains_on_sqlite_with_s3() {
    let bucket = S3Bucket::fresh().await;
    erasure_proof(
        spawn_app_with(settings(None, Some(&bucket))).await,
        Some(bucket),
    )
    .await;
}

#[sqlx::test(migrations = false)]
async fn nothing_of_a_deleted_avatar_or_an_erased_user_remains_on_postgres_with_a_folder(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(settings(Some(postgres_url(&pool)), None)).await;
    erasure_proof(app, None).await;
}

#[sqlx::test(migrations = false)]
async fn nothing_of_a_deleted_avatar_or_an_erased_user_remains_on_postgres_with_s3(
    pool: sqlx::PgPool,
) {
    let bucket = S3Bucket::fresh().await;
    let app = spawn_app_with(settings(Some(postgres_url(&pool)), Some(&bucket))).await;
    erasure_proof(app, Some(bucket)).await;
}

/// A database from before data keys: `avatars`' events rewritten in plain text, no keys stored.
async fn as_written_before_keys(
    db: &Database,
    store: &aisha::store::AvatarStore,
    avatars: &[Uuid],
) {
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();
    let cast = match db {
        Database::Postgres(_) => "::json",
        Database::Sqlite(_) => "",
    };
    for id in avatars {
        for entry in store.history(*id).await.unwrap() {
            let payload = serde_json::to_string(&entry.event).unwrap();
            let metadata = serde_json::json!({
                "actor": entry.actor, "correlation_id": entry.correlation_id, "command": entry.command,
            })
            .to_string();
            tx.execute(
                &format!(
                    "UPDATE events SET payload = $1{cast}, metadata = $2{cast}
                      WHERE aggregate_type = 'Avatar' AND aggregate_id = $3 AND sequence = $4"
                ),
                vec![
                    payload.into(),
                    metadata.into(),
                    id.to_string().into(),
                    (entry.sequence as i64).into(),
                ],
            )
            .await
            .unwrap();
        }
    }
    tx.execute("DELETE FROM data_keys", vec![]).await.unwrap();
    tx.execute("DELETE FROM snapshots", vec![]).await.unwrap();
}

async fn old_events_are_sealed_in_place(db: Database) {
    use crate::support::{by_owner, run, trained_avatar};
    let store = aisha::store::AvatarStore::new(db.clone());
    let live = trained_avatar(&store).await;
    let gone = trained_avatar(&store).await;
    run(&store, gone, by_owner(aggregates::Action::Delete)).await;
    as_written_before_keys(&db, &store, &[live, gone]).await;
    let old = dump(&db).await;
    let hash = crate::support::photo(1).content_hash;
    assert!(
        old.contains(&hash),
        "the old events hold photo hashes in plain text"
    );

    // Before the upgrade command runs, an old avatar's new events are sealed with a key made for
    // it then, and read back whole.
    let store = aisha::store::AvatarStore::new(db.clone());
    run(
        &store,
        live,
        by_owner(aggregates::Action::Rename {
            name: "Renamed after the upgrade".into(),
        }),
    )
    .await;
    let renamed = store.history(live).await.unwrap();
    assert!(
        renamed.iter().all(|e| !e.erased),
        "nothing recorded after the upgrade is erased"
    );
    assert!(matches!(&renamed.last().unwrap().event,
        AvatarEvent::AvatarRenamed { name, .. } if name.as_str() == "Renamed after the upgrade"));
    assert!(!dump(&db).await.contains("Renamed after the upgrade"));

    let sealed = aisha::store::seal_existing(&db).await.unwrap();
    assert!(sealed.events > 0);
    let now = dump(&db).await;
    assert!(
        !now.contains(&hash),
        "nothing personal is readable in any table"
    );
    assert!(!holds_number(&now, crate::support::OWNER));

    // The live avatar reads whole through its new key; the deleted one reads erased.
    let store = aisha::store::AvatarStore::new(db.clone());
    let state = store.load(live).await.unwrap();
    assert_eq!(state.photos[0].content_hash, hash);
    assert!(store.history(live).await.unwrap().iter().all(|e| !e.erased));
    let history = store.history(gone).await.unwrap();
    assert!(history.iter().any(|e| e.erased));
    assert!(matches!(
        history.last().unwrap().event,
        AvatarEvent::AvatarDeleted { .. }
    ));

    // Running it again finds nothing left to seal.
    assert_eq!(
        aisha::store::seal_existing(&db).await.unwrap(),
        aisha::store::SealedCounts::default()
    );
}

#[tokio::test]
async fn old_events_are_sealed_in_place_on_sqlite() {
    let (db, _dir) = crate::support::sqlite().await;
    old_events_are_sealed_in_place(db).await;
}

#[sqlx::test(migrations = false)]
async fn old_events_are_sealed_in_place_on_postgres(pool: sqlx::PgPool) {
    let db = Database::Postgres(pool);
    db.migrate().await.unwrap();
    old_events_are_sealed_in_place(db).await;
}

/// An erasure request by e-mail: the operator runs `aisha erase-user` beside the running bot.
#[tokio::test]
async fn an_operator_erases_a_user_with_the_cli_and_the_log_names_no_one() {
    let app = crate::support::spawn_app().await;
    let erin = app.user(ERIN, "Erin", "en");
    let (_, avatar) = crate::bot::trained_portrait(&erin, "Zanzibarella", 70).await;
    settle(&app).await;

    let refused =
        crate::projections::aisha_cli(&app.db, &["erase-user", &ERIN.to_string(), "--reason", " "])
            .await;
    assert!(!refused.status.success(), "a blank reason is refused");
    assert!(
        dump(&app.db).await.contains("Zanzibarella"),
        "and nothing was erased"
    );

    let out = crate::projections::aisha_cli(
        &app.db,
        &[
            "erase-user",
            &ERIN.to_string(),
            "--reason",
            "ticket 17",
            "--by",
            "alice",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("1 avatar(s) deleted"), "{stdout}");
    settle(&app).await;

    let dump = dump(&app.db).await;
    for needle in ["Zanzibarella", &ERIN.to_string()] {
        assert!(
            !dump.contains(needle),
            "`{needle}` remains after the erasure"
        );
    }
    let mut conn = app.db.acquire().await.unwrap();
    let logged = conn
        .tx()
        .fetch_all(
            "SELECT subject, operator, reason FROM operator_actions",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(logged.len(), 1);
    let subject: String = logged[0].get("subject").unwrap();
    assert!(
        stdout.contains(&subject),
        "the output names the pseudonym the log keeps"
    );
    assert_eq!(
        logged[0].get::<String>("operator").unwrap(),
        "operator:alice"
    );
    assert_eq!(logged[0].get::<String>("reason").unwrap(), "ticket 17");
    let history = app.store.history(avatar).await.unwrap();
    assert!(history.iter().any(|e| e.erased));
    drop(conn);

    // Again: nothing more to erase, and it says so.
    let again = crate::projections::aisha_cli(
        &app.db,
        &[
            "erase-user",
            &ERIN.to_string(),
            "--reason",
            "ticket 17",
            "--by",
            "alice",
        ],
    )
    .await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 avatar(s) deleted"));
    app.shutdown().await;
}

/// The nearest char boundary of `text` at or before `index` (`str::floor_char_boundary` is newer
/// than the toolchain we support).
fn boundary_at_or_before(text: &str, index: usize) -> usize {
    (0..=index.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// The nearest char boundary of `text` at or after `index`.
fn boundary_at_or_after(text: &str, index: usize) -> usize {
    (index.min(text.len())..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len())
}
