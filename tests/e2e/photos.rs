//! Photo intake, the photo store and the training archive, on real encoded images.
//!
//! The folder backend is exercised on disk and the object-store code path on `object_store`'s
//! in-memory store. No S3 server is reachable here, so for S3 only the URL parsing and the client
//! configuration are tested; nothing below talks to a bucket.

use std::io::{Cursor, Read, Write};
use std::sync::Arc;

use aggregates::avatar::MIN_PHOTO_SIDE;
use aggregates::{ImageFormat, PhotoMeta};
use aisha::photos::check::{MAX_PHOTO_BYTES, MAX_SIDE};
use aisha::photos::{
    avatar_prefix, inspect, inspect_in_background, photo_key, verify_archive, ArchiveError,
    PhotoError, PhotoStore, StorageError, StorageLocation, TrainingArchive,
};
use bytes::Bytes;
use futures::TryStreamExt;
use image::{DynamicImage, ImageBuffer, Rgb};
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use uuid::Uuid;

use crate::support::files_under;

// ---------------------------------------------------------------- test images

/// A real image with some structure, so that encoders produce realistic data.
fn encoded(width: u32, height: u32, format: image::ImageFormat, seed: u8) -> Vec<u8> {
    let img = ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([
            (x as u8).wrapping_add(seed),
            (y as u8).wrapping_mul(3),
            ((x ^ y) as u8).wrapping_add(seed),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .expect("encode test image");
    out.into_inner()
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encoded(width, height, image::ImageFormat::Jpeg, 7)
}

/// A GIF89a with a 512×512 logical screen and one 1×1 frame. The build carries no GIF encoder
/// (the service refuses GIFs, so it has no business encoding them); the bytes follow the spec.
fn gif_512() -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&512u16.to_le_bytes());
    gif.extend_from_slice(&512u16.to_le_bytes());
    gif.extend_from_slice(&[0x80, 0, 0]); // global colour table of 2 entries
    gif.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // image descriptor, 1×1
    gif.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00]); // LZW data for one pixel
    gif.push(0x3B);
    gif
}

/// A 24-bit 512×512 BMP, written by hand for the same reason as [`gif_512`].
fn bmp_512() -> Vec<u8> {
    let (w, h) = (512u32, 512u32);
    let row = w * 3; // already a multiple of 4
    let pixels = row * h;
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&(54 + pixels).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&(w as i32).to_le_bytes());
    bmp.extend_from_slice(&(h as i32).to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]); // no compression
    bmp.extend_from_slice(&pixels.to_le_bytes());
    bmp.extend_from_slice(&[0; 16]);
    bmp.extend((0..pixels).map(|i| (i % 251) as u8));
    bmp
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A well-formed PNG whose IHDR claims `width`×`height` but whose pixel data is a few bytes: the
/// shape of a decompression bomb (or of a header that lies).
pub(crate) fn png_claiming(width: u32, height: u32, bit_depth: u8, colour_type: u8) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, colour_type, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

/// Deterministic noise (no RNG needed): not an image by any magic number.
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------- intake

#[test]
fn accepts_jpeg_png_and_webp_at_the_minimum_size() {
    for (format, ours) in [
        (image::ImageFormat::Jpeg, ImageFormat::Jpeg),
        (image::ImageFormat::Png, ImageFormat::Png),
        (image::ImageFormat::WebP, ImageFormat::Webp),
    ] {
        let bytes = encoded(MIN_PHOTO_SIDE, MIN_PHOTO_SIDE, format, 1);
        let photo = inspect(&bytes).unwrap_or_else(|e| panic!("{format:?} refused: {e}"));
        assert_eq!((photo.width, photo.height, photo.format), (512, 512, ours));
        assert_eq!(photo.byte_size, bytes.len() as u64);
        assert_eq!(photo.content_hash, hex::encode(Sha256::digest(&bytes)));
    }
}

#[test]
fn the_format_comes_from_the_bytes_and_feeds_the_photo_metadata() {
    let bytes = encoded(600, 700, image::ImageFormat::Png, 3);
    let photo = inspect(&bytes).expect("a PNG");
    let avatar = Uuid::new_v4();
    let key = photo_key(avatar, "tg-AQADx", photo.format);
    assert_eq!(key, format!("avatars/{avatar}/tg-AQADx.png"));
    let meta = photo.photo_meta("tg-AQADx", key.clone());
    assert_eq!(
        meta,
        PhotoMeta {
            photo_id: "tg-AQADx".into(),
            content_hash: photo.content_hash.clone(),
            byte_size: bytes.len() as u64,
            width: 600,
            height: 700,
            format: ImageFormat::Png,
            storage_key: key,
        }
    );
}

#[test]
fn accepts_a_large_camera_photo() {
    let bytes = jpeg(4000, 3000);
    let photo = inspect(&bytes).expect("a 12-megapixel JPEG");
    assert_eq!((photo.width, photo.height), (4000, 3000));
}

#[test]
fn refuses_a_photo_below_the_minimum_side() {
    assert_eq!(
        inspect(&jpeg(511, 800)),
        Err(PhotoError::TooSmall {
            width: 511,
            height: 800,
            min: MIN_PHOTO_SIDE
        })
    );
}

#[test]
fn refuses_gif_bmp_and_tiff_by_name() {
    assert_eq!(
        inspect(&gif_512()),
        Err(PhotoError::UnsupportedFormat("GIF".into()))
    );
    assert_eq!(
        inspect(&bmp_512()),
        Err(PhotoError::UnsupportedFormat("BMP".into()))
    );
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&noise(64));
    assert_eq!(
        inspect(&tiff),
        Err(PhotoError::UnsupportedFormat("TIFF".into()))
    );
    let message = inspect(&gif_512()).unwrap_err().to_string();
    assert!(
        message.contains("GIF") && message.contains("JPEG"),
        "{message}"
    );
}

#[test]
fn refuses_things_that_are_not_images() {
    assert_eq!(inspect(&noise(4096)), Err(PhotoError::NotAnImage));
    assert_eq!(
        inspect(b"%PDF-1.7 not a photo"),
        Err(PhotoError::NotAnImage)
    );
    assert_eq!(inspect(&[]), Err(PhotoError::Empty));
}

#[test]
fn refuses_a_file_over_the_telegram_limit_without_decoding_it() {
    // A real JPEG header followed by padding: refused on size alone.
    let mut big = jpeg(512, 512);
    big.resize(21 * 1024 * 1024, 0);
    assert_eq!(
        inspect(&big),
        Err(PhotoError::TooLarge {
            bytes: 21 * 1024 * 1024,
            max: MAX_PHOTO_BYTES
        })
    );
}

#[test]
fn refuses_a_truncated_jpeg_whose_header_is_intact() {
    let bytes = jpeg(800, 800);
    for keep in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
        match inspect(&bytes[..keep]) {
            Err(PhotoError::Corrupt(_)) => {}
            other => panic!("JPEG cut at {keep} of {}: {other:?}", bytes.len()),
        }
    }
}

#[test]
fn refuses_truncated_png_and_webp() {
    let png = encoded(600, 600, image::ImageFormat::Png, 5);
    assert!(matches!(
        inspect(&png[..png.len() / 2]),
        Err(PhotoError::Corrupt(_))
    ));
    let webp = encoded(600, 600, image::ImageFormat::WebP, 5);
    assert!(matches!(
        inspect(&webp[..webp.len() / 2]),
        Err(PhotoError::Corrupt(_))
    ));
}

#[test]
fn refuses_a_decompression_bomb_from_its_header() {
    let bomb = png_claiming(100_000, 100_000, 8, 2);
    assert!(bomb.len() < 100, "the bomb itself is tiny");
    assert_eq!(
        inspect(&bomb),
        Err(PhotoError::TooManyPixels {
            width: 100_000,
            height: 100_000
        })
    );
    assert_eq!(
        inspect(&png_claiming(MAX_SIDE + 1, 600, 8, 2)),
        Err(PhotoError::TooManyPixels {
            width: MAX_SIDE + 1,
            height: 600
        })
    );
}

#[test]
fn a_header_within_the_pixel_cap_still_cannot_exceed_the_decode_budget() {
    // 7000×7000 is under 50 megapixels, but 16-bit RGBA needs ~392 MB: the decoder's limits
    // refuse it before the buffer is allocated.
    assert_eq!(
        inspect(&png_claiming(7000, 7000, 16, 6)),
        Err(PhotoError::TooManyPixels {
            width: 7000,
            height: 7000
        })
    );
    // Small enough to allocate, but the data is not there: the full decode notices.
    assert!(matches!(
        inspect(&png_claiming(1000, 1000, 8, 2)),
        Err(PhotoError::Corrupt(_))
    ));
}

#[tokio::test]
async fn inspection_runs_off_the_async_runtime_too() {
    let bytes = Bytes::from(jpeg(512, 512));
    let photo = inspect_in_background(bytes.clone()).await.expect("valid");
    assert_eq!(photo, inspect(&bytes).expect("valid"));
}

// ---------------------------------------------------------------- the folder store

fn folder_store() -> (PhotoStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PhotoStore::from_url(&format!("file://{}", dir.path().join("photos").display()))
        .expect("open");
    (store, dir)
}

#[tokio::test]
async fn folder_store_creates_its_folder_and_round_trips() {
    let (store, dir) = folder_store();
    assert!(dir.path().join("photos").is_dir());
    round_trip(&store).await;
}

#[tokio::test]
async fn folder_store_deletes_an_avatar_prefix_and_nothing_else() {
    let (store, dir) = folder_store();
    delete_prefix_scenario(&store).await;
    let left = files_under(&dir.path().join("photos"));
    assert_eq!(left.len(), 2, "{left:?}");
}

#[tokio::test]
async fn folder_store_refuses_keys_that_escape_it() {
    let (store, dir) = folder_store();
    for key in [
        "../escape.jpg",
        "avatars/../../escape.jpg",
        "/tmp/escape.jpg",
        "avatars/./x.jpg",
        "avatars//x.jpg",
    ] {
        let err = store.put(key, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidKey { .. }),
            "{key}: {err}"
        );
        assert!(matches!(
            store.get(key).await,
            Err(StorageError::InvalidKey { .. })
        ));
        assert!(matches!(
            store.delete(key).await,
            Err(StorageError::InvalidKey { .. })
        ));
    }
    assert!(matches!(
        store.delete_prefix("..").await,
        Err(StorageError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.delete_prefix("").await,
        Err(StorageError::InvalidKey { .. })
    ));
    assert!(!dir.path().join("escape.jpg").exists());
    assert!(files_under(dir.path()).is_empty());
}

#[tokio::test]
async fn folder_writes_are_atomic_under_concurrent_readers() {
    let (store, dir) = folder_store();
    let key = "avatars/atomic/photo.jpg";
    let a = Bytes::from(vec![b'a'; 3 * 1024 * 1024]);
    let b = Bytes::from(vec![b'b'; 2 * 1024 * 1024 + 17]);
    store.put(key, a.clone()).await.expect("first write");

    let writer = {
        let (store, a, b) = (store.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            for round in 0..40 {
                let next = if round % 2 == 0 { b.clone() } else { a.clone() };
                store.put(key, next).await.expect("overwrite");
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, a, b) = (store.clone(), a.clone(), b.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..60 {
                let seen = store.get(key).await.expect("the key never disappears");
                assert!(
                    seen == a || seen == b,
                    "a reader saw a torn file of {} bytes",
                    seen.len()
                );
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    writer.await.expect("writer");
    for reader in readers {
        assert_eq!(reader.await.expect("reader"), 60);
    }
    // No temporary file is left beside the final one.
    assert_eq!(
        files_under(&dir.path().join("photos")),
        vec!["avatars/atomic/photo.jpg".to_owned()]
    );
}

#[tokio::test]
async fn a_failed_folder_write_leaves_nothing_under_the_final_name() {
    let (store, dir) = folder_store();
    // A file where the key needs a folder: the write must fail cleanly.
    store
        .put("avatars/blocker", Bytes::from_static(b"x"))
        .await
        .expect("put");
    let err = store
        .put("avatars/blocker/photo.jpg", Bytes::from_static(b"data"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(!store
        .exists("avatars/blocker/photo.jpg")
        .await
        .unwrap_or(true));
    assert_eq!(
        files_under(&dir.path().join("photos")),
        vec!["avatars/blocker".to_owned()]
    );
}

#[tokio::test]
async fn unsupported_storage_urls_are_refused() {
    assert!(
        matches!(PhotoStore::from_url("ftp://host/photos"), Err(StorageError::UnsupportedUrl(s)) if s == "ftp")
    );
    assert!(matches!(
        PhotoStore::from_url("./data/photos"),
        Err(StorageError::UnsupportedUrl(_))
    ));
}

// ---------------------------------------------------------------- the object-store code path

fn memory_store(prefix: &str) -> (PhotoStore, Arc<InMemory>) {
    let memory = Arc::new(InMemory::new());
    let store = PhotoStore::with_object_store(memory.clone(), prefix, "memory://test");
    (store, memory)
}

async fn object_names(memory: &InMemory) -> Vec<String> {
    let mut names: Vec<String> = memory
        .list(None)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("list");
    names.sort();
    names
}

#[tokio::test]
async fn object_store_backend_round_trips_under_its_prefix() {
    let (store, memory) = memory_store("aisha/photos/");
    round_trip(&store).await;
    store
        .put("avatars/x/kept.png", Bytes::from_static(b"png"))
        .await
        .expect("put");
    assert_eq!(
        object_names(&memory).await,
        vec!["aisha/photos/avatars/x/kept.png".to_owned()]
    );
}

#[tokio::test]
async fn object_store_backend_deletes_a_prefix_by_whole_segments() {
    let (store, memory) = memory_store("");
    delete_prefix_scenario(&store).await;
    assert_eq!(object_names(&memory).await.len(), 2);
}

// ---------------------------------------------------------------- S3 configuration only

#[test]
fn s3_urls_parse_into_bucket_and_prefix() {
    assert_eq!(
        StorageLocation::parse("s3://aisha-photos/prod/photos").expect("parse"),
        StorageLocation::S3 {
            bucket: "aisha-photos".into(),
            prefix: "prod/photos".into()
        }
    );
    assert_eq!(
        StorageLocation::parse("s3://aisha-photos")
            .expect("parse")
            .to_string(),
        "s3://aisha-photos"
    );
    assert!(matches!(
        StorageLocation::parse("s3://Bad_Bucket/x"),
        Err(StorageError::InvalidUrl(_))
    ));
    assert!(matches!(
        StorageLocation::parse("s3://bucket/../x"),
        Err(StorageError::InvalidKey { .. })
    ));
}

#[test]
fn s3_client_builds_from_explicit_settings_and_never_shows_the_secret() {
    // The settings `AmazonS3Builder::from_env` would read from AWS_*; no request is made.
    let builder = AmazonS3Builder::new()
        .with_access_key_id("AKIDEXAMPLE")
        .with_secret_access_key("very-secret-value")
        .with_region("eu-central-1")
        .with_endpoint("http://127.0.0.1:9000")
        .with_allow_http(true);
    let store = PhotoStore::s3(builder, "aisha-photos", "/prod/photos/").expect("client builds");
    assert_eq!(store.to_string(), "s3://aisha-photos/prod/photos");
    let shown = format!("{store:?} {store}");
    assert!(
        !shown.contains("very-secret-value") && !shown.contains("AKIDEXAMPLE"),
        "{shown}"
    );
    assert!(matches!(
        PhotoStore::s3(AmazonS3Builder::new(), "aisha-photos", "a/../b"),
        Err(StorageError::InvalidKey { .. })
    ));
}

// ---------------------------------------------------------------- shared store scenarios

pub(crate) async fn round_trip(store: &PhotoStore) {
    let avatar = Uuid::new_v4();
    let key = photo_key(avatar, "p1", ImageFormat::Jpeg);
    let bytes = Bytes::from(jpeg(512, 512));

    assert!(!store.exists(&key).await.expect("exists"));
    assert!(matches!(store.get(&key).await, Err(StorageError::NotFound(k)) if k == key));
    assert!(matches!(
        store.get_stream(&key).await,
        Err(StorageError::NotFound(_))
    ));

    store.put(&key, bytes.clone()).await.expect("put");
    assert!(store.exists(&key).await.expect("exists"));
    assert_eq!(store.get(&key).await.expect("get"), bytes);

    // Bigger than one read chunk, so the stream really has several pieces.
    let big_key = photo_key(avatar, "p2", ImageFormat::Png);
    let big = Bytes::from(noise(300 * 1024));
    store.put(&big_key, big.clone()).await.expect("put big");
    let chunks: Vec<Bytes> = store
        .get_stream(&big_key)
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("chunks");
    assert_eq!(chunks.concat(), big.to_vec());

    store
        .put(&key, Bytes::from_static(b"replaced"))
        .await
        .expect("overwrite");
    assert_eq!(
        store.get(&key).await.expect("get"),
        Bytes::from_static(b"replaced")
    );

    store.delete(&key).await.expect("delete");
    assert!(!store.exists(&key).await.expect("exists"));
    store.delete(&key).await.expect("deleting twice is fine");
    store.delete(&big_key).await.expect("delete big");
}

pub(crate) async fn delete_prefix_scenario(store: &PhotoStore) {
    let doomed = Uuid::new_v4();
    let kept = Uuid::new_v4();
    for n in 0..3 {
        store
            .put(
                &photo_key(doomed, &format!("p{n}"), ImageFormat::Jpeg),
                Bytes::from_static(b"x"),
            )
            .await
            .expect("put");
    }
    store
        .put(
            &photo_key(kept, "p0", ImageFormat::Jpeg),
            Bytes::from_static(b"x"),
        )
        .await
        .expect("put");
    // Shares the string prefix but not the folder: must survive.
    let neighbour = format!("{}-other/p0.jpg", avatar_prefix(doomed));
    store
        .put(&neighbour, Bytes::from_static(b"x"))
        .await
        .expect("put");

    assert_eq!(
        store
            .delete_prefix(&avatar_prefix(doomed))
            .await
            .expect("delete prefix"),
        3
    );
    assert!(!store
        .exists(&photo_key(doomed, "p0", ImageFormat::Jpeg))
        .await
        .expect("exists"));
    assert!(store
        .exists(&photo_key(kept, "p0", ImageFormat::Jpeg))
        .await
        .expect("exists"));
    assert!(store.exists(&neighbour).await.expect("exists"));
    // Deleting it again finds nothing and is not an error.
    assert_eq!(
        store
            .delete_prefix(&format!("{}/", avatar_prefix(doomed)))
            .await
            .expect("again"),
        0
    );
}

// ---------------------------------------------------------------- the training archive

/// Twelve photos of mixed formats, inspected and stored as the bot would.
async fn twelve_photos(store: &PhotoStore, avatar: Uuid) -> (Vec<PhotoMeta>, Vec<Vec<u8>>) {
    let formats = [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::WebP,
    ];
    let mut metas = Vec::new();
    let mut originals = Vec::new();
    for n in 0..12u8 {
        let bytes = encoded(512 + u32::from(n) * 8, 600, formats[usize::from(n) % 3], n);
        let checked = inspect(&bytes).expect("valid test photo");
        let id = format!("photo-{n}");
        let key = photo_key(avatar, &id, checked.format);
        store
            .put(&key, Bytes::from(bytes.clone()))
            .await
            .expect("put");
        metas.push(checked.photo_meta(id, key));
        originals.push(bytes);
    }
    (metas, originals)
}

#[tokio::test]
async fn packs_twelve_stored_photos_into_a_verified_archive() {
    let (store, dir) = folder_store();
    let avatar = Uuid::new_v4();
    let (photos, originals) = twelve_photos(&store, avatar).await;

    let archive = TrainingArchive::build_in(&store, &photos, dir.path())
        .await
        .expect("archive");
    assert_eq!(archive.photo_count(), 12);
    assert_eq!(
        archive.byte_size(),
        std::fs::metadata(archive.path()).expect("file").len()
    );
    assert_eq!(verify_archive(archive.path()).expect("verifies"), 12);

    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(archive.path()).expect("open")).expect("zip");
    for (index, original) in originals.iter().enumerate() {
        let mut entry = zip.by_index(index).expect("entry");
        let ext = photos[index].format.extension();
        assert_eq!(entry.name(), format!("{:02}.{ext}", index + 1));
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read entry");
        assert_eq!(
            &content,
            original,
            "entry {} differs from the stored photo",
            entry.name()
        );
    }
    let names: Vec<&str> = zip.file_names().collect();
    assert!(
        names.contains(&"01.jpg") && names.contains(&"02.png") && names.contains(&"03.webp"),
        "{names:?}"
    );

    // The same bytes, read whole and streamed, as an uploader would.
    let whole = archive.bytes().await.expect("bytes");
    let streamed: Vec<Bytes> = archive
        .stream()
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("chunks");
    assert_eq!(streamed.concat(), whole.to_vec());

    let path = archive.path().to_path_buf();
    drop(archive);
    assert!(!path.exists(), "the archive file outlived its handle");
}

#[tokio::test]
async fn packs_from_the_object_store_backend_as_well() {
    let (store, _memory) = memory_store("bucket-prefix");
    let (photos, _) = twelve_photos(&store, Uuid::new_v4()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = TrainingArchive::build_in(&store, &photos, dir.path())
        .await
        .expect("archive");
    assert_eq!(verify_archive(archive.path()).expect("verifies"), 12);
}

#[tokio::test]
async fn a_missing_photo_fails_the_archive_and_leaves_no_file() {
    let (store, dir) = folder_store();
    let avatar = Uuid::new_v4();
    let (photos, _) = twelve_photos(&store, avatar).await;
    store.delete(&photos[5].storage_key).await.expect("delete");
    let out = dir.path().join("archives");
    std::fs::create_dir(&out).expect("dir");
    let err = TrainingArchive::build_in(&store, &photos, &out)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Storage(StorageError::NotFound(k)) if *k == photos[5].storage_key),
        "{err}"
    );
    assert!(
        files_under(&out).is_empty(),
        "a partial archive was left behind"
    );
}

#[test]
fn verification_catches_an_entry_that_is_not_a_photo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("01.jpg", options).expect("entry");
    zip.write_all(&jpeg(512, 512)).expect("write");
    zip.start_file("02.jpg", options).expect("entry");
    let cut = jpeg(512, 512);
    zip.write_all(&cut[..cut.len() / 2]).expect("write");
    zip.finish().expect("finish");

    match verify_archive(&path) {
        Err(ArchiveError::BadEntry { name, reason }) => {
            assert_eq!(name, "02.jpg");
            assert!(
                reason.contains("incomplete") || reason.contains("cut"),
                "{reason}"
            );
        }
        other => panic!("a damaged entry passed verification: {other:?}"),
    }
}
