use aggregates::ImageFormat;
use uuid::Uuid;

use super::*;

#[test]
fn keys_that_could_escape_the_store_are_refused() {
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../b",
        "a/..",
        "a//b",
        "a/./b",
        ".hidden",
        "a\\b",
        "a b",
        "ключ",
    ] {
        assert!(
            matches!(validate_key(bad), Err(StorageError::InvalidKey { .. })),
            "`{bad}` was accepted"
        );
    }
    validate_key("avatars/5f0e/photo-1.jpg").expect("a normal key");
}

#[test]
fn photo_keys_follow_the_documented_layout() {
    let id = Uuid::nil();
    assert_eq!(
        photo_key(id, "abc", ImageFormat::Webp),
        "avatars/00000000-0000-0000-0000-000000000000/abc.webp"
    );
    validate_key(&photo_key(id, "abc", ImageFormat::Jpeg)).expect("generated keys are valid");
}

#[test]
fn copies_and_archives_live_under_the_avatars_prefix() {
    let id = Uuid::nil();
    let fal = "https://v3.fal.media/files/rabbit/Ab-1_x/pytorch_lora_weights.safetensors";
    let key = copy_key(id, fal);
    assert!(
        key.starts_with(&format!("{}/copies/", avatar_prefix(id))),
        "{key}"
    );
    assert!(key.ends_with("/pytorch_lora_weights.safetensors"), "{key}");
    validate_key(&key).expect("copy keys are valid");
    // One file per URL, whatever its name; names that are not key material are cleaned.
    assert_ne!(
        key,
        copy_key(
            id,
            "https://v3.fal.media/files/other/pytorch_lora_weights.safetensors"
        )
    );
    assert_eq!(copy_key(id, fal), key);
    for odd in [
        "http://h/",
        "http://h/a b?.png?x=1",
        "http://h/..",
        "не url",
    ] {
        validate_key(&copy_key(id, odd)).unwrap_or_else(|e| panic!("{odd}: {e}"));
    }
    let archive = archive_key(id, "train:42");
    assert_eq!(
        archive,
        "avatars/00000000-0000-0000-0000-000000000000/archives/train_42.zip"
    );
    validate_key(&archive).expect("archive keys are valid");
}

#[test]
fn storage_urls_parse_into_locations() {
    assert_eq!(
        StorageLocation::parse("file://./data/photos").unwrap(),
        StorageLocation::Local("./data/photos".into())
    );
    assert_eq!(
        StorageLocation::parse("file:///var/lib/aisha").unwrap(),
        StorageLocation::Local("/var/lib/aisha".into())
    );
    assert_eq!(
        StorageLocation::parse("s3://my-bucket/aisha/photos/").unwrap(),
        StorageLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: "aisha/photos".into()
        }
    );
    assert_eq!(
        StorageLocation::parse("s3://my-bucket").unwrap(),
        StorageLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: String::new()
        }
    );
    assert!(
        matches!(StorageLocation::parse("gs://b/p"), Err(StorageError::UnsupportedUrl(s)) if s == "gs")
    );
    assert!(matches!(
        StorageLocation::parse("file://"),
        Err(StorageError::InvalidUrl(_))
    ));
    assert!(matches!(
        StorageLocation::parse("s3://"),
        Err(StorageError::InvalidUrl(_))
    ));
    assert!(matches!(
        StorageLocation::parse("s3://bucket/../x"),
        Err(StorageError::InvalidKey { .. })
    ));
}

#[test]
fn credentials_in_the_url_are_refused_without_being_echoed() {
    let err = StorageLocation::parse("s3://AKIDEXAMPLE:s3cr3t@bucket/p").unwrap_err();
    assert!(matches!(err, StorageError::InvalidUrl(_)));
    assert!(!err.to_string().contains("s3cr3t"));
}
