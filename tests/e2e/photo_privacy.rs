//! What users' photos give away, end to end: a photo sent with its location in EXIF is stored
//! without it, packed for FAL without it, and counts as a duplicate of the same photo with
//! other metadata. FAL fetches the archive from us by a signed URL that lasts until the training's
//! deadline, and the archive is deleted once the training is over; where we must upload it
//! instead (FAL cannot reach us), it is uploaded with a lifetime, after which FAL (here the
//! simulator) serves it no more and its trainers cannot read it.

use std::io::{Cursor, Read};
use std::sync::Arc;
use std::time::Duration;

use aggregates::ImageFormat;
use aisha::fal::sim::RequestKind;
use aisha::fal::types::QueueState;
use aisha::fal::{FalClient, FalClientConfig, FalSimulator, SimConfig};
use aisha::photos::{photo_key, strip_metadata, PhotoStore};
use bytes::Bytes;
use object_store::memory::InMemory;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::fal_forgets::until;
use crate::steps::{button, press_and_see, text};
use crate::support::spawn_app;

/// The place in the test photos' GPS tags; found anywhere after intake, the test fails.
pub(crate) const HOME: &[u8] = b"55 45 21 N, 37 37 4 E - Lenina 1, flat 12";

/// An EXIF block as a phone writes one: IFD0 with orientation, make, and a pointer to a GPS
/// IFD holding latitude, longitude (as rationals) and an area-information string.
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    fn entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    }
    let mut t = b"Exif\0\0II\x2A\x00".to_vec();
    let tiff = 6; // offsets below count from the TIFF header
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&3u16.to_le_bytes());
    let o = orientation.to_le_bytes();
    entry(&mut t, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(&mut t, 0x010F, 2, 4, *b"Ph1\0");
    let gps_ifd = 8 + 2 + 3 * 12 + 4;
    entry(&mut t, 0x8825, 4, 1, (gps_ifd as u32).to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len() - tiff, gps_ifd);
    let data = gps_ifd + 2 + 5 * 12 + 4;
    t.extend_from_slice(&5u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut t, 0x0002, 5, 3, (data as u32).to_le_bytes());
    entry(&mut t, 0x0003, 2, 2, *b"E\0\0\0");
    entry(&mut t, 0x0004, 5, 3, (data as u32 + 24).to_le_bytes());
    entry(
        &mut t,
        0x001C,
        7,
        HOME.len() as u32,
        (data as u32 + 48).to_le_bytes(),
    );
    t.extend_from_slice(&0u32.to_le_bytes());
    for v in [55u32, 45, 21, 37, 37, 4] {
        t.extend_from_slice(&v.to_le_bytes());
        t.extend_from_slice(&1u32.to_le_bytes());
    }
    t.extend_from_slice(HOME);
    t
}

/// `photo` (a JPEG) with an EXIF segment carrying its location, and a comment.
pub(crate) fn with_location(photo: &[u8], orientation: u16) -> Bytes {
    let segment = |marker: u8, payload: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    };
    let mut out = photo[..2].to_vec();
    out.extend(segment(0xE1, &exif_with_gps(orientation)));
    out.extend(segment(0xFE, HOME));
    out.extend_from_slice(&photo[2..]);
    Bytes::from(out)
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pixels(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes)
        .expect("decodes")
        .to_rgb8()
        .into_raw()
}

fn entries(zip: &[u8]) -> Vec<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("a zip");
    (0..archive.len())
        .map(|i| {
            let mut bytes = Vec::new();
            archive
                .by_index(i)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            bytes
        })
        .collect()
}

#[tokio::test]
async fn both_photo_stores_keep_photos_without_their_metadata() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = PhotoStore::local(dir.path()).expect("folder store");
    let memory = PhotoStore::with_object_store(Arc::new(InMemory::new()), "p", "memory://test");
    let plain = fake_telegram::sample_jpeg(640, 640, 5);
    let sent = with_location(&plain, 1);
    let rotated = with_location(&plain, 6);
    for store in [folder, memory] {
        let key = photo_key(Uuid::new_v4(), "p1", ImageFormat::Jpeg);
        store.put(&key, sent.clone()).await.expect("put");
        let kept = store.get(&key).await.expect("get");
        assert!(!contains(&kept, HOME), "{store}: the location was stored");
        assert_eq!(kept, plain, "{store}: only the metadata went");

        store.put(&key, rotated.clone()).await.expect("put");
        let kept = store.get(&key).await.expect("get");
        assert!(!contains(&kept, HOME) && !contains(&kept, b"Ph1"));
        assert_eq!(aisha::photos::metadata::orientation(&kept), Some(6));
        assert_eq!(pixels(&kept), pixels(&plain));

        // Not a photo: stored as given.
        store
            .put(&key, Bytes::from_static(b"not a photo"))
            .await
            .expect("put");
        assert_eq!(store.get(&key).await.unwrap(), &b"not a photo"[..]);
    }
}

#[tokio::test]
async fn a_photo_with_its_location_is_stored_and_trained_on_without_it() {
    let app = spawn_app().await;
    let anna = app.user(3003, "Анна", "ru");
    anna.send_command("/new");
    let types = text(&anna, "🎯").await;
    let genders = press_and_see(&anna, &types, "t:p", "👤").await;
    press_and_see(&anna, &genders, "g:p:f", "📝").await;
    anna.send_text("Дома");
    text(&anna, "создан").await;

    // Ten photos as uncompressed documents (what keeps EXIF in Telegram), one of them rotated.
    let originals: Vec<Bytes> = (0..10u8)
        .map(|n| fake_telegram::sample_jpeg(640, 640, 40 + n))
        .collect();
    let mut last = None;
    for (n, photo) in originals.iter().enumerate() {
        let orientation = if n == 3 { 6 } else { 1 };
        anna.send_document(
            with_location(photo, orientation),
            &format!("IMG_{n:04}.jpg"),
            "image/jpeg",
        );
        last = Some(text(&anna, &format!("Фото принято: {} из 10–20", n + 1)).await);
    }
    // The first photo again, with other metadata (a later edit in another app): a duplicate.
    let mut resaved = with_location(&originals[0], 1).to_vec();
    resaved.splice(2..2, [0xFF, 0xFE, 0x00, 0x07, b'e', b'd', b'i', b't', b'!']);
    assert!(strip_metadata(&resaved).is_ok());
    anna.send_document(Bytes::from(resaved), "IMG_0000 (edited).jpg", "image/jpeg");
    let duplicate = text(&anna, "Фото не принято").await;
    assert!(
        duplicate.text().unwrap().contains("это фото уже загружено"),
        "{duplicate:?}"
    );

    let last = last.expect("ten photos");
    // The training waits in FAL's queue while we look at what FAL is handed.
    app.sim.pause_jobs();
    let presets = press_and_see(&anna, &last, &button(&last, "tr:"), "🚀").await;
    press_and_see(&anna, &presets, &button(&presets, "ts:f:"), "3–15 минут").await;
    let submission = until("the training's submission", || async {
        app.sim
            .submissions()
            .into_iter()
            .find(|r| r.model_id() == Some("fal-ai/flux-lora-portrait-trainer"))
    })
    .await;
    let body: Value = submission.body.expect("a JSON body");
    let archive_url = body["images_data_url"].as_str().expect("archive URL");

    // FAL reads the archive from us, by a signed URL: nothing of the photos is uploaded to it.
    assert!(
        archive_url.starts_with(&format!("{}/fal-inputs/", app.http)),
        "{archive_url}"
    );
    for kind in [
        RequestKind::StorageInitiate,
        RequestKind::Upload,
        RequestKind::CdnUpload,
    ] {
        assert!(app.sim.requests_of(kind).is_empty(), "{kind:?}");
    }
    let http = reqwest::Client::new();
    let served = http.get(archive_url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let zip = served.bytes().await.unwrap();

    // The archive FAL is given: every entry without the location, each the recorded photo.
    let photos = entries(&zip);
    assert_eq!(photos.len(), 10);
    let avatar_id = crate::steps::avatar_of(&button(&last, "tr:"));
    let recorded = app.store.load(avatar_id).await.unwrap().photos;
    for (entry, photo) in photos.iter().zip(&recorded) {
        assert!(!contains(entry, HOME), "the location went to FAL");
        assert!(!contains(entry, b"Ph1"), "the camera went to FAL");
        // The archive checked the stored bytes against this hash: they are these bytes.
        assert_eq!(hex::encode(Sha256::digest(entry)), photo.content_hash);
        assert_eq!(entry.len() as u64, photo.byte_size);
    }
    for (entry, original) in photos.iter().zip(&originals) {
        assert_eq!(pixels(entry), pixels(original), "a pixel changed");
    }
    assert_eq!(
        aisha::photos::metadata::orientation(&photos[3]),
        Some(6),
        "the rotated photo still says how to turn it"
    );

    // The URL works only until the training's deadline, when we would cancel the training.
    let expires: i64 = reqwest::Url::parse(archive_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "expires")
        .and_then(|(_, v)| v.parse().ok())
        .expect("an expiry");
    let lifetime = expires - chrono::Utc::now().timestamp();
    let deadline = aisha::actors::ActorSettings::fast()
        .training_deadline
        .as_secs() as i64;
    assert!(
        lifetime <= deadline && lifetime > deadline - 45,
        "{lifetime}"
    );
    let forged = archive_url.replace("expires=", "expires=9");
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 404);

    // Once the training is over the archive is deleted: its URL answers 404, and FAL never
    // held a copy.
    app.sim.resume_jobs();
    text(&anna, "готов!").await;
    until("the archive's URL to answer 404", || async {
        (http.get(archive_url).send().await.unwrap().status() == 404).then_some(())
    })
    .await;
    assert!(
        !app.stored_photo_files().iter().any(|f| f.ends_with(".zip")),
        "{:?}",
        app.stored_photo_files()
    );
    assert!(app
        .sim
        .stored_files()
        .iter()
        .all(|(url, _)| !url.ends_with(".zip")));
    app.shutdown().await;
}

#[tokio::test]
async fn an_expired_archive_cannot_be_trained_on() {
    let sim = FalSimulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    let fal = FalClient::new(FalClientConfig::new(
        sim.queue_url(),
        sim.rest_url(),
        Some("key".to_owned()),
    ))
    .expect("client");
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("01.jpg", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, &fake_telegram::sample_jpeg(512, 512, 1)).unwrap();
    let zip = zip.finish().unwrap().into_inner();

    let url = fal
        .upload_expiring(
            zip,
            "application/zip",
            "photos.zip",
            Duration::from_secs(90),
        )
        .await
        .expect("upload");
    let expires = sim.file_expires_at(&url).flatten().expect("a lifetime");
    assert!(expires - chrono::Utc::now() <= chrono::Duration::seconds(90));
    sim.advance_storage_clock(Duration::from_secs(91));

    let submitted = fal
        .submit(
            "fal-ai/flux-lora-portrait-trainer",
            &json!({"images_data_url": url, "trigger_phrase": "PERSON_1"}),
            None,
        )
        .await
        .expect("FAL takes the request, and finds the archive gone later");
    for _ in 0..500 {
        let status = fal
            .status(&submitted.status_url, false)
            .await
            .expect("status");
        if status.status == QueueState::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = fal
        .result::<Value>(&submitted.response_url)
        .await
        .expect_err("no training without photos");
    assert_eq!(error.http_status(), Some(422), "{error}");
    assert!(error.to_string().contains("file not found"), "{error}");
}
