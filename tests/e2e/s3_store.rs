//! The photo store against a real S3-compatible server (moto's, started by `.ci/run`; see
//! `support::s3`): what the folder store's tests prove, and what only S3 does — a missing bucket
//! answers 404 like a missing key, access can be denied, listings come a page at a time, large
//! objects travel in pieces. Ends with the bot's whole story on `STORAGE_URL=s3://…`.

use std::time::Duration;

use aggregates::{AvatarStatus, ImageFormat, TrainingPreset};
use aisha::photos::{avatar_prefix, photo_key, PhotoStore, StorageError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::photo_privacy::{contains, with_location, HOME};
use crate::photos::{delete_prefix_scenario, noise, round_trip};
use crate::steps::{
    avatar_of, button, gallery_where, press, press_and_see, text, train, upload_album,
};
use crate::support::s3::S3Bucket;
use crate::support::{spawn_app_with, TestAppSettings};

/// The prefix the stores here keep their photos under, as a deployment's `STORAGE_URL` might.
const PREFIX: &str = "aisha/photos";

/// Waits until `check` holds, up to ten seconds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test]
async fn photos_round_trip_through_a_real_bucket_and_leave_nothing_behind() {
    let bucket = S3Bucket::fresh().await;
    round_trip(&bucket.photo_store(PREFIX)).await;
    assert_eq!(bucket.object_names().await, Vec::<String>::new());
}

#[tokio::test]
async fn an_avatar_prefix_is_deleted_by_whole_segments_and_nothing_else() {
    let bucket = S3Bucket::fresh().await;
    delete_prefix_scenario(&bucket.photo_store(PREFIX)).await;
    let left = bucket.object_names().await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left
        .iter()
        .all(|name| name.starts_with("aisha/photos/avatars/")));
}

#[tokio::test]
async fn a_deleted_photo_answers_not_found_at_its_address_too() {
    let bucket = S3Bucket::fresh().await;
    let store = bucket.photo_store(PREFIX);
    let key = photo_key(Uuid::new_v4(), "p1", ImageFormat::Jpeg);
    let photo = fake_telegram::sample_jpeg(640, 640, 3);
    store.put(&key, photo.clone()).await.expect("put");
    let object = format!("{PREFIX}/{key}");
    assert_eq!(bucket.status_of(&object).await, 200);

    store.delete(&key).await.expect("delete");
    assert_eq!(bucket.status_of(&object).await, 404);
    assert!(matches!(store.get(&key).await, Err(StorageError::NotFound(k)) if k == key));
    assert!(matches!(
        store.get_stream(&key).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(!store.exists(&key).await.expect("exists"));
    // S3 answers a delete of nothing with success, and so do we.
    store.delete(&key).await.expect("deleting twice is fine");
    assert_eq!(bucket.object_names().await, Vec::<String>::new());
}

#[tokio::test]
async fn photos_reach_the_bucket_without_their_location() {
    let bucket = S3Bucket::fresh().await;
    let store = bucket.photo_store(PREFIX);
    let plain = fake_telegram::sample_jpeg(640, 640, 5);
    let key = photo_key(Uuid::new_v4(), "p1", ImageFormat::Jpeg);
    store
        .put(&key, with_location(&plain, 1))
        .await
        .expect("put");
    let raw = bucket
        .raw()
        .get(&format!("{PREFIX}/{key}").as_str().into())
        .await
        .expect("the object is there")
        .bytes()
        .await
        .expect("its bytes");
    assert!(!contains(&raw, HOME), "the location reached the bucket");
    assert_eq!(raw, plain);
}

#[tokio::test]
async fn more_objects_than_one_listing_holds_are_all_deleted() {
    // S3 lists at most 1000 keys an answer and deletes at most 1000 in one request: a prefix
    // with more must be paged through, or the rest would stay behind unnoticed.
    let bucket = S3Bucket::fresh().await;
    let store = bucket.photo_store(PREFIX);
    let doomed = Uuid::new_v4();
    let kept = photo_key(Uuid::new_v4(), "p0", ImageFormat::Jpeg);
    store
        .put(&kept, Bytes::from_static(b"kept"))
        .await
        .expect("put");
    const MANY: usize = 1_050;
    futures::stream::iter(0..MANY)
        .map(|n| {
            let store = store.clone();
            async move {
                let key = photo_key(doomed, &format!("p{n:04}"), ImageFormat::Jpeg);
                store.put(&key, Bytes::from(format!("photo {n}"))).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("put them all");
    assert_eq!(bucket.object_names().await.len(), MANY + 1);

    let removed = store
        .delete_prefix(&avatar_prefix(doomed))
        .await
        .expect("delete prefix");
    assert_eq!(removed, MANY);
    assert_eq!(
        bucket.object_names().await,
        vec![format!("{PREFIX}/{kept}")]
    );
}

#[tokio::test]
async fn a_large_object_is_stored_whole_and_read_back_in_pieces() {
    // Larger than any photo we accept (20 MB), in one request: S3 takes up to 5 GiB so.
    let bucket = S3Bucket::fresh().await;
    let store = bucket.photo_store(PREFIX);
    let key = "avatars/large/object.bin";
    let big = Bytes::from(noise(24 * 1024 * 1024 + 7));
    store.put(key, big.clone()).await.expect("put");

    let meta = bucket
        .raw()
        .head(&format!("{PREFIX}/{key}").as_str().into())
        .await
        .expect("head");
    assert_eq!(meta.size, big.len() as u64);
    let mut pieces = 0;
    let mut hash = Sha256::new();
    let mut stream = store.get_stream(key).await.expect("stream");
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("a piece");
        assert!(piece.len() < big.len(), "read whole, not streamed");
        hash.update(&piece);
        pieces += 1;
    }
    assert!(pieces > 1, "{pieces} pieces");
    assert_eq!(hash.finalize(), Sha256::digest(&big));
    store.delete(key).await.expect("delete");
    assert_eq!(bucket.object_names().await, Vec::<String>::new());
}

#[tokio::test]
async fn keys_at_the_edges_of_the_alphabet_arrive_verbatim_and_odd_ones_never_leave() {
    let bucket = S3Bucket::fresh().await;
    // A prefix with a dot and a dash, as an operator might choose.
    let store = bucket.photo_store("aisha.prod/photos-v2");
    let long = format!("avatars/{}/p.jpg", "x".repeat(400));
    let edgy = [
        "avatars/A-b_c.D/x.y.z.jpg",
        "avatars/-dash/_under_.webp",
        "avatars/0/9",
        "AVATARS/UPPER/CASE.PNG",
        long.as_str(),
    ];
    for key in edgy {
        let bytes = Bytes::from(format!("bytes of {key}"));
        store.put(key, bytes.clone()).await.expect(key);
        assert_eq!(store.get(key).await.expect(key), bytes, "{key}");
        assert!(store.exists(key).await.expect(key), "{key}");
    }
    let mut expected: Vec<String> = edgy
        .iter()
        .map(|key| format!("aisha.prod/photos-v2/{key}"))
        .collect();
    expected.sort();
    assert_eq!(bucket.object_names().await, expected);

    // What URL encoding or form decoding could turn into another key is refused before any
    // request: `+` read as a space, `%2F` as a slash, `?` and `#` cutting the path short.
    for odd in [
        "avatars/a b.jpg",
        "avatars/a+b.jpg",
        "avatars/a%2Fb.jpg",
        "avatars/a?b.jpg",
        "avatars/a#b.jpg",
        "avatars/фото.jpg",
        "avatars/a\\b.jpg",
        "avatars/../escape.jpg",
    ] {
        let err = store.put(odd, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidKey { .. }),
            "{odd}: {err}"
        );
        assert!(matches!(
            store.delete(odd).await,
            Err(StorageError::InvalidKey { .. })
        ));
    }
    assert_eq!(bucket.object_names().await, expected);

    for key in edgy {
        store.delete(key).await.expect(key);
    }
    assert_eq!(bucket.object_names().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_bucket_is_an_error_never_a_missing_photo() {
    // S3 answers 404 for a bucket that does not exist just as for a key: a deletion against a
    // mistyped bucket must fail loudly, not pass for done while the photos sit elsewhere.
    let store = S3Bucket::missing().photo_store(PREFIX);
    let key = photo_key(Uuid::new_v4(), "p1", ImageFormat::Jpeg);
    let remote = |what: &str, result: Result<(), StorageError>| match result {
        Err(StorageError::Remote { message, .. }) => {
            assert!(
                message.contains("bucket does not exist"),
                "{what}: {message}"
            )
        }
        other => panic!("{what}: {other:?}"),
    };
    remote("put", store.put(&key, Bytes::from_static(b"x")).await);
    remote("get", store.get(&key).await.map(drop));
    remote("delete", store.delete(&key).await);
    remote(
        "delete_prefix",
        store.delete_prefix("avatars").await.map(drop),
    );
}

#[tokio::test]
async fn access_denied_is_an_error_never_a_missing_photo() {
    // Real S3 answers 403 where moto has no policies to refuse with: a bucket policy, wrong
    // keys, or a GET of a missing key without s3:ListBucket. A stand-in server answers 403
    // to everything, as S3 does, so the store must never read it as "not there".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let denied = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message></Error>",
        )
    });
    let server = tokio::spawn(async move { axum::serve(listener, denied).await });
    let connection = aisha::photos::S3Connection {
        endpoint,
        region: "us-east-1".into(),
        access_key_id: "not-allowed".into(),
        secret_access_key: "not-allowed-secret".into(),
    };
    let store = PhotoStore::open("s3://aisha-denied/photos", Some(&connection)).expect("open");
    let key = photo_key(Uuid::new_v4(), "p1", ImageFormat::Jpeg);
    let denied = |what: &str, result: Result<(), StorageError>| match result {
        Err(StorageError::Remote { message, .. }) => {
            assert!(message.contains("AccessDenied"), "{what}: {message}")
        }
        other => panic!("{what}: {other:?}"),
    };
    denied("put", store.put(&key, Bytes::from_static(b"x")).await);
    denied("get", store.get(&key).await.map(drop));
    denied("delete", store.delete(&key).await);
    denied(
        "delete_prefix",
        store.delete_prefix("avatars").await.map(drop),
    );
    assert!(
        store.exists(&key).await.is_err(),
        "a denied HEAD is not an absent photo"
    );
    server.abort();
}

#[tokio::test]
async fn the_bot_on_an_s3_store_keeps_photos_there_and_deleting_the_avatar_removes_them() {
    // Given the whole application with STORAGE_URL=s3://BUCKET/aisha
    let bucket = S3Bucket::fresh().await;
    let app = spawn_app_with(TestAppSettings {
        s3_photos: Some(bucket.photos("aisha")),
        ..TestAppSettings::default()
    })
    .await;
    assert!(
        app.stored_photo_files().is_empty(),
        "nothing goes to the folder"
    );
    let user = app.user(5005, "Sam", "en");

    // When Sam uploads ten photos and trains
    user.send_command("/new");
    let types = text(&user, "avatar type").await;
    let genders = press_and_see(&user, &types, "t:p", "gender").await;
    press_and_see(&user, &genders, "g:p:m", "name").await;
    user.send_text("Sam on S3");
    let created = text(&user, "is created").await;
    assert!(
        created
            .text()
            .unwrap()
            .contains("they are deleted 30 days after it succeeds"),
        "{created:?}"
    );
    let album = upload_album(&user, 60, "Uploaded: 10 of 10–20").await;
    let avatar = avatar_of(&button(&album, "tr:"));
    let stored = bucket.object_names().await;
    assert_eq!(stored.len(), 10, "{stored:?}");
    let under = format!("aisha/avatars/{avatar}/");
    assert!(
        stored.iter().all(|name| name.starts_with(&under)),
        "{stored:?}"
    );
    train(
        &user,
        &album,
        TrainingPreset::Fast,
        "3–15 minutes",
        "ready!",
    )
    .await;
    // Training reads the photos (and may add a copy of what FAL made): every photo is there.
    let stored_after_training = bucket.object_names().await;
    assert!(
        stored
            .iter()
            .all(|name| stored_after_training.contains(name)),
        "{stored_after_training:?}"
    );

    // And deletes the avatar
    let gallery = gallery_where(&user, |page| page.contains("Sam on S3")).await;
    let card_button = gallery
        .buttons()
        .find(|b| b.text.contains("Sam on S3"))
        .and_then(|b| b.callback_data.clone())
        .expect("a card button");
    let card = press_and_see(&user, &gallery, &card_button, "Type:").await;
    let confirm = press_and_see(&user, &card, &button(&card, "d:"), "Confirm deletion").await;
    press(&user, &confirm, &format!("avatar_delete_confirm:{avatar}")).await;

    // Then the bucket holds nothing of it, and each photo's address answers 404
    until("the photos leaving the bucket", || async {
        bucket.object_names().await.is_empty()
    })
    .await;
    for name in &stored_after_training {
        assert_eq!(bucket.status_of(name).await, 404, "{name}");
    }
    assert_eq!(
        app.store.load(avatar).await.unwrap().status,
        AvatarStatus::Deleted
    );
    app.shutdown().await;
}
