//! The Avatar's rules as given/when/then: one test per rule and per refusal.

use aggregates::avatar::{generation_arguments, MAX_PHOTOS, MIN_PHOTOS};
use aggregates::errors::ModelDataProblem;
use aggregates::presets::{
    TrainerParams, MAX_PROMPT_CHARS, PORTRAIT_GENERATOR, PORTRAIT_TRAINER, STYLE_GENERATOR,
    STYLE_LORA_TRAINER, STYLE_TRAINER,
};
use aggregates::values::MAX_BATCH_SIZE;
use aggregates::*;
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use serde_json::json;
use uuid::Uuid;

type AvatarTest = TestFramework<Avatar>;

const OWNER: i64 = 1001;
const STRANGER: i64 = 2002;
const AVATAR: Uuid = Uuid::from_u128(0xabcdef12_0000_4000_8000_000000000001);
const REQUEST: &str = "req-1";
const TRAINING: Uuid = Uuid::from_u128(0x7a1e_0000_4000_8000_000000000001);
/// A second press of "train", with its own id.
const ANOTHER_PRESS: Uuid = Uuid::from_u128(0x7a1e_0000_4000_8000_000000000002);
const LORA: &str = "https://fal.media/files/lora.safetensors";
const CONFIG: &str = "https://fal.media/files/config.json";
const FINETUNE: &str = "sergey-style-prod";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn user(action: Action) -> Command {
    Command::new(Actor::User(OWNER), at(), action)
}

fn stranger(action: Action) -> Command {
    Command::new(Actor::User(STRANGER), at(), action)
}

fn system(action: Action) -> Command {
    Command::new(Actor::System("test".into()), at(), action)
}

fn operator(action: Action) -> Command {
    Command::new(Actor::Operator("alice".into()), at(), action)
}

fn created(avatar_type: AvatarType) -> AvatarEvent {
    AvatarEvent::AvatarCreated {
        avatar_id: AVATAR,
        owner: OWNER,
        name: AvatarName::parse("Маша").unwrap(),
        gender: Gender::Female,
        avatar_type,
        at: at(),
    }
}

fn photo(n: usize) -> PhotoMeta {
    PhotoMeta {
        photo_id: format!("p{n}"),
        content_hash: format!("{n:064x}"),
        byte_size: 100_000,
        width: 1024,
        height: 768,
        format: ImageFormat::Jpeg,
        storage_key: format!("avatars/{AVATAR}/p{n}.jpg"),
    }
}

fn uploaded(n: usize) -> AvatarEvent {
    AvatarEvent::PhotoUploaded {
        photo: photo(n),
        photo_count: n,
        at: at(),
    }
}

fn with_photos(avatar_type: AvatarType, count: usize) -> Vec<AvatarEvent> {
    let mut events = vec![created(avatar_type)];
    events.extend((1..=count).map(uploaded));
    events
}

fn trigger(avatar_type: AvatarType) -> &'static str {
    match avatar_type {
        AvatarType::Portrait => "PERSON_ABCDEF12",
        AvatarType::Style => "STYLE_ABCDEF12",
    }
}

fn training_started(avatar_type: AvatarType, preset: TrainingPreset) -> AvatarEvent {
    let params = TrainerParams::for_preset(
        avatar_type,
        StyleTrainer::ProFinetune,
        preset,
        trigger(avatar_type),
        &format!("aisha-{AVATAR}"),
    );
    AvatarEvent::TrainingStarted {
        training_id: TRAINING,
        owner: OWNER,
        avatar_type,
        preset,
        endpoint: params.endpoint().to_owned(),
        params,
        photo_keys: (1..=MIN_PHOTOS).map(|n| photo(n).storage_key).collect(),
        at: at(),
    }
}

fn submitted(request_id: &str) -> AvatarEvent {
    AvatarEvent::TrainingSubmitted {
        request_id: request_id.into(),
        endpoint: PORTRAIT_TRAINER.into(),
        status_url: format!("https://queue/requests/{request_id}/status"),
        response_url: format!("https://queue/requests/{request_id}"),
        cancel_url: format!("https://queue/requests/{request_id}/cancel"),
        archive_url: Some("https://files/photos.zip".into()),
        at: at(),
    }
}

fn in_training(avatar_type: AvatarType) -> Vec<AvatarEvent> {
    let mut events = with_photos(avatar_type, MIN_PHOTOS);
    events.push(training_started(avatar_type, TrainingPreset::Balanced));
    events.push(submitted(REQUEST));
    events
}

fn portrait_model() -> TrainedModel {
    TrainedModel::Portrait {
        lora_file_url: LORA.into(),
        config_file_url: Some(CONFIG.into()),
        trigger_phrase: trigger(AvatarType::Portrait).into(),
    }
}

fn style_model() -> TrainedModel {
    TrainedModel::ProFinetune {
        finetune_id: FINETUNE.into(),
        trigger_word: trigger(AvatarType::Style).into(),
    }
}

fn completed(model: TrainedModel) -> AvatarEvent {
    AvatarEvent::TrainingCompleted {
        owner: OWNER,
        request_id: REQUEST.into(),
        model,
        at: at(),
    }
}

fn trained(avatar_type: AvatarType) -> Vec<AvatarEvent> {
    let mut events = in_training(avatar_type);
    events.push(completed(match avatar_type {
        AvatarType::Portrait => portrait_model(),
        AvatarType::Style => style_model(),
    }));
    events
}

fn portrait_output() -> TrainingOutput {
    TrainingOutput {
        lora_file_url: Some(LORA.into()),
        config_file_url: Some(CONFIG.into()),
        finetune_id: None,
    }
}

fn style_output() -> TrainingOutput {
    TrainingOutput {
        finetune_id: Some(FINETUNE.into()),
        ..Default::default()
    }
}

fn create(name: &str) -> Action {
    Action::Create {
        avatar_id: AVATAR,
        name: name.into(),
        gender: Gender::Female,
        avatar_type: AvatarType::Portrait,
    }
}

fn generate(id: u128, preset: Option<GenerationPreset>) -> Action {
    Action::Generate {
        generation_id: Uuid::from_u128(id),
        prompt: "  in a spacesuit on Mars ".into(),
        preset,
        num_images: 1,
        aspect: None,
        batch: None,
        origin: None,
    }
}

fn mismatch(avatar_type: AvatarType, problem: ModelDataProblem) -> AvatarError {
    AvatarError::ModelDataMismatch {
        avatar_type,
        problem,
    }
}

mod renaming {
    use super::*;

    #[test]
    fn an_avatar_can_be_renamed_at_any_stage_with_the_rules_of_a_new_name() {
        for given in [
            with_photos(AvatarType::Portrait, 2),
            trained(AvatarType::Style),
        ] {
            AvatarTest::with(())
                .given(given)
                .when(user(Action::Rename {
                    name: "  Маша у моря ".into(),
                }))
                .then_expect_events(vec![AvatarEvent::AvatarRenamed {
                    name: AvatarName::parse("Маша у моря").unwrap(),
                    at: at(),
                }]);
        }
    }

    #[test]
    fn the_same_name_again_changes_nothing() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 1))
            .when(user(Action::Rename {
                name: "Маша".into(),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_bad_name_is_refused_as_at_creation() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 1))
            .when(user(Action::Rename {
                name: "\u{202e}gnp.exe".into(),
            }))
            .then_expect_error(AvatarError::NameHasInvisibleCharacters {
                code_point: "U+202E".into(),
            });
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 1))
            .when(user(Action::Rename { name: "  ".into() }))
            .then_expect_error(AvatarError::EmptyName);
    }

    #[test]
    fn only_the_owner_renames() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 1))
            .when(stranger(Action::Rename {
                name: "Чужой".into(),
            }))
            .then_expect_error(AvatarError::NotOwner);
    }
}

mod creating {
    use super::*;

    #[test]
    fn a_user_creates_an_avatar_and_owns_it() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(user(create("  Маша  ")))
            .then_expect_events(vec![created(AvatarType::Portrait)]);
    }

    #[test]
    fn names_in_any_script_with_emoji_are_accepted() {
        let name = "مريم 🌸 Ли";
        let result = AvatarTest::with(())
            .given_no_previous_events()
            .when(user(create(name)))
            .inspect_result()
            .unwrap();
        let AvatarEvent::AvatarCreated { name: stored, .. } = &result[0] else {
            panic!("expected AvatarCreated, got {result:?}");
        };
        assert_eq!(stored.as_str(), name);
    }

    #[test]
    fn an_empty_or_blank_name_is_refused() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(user(create("   ")))
            .then_expect_error(AvatarError::EmptyName);
    }

    #[test]
    fn a_name_over_64_characters_is_refused() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(user(create(&"я".repeat(65))))
            .then_expect_error(AvatarError::NameTooLong {
                max: 64,
                actual: 65,
            });
    }

    #[test]
    fn exactly_64_emoji_fit() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(user(create(&"🙂".repeat(64))))
            .inspect_result()
            .expect("64 characters are allowed");
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_in_a_name_are_refused() {
        for (name, code_point) in [
            ("\u{202E}gnp.exe\u{200B}", "U+202E"),
            ("Маша\u{200B}", "U+200B"),
            ("Ma\u{2066}sha", "U+2066"),
            ("\u{FEFF}Маша", "U+FEFF"),
            ("Маша\u{200D}", "U+200D"),
        ] {
            AvatarTest::with(())
                .given_no_previous_events()
                .when(user(create(name)))
                .then_expect_error(AvatarError::NameHasInvisibleCharacters {
                    code_point: code_point.into(),
                });
        }
    }

    #[test]
    fn emoji_joined_by_zwj_and_tag_flags_stay_allowed_in_names() {
        for name in [
            "Кодер 👩\u{200D}💻",
            "🏳\u{FE0F}\u{200D}🌈 Радуга",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} Alba",
        ] {
            AvatarTest::with(())
                .given_no_previous_events()
                .when(user(create(name)))
                .inspect_result()
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
    }

    #[test]
    fn control_characters_in_a_name_are_refused() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(user(create("Маша\u{0007}")))
            .then_expect_error(AvatarError::NameHasControlCharacters);
    }

    #[test]
    fn creating_twice_is_refused() {
        AvatarTest::with(())
            .given(vec![created(AvatarType::Portrait)])
            .when(user(create("Маша")))
            .then_expect_error(AvatarError::AlreadyExists);
    }

    #[test]
    fn only_a_telegram_user_can_create() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(system(create("Маша")))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "the system",
                action: "create",
            });
    }

    #[test]
    fn any_command_on_a_missing_avatar_is_refused() {
        AvatarTest::with(())
            .given_no_previous_events()
            .when(user(Action::UploadPhoto { photo: photo(1) }))
            .then_expect_error(AvatarError::NotFound);
    }
}

mod photos {
    use super::*;

    #[test]
    fn an_uploaded_photo_is_counted() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 6))
            .when(user(Action::UploadPhoto { photo: photo(7) }))
            .then_expect_events(vec![uploaded(7)]);
    }

    #[test]
    fn a_photo_smaller_than_512_on_either_side_is_refused() {
        let mut small = photo(1);
        small.height = 511;
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 0))
            .when(user(Action::UploadPhoto { photo: small }))
            .then_expect_error(AvatarError::PhotoTooSmall {
                width: 1024,
                height: 511,
                min: 512,
            });
    }

    #[test]
    fn exactly_512_by_512_is_accepted() {
        let mut edge = photo(1);
        edge.width = 512;
        edge.height = 512;
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 0))
            .when(user(Action::UploadPhoto {
                photo: edge.clone(),
            }))
            .then_expect_events(vec![AvatarEvent::PhotoUploaded {
                photo: edge,
                photo_count: 1,
                at: at(),
            }]);
    }

    #[test]
    fn an_empty_photo_is_refused() {
        let mut empty = photo(1);
        empty.byte_size = 0;
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 0))
            .when(user(Action::UploadPhoto { photo: empty }))
            .then_expect_error(AvatarError::EmptyPhoto);
    }

    #[test]
    fn the_same_bytes_twice_are_a_duplicate() {
        let mut again = photo(3);
        again.photo_id = "another-id".into();
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 3))
            .when(user(Action::UploadPhoto { photo: again }))
            .then_expect_error(AvatarError::DuplicatePhoto {
                existing: "p3".into(),
            });
    }

    #[test]
    fn a_21st_photo_is_refused() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, MAX_PHOTOS))
            .when(user(Action::UploadPhoto {
                photo: photo(MAX_PHOTOS + 1),
            }))
            .then_expect_error(AvatarError::TooManyPhotos { max: 20 });
    }

    #[test]
    fn only_jpeg_png_and_webp_are_accepted_formats() {
        assert_eq!(ImageFormat::parse("JPEG"), Ok(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::parse("png"), Ok(ImageFormat::Png));
        assert_eq!(ImageFormat::parse("WebP"), Ok(ImageFormat::Webp));
        assert_eq!(
            ImageFormat::parse("gif"),
            Err(AvatarError::UnsupportedFormat("gif".into()))
        );
    }

    #[test]
    fn a_photo_can_be_removed() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 3))
            .when(user(Action::RemovePhoto {
                photo_id: "p2".into(),
            }))
            .then_expect_events(vec![AvatarEvent::PhotoRemoved {
                photo_id: "p2".into(),
                photo_count: 2,
                at: at(),
            }]);
    }

    #[test]
    fn starting_the_set_over_removes_every_photo_newest_first() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 3))
            .when(user(Action::ClearPhotos))
            .then_expect_events(vec![
                AvatarEvent::PhotoRemoved {
                    photo_id: "p3".into(),
                    photo_count: 2,
                    at: at(),
                },
                AvatarEvent::PhotoRemoved {
                    photo_id: "p2".into(),
                    photo_count: 1,
                    at: at(),
                },
                AvatarEvent::PhotoRemoved {
                    photo_id: "p1".into(),
                    photo_count: 0,
                    at: at(),
                },
            ]);
    }

    #[test]
    fn starting_an_empty_set_over_changes_nothing() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 0))
            .when(user(Action::ClearPhotos))
            .then_expect_events(vec![]);
    }

    #[test]
    fn no_starting_over_after_training_starts() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(user(Action::ClearPhotos))
            .then_expect_error(AvatarError::PhotosLocked);
    }

    #[test]
    fn a_stranger_cannot_start_my_set_over() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 2))
            .when(stranger(Action::ClearPhotos))
            .then_expect_error(AvatarError::NotOwner);
    }

    #[test]
    fn removing_an_unknown_photo_is_refused() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 3))
            .when(user(Action::RemovePhoto {
                photo_id: "nope".into(),
            }))
            .then_expect_error(AvatarError::UnknownPhoto("nope".into()));
    }

    #[test]
    fn no_upload_after_training_starts() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(user(Action::UploadPhoto { photo: photo(15) }))
            .then_expect_error(AvatarError::PhotosLocked);
    }

    #[test]
    fn no_removal_after_training_starts() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::RemovePhoto {
                photo_id: "p1".into(),
            }))
            .then_expect_error(AvatarError::PhotosLocked);
    }

    #[test]
    fn another_user_cannot_upload_to_my_avatar() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 1))
            .when(stranger(Action::UploadPhoto { photo: photo(2) }))
            .then_expect_error(AvatarError::NotOwner);
    }
}

mod training {
    use super::*;

    #[test]
    fn a_portrait_trains_on_the_portrait_trainer_with_the_preset() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, MIN_PHOTOS))
            .when(user(Action::StartTraining {
                training_id: TRAINING,
                preset: TrainingPreset::Balanced,
                style: Default::default(),
            }))
            .then_expect_events(vec![training_started(
                AvatarType::Portrait,
                TrainingPreset::Balanced,
            )]);
    }

    #[test]
    fn portrait_presets_follow_seed_001() {
        for (preset, steps, rate) in [
            (TrainingPreset::Fast, 300, 0.0003),
            (TrainingPreset::Balanced, 600, 0.0002),
            (TrainingPreset::Quality, 1000, 0.0001),
        ] {
            let events = AvatarTest::with(())
                .given(with_photos(AvatarType::Portrait, 12))
                .when(user(Action::StartTraining {
                    training_id: TRAINING,
                    preset,
                    style: Default::default(),
                }))
                .inspect_result()
                .unwrap();
            let AvatarEvent::TrainingStarted {
                endpoint, params, ..
            } = &events[0]
            else {
                panic!("{events:?}")
            };
            assert_eq!(endpoint, PORTRAIT_TRAINER);
            let body = params.to_fal_input("https://files/x.zip");
            assert_eq!(
                body,
                json!({
                    "images_data_url": "https://files/x.zip",
                    "trigger_phrase": "PERSON_ABCDEF12",
                    "steps": steps,
                    "learning_rate": rate,
                    "multiresolution_training": true,
                    "subject_crop": true,
                    "create_masks": false,
                })
            );
        }
    }

    #[test]
    fn a_style_trains_on_the_pro_trainer_when_the_operator_chose_it() {
        let events = AvatarTest::with(())
            .given(with_photos(AvatarType::Style, 15))
            .when(user(Action::StartTraining {
                training_id: TRAINING,
                preset: TrainingPreset::Quality,
                style: StyleTrainer::ProFinetune,
            }))
            .inspect_result()
            .unwrap();
        let AvatarEvent::TrainingStarted {
            endpoint,
            params,
            photo_keys,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(endpoint, STYLE_TRAINER);
        assert_eq!(photo_keys.len(), 15);
        let body = params.to_fal_input("https://files/x.zip");
        assert_eq!(body["data_url"], "https://files/x.zip");
        assert_eq!(body["trigger_word"], "STYLE_ABCDEF12");
        assert_eq!(body["iterations"], 1000);
        assert!(body.get("steps").is_none());
    }

    #[test]
    fn nine_photos_are_not_enough() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 9))
            .when(user(Action::StartTraining {
                training_id: TRAINING,
                preset: TrainingPreset::Fast,
                style: Default::default(),
            }))
            .then_expect_error(AvatarError::NotEnoughPhotos { have: 9, min: 10 });
    }

    #[test]
    fn training_cannot_start_twice() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(user(Action::StartTraining {
                training_id: ANOTHER_PRESS,
                preset: TrainingPreset::Fast,
                style: Default::default(),
            }))
            .then_expect_error(AvatarError::TrainingAlreadyStarted);
    }

    #[test]
    fn a_trained_avatar_is_not_trained_again() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::StartTraining {
                training_id: ANOTHER_PRESS,
                preset: TrainingPreset::Fast,
                style: Default::default(),
            }))
            .then_expect_error(AvatarError::AlreadyTrained);
    }

    #[test]
    fn the_submission_is_recorded_with_its_request_id() {
        let mut given = with_photos(AvatarType::Portrait, MIN_PHOTOS);
        given.push(training_started(
            AvatarType::Portrait,
            TrainingPreset::Balanced,
        ));
        AvatarTest::with(())
            .given(given)
            .when(system(Action::RecordTrainingSubmission {
                request_id: REQUEST.into(),
                endpoint: PORTRAIT_TRAINER.into(),
                status_url: format!("https://queue/requests/{REQUEST}/status"),
                response_url: format!("https://queue/requests/{REQUEST}"),
                cancel_url: format!("https://queue/requests/{REQUEST}/cancel"),
                archive_url: Some("https://files/photos.zip".into()),
            }))
            .then_expect_events(vec![submitted(REQUEST)]);
    }

    fn record(request_id: &str) -> Action {
        Action::RecordTrainingSubmission {
            request_id: request_id.into(),
            endpoint: PORTRAIT_TRAINER.into(),
            status_url: String::new(),
            response_url: String::new(),
            cancel_url: String::new(),
            archive_url: None,
        }
    }

    #[test]
    fn recording_the_same_submission_again_changes_nothing() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(record(REQUEST)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_second_different_submission_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(record("req-2")))
            .then_expect_error(AvatarError::SubmissionAlreadyRecorded(REQUEST.into()));
    }

    #[test]
    fn a_submission_without_a_started_training_is_refused() {
        AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, MIN_PHOTOS))
            .when(system(record(REQUEST)))
            .then_expect_error(AvatarError::NoTrainingInProgress);
    }

    #[test]
    fn users_cannot_report_fal_results() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(user(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: portrait_output(),
            }))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "a Telegram user",
                action: "complete_training",
            });
    }

    #[test]
    fn a_portrait_completes_with_its_lora_file() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: portrait_output(),
            }))
            .then_expect_events(vec![completed(portrait_model())]);
    }

    #[test]
    fn a_style_completes_with_its_finetune_id() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Style))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: style_output(),
            }))
            .then_expect_events(vec![completed(style_model())]);
    }

    // Seed 000, error 2: a portrait avatar carrying a finetune id.
    #[test]
    fn a_portrait_result_with_a_finetune_id_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput {
                    finetune_id: Some("some-finetune-id".into()),
                    ..Default::default()
                },
            }))
            .then_expect_error(mismatch(
                AvatarType::Portrait,
                ModelDataProblem::PortraitWithFinetuneId,
            ));
    }

    #[test]
    fn a_portrait_result_without_a_lora_file_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput {
                    lora_file_url: Some("  ".into()),
                    ..Default::default()
                },
            }))
            .then_expect_error(mismatch(
                AvatarType::Portrait,
                ModelDataProblem::PortraitWithoutLoraFile,
            ));
    }

    // Seed 000, error 1: a style avatar carrying a LoRA file.
    #[test]
    fn a_style_result_with_a_lora_file_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Style))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput {
                    lora_file_url: Some("https://url.com/lora/file.safetensors".into()),
                    finetune_id: None,
                    config_file_url: None,
                },
            }))
            .then_expect_error(mismatch(
                AvatarType::Style,
                ModelDataProblem::StyleWithLoraFile,
            ));
    }

    #[test]
    fn a_style_result_without_a_finetune_id_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Style))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput::default(),
            }))
            .then_expect_error(mismatch(
                AvatarType::Style,
                ModelDataProblem::StyleWithoutFinetuneId,
            ));
    }

    #[test]
    fn type_mismatches_carry_the_seed_log_marker() {
        let err = mismatch(AvatarType::Style, ModelDataProblem::StyleWithLoraFile);
        assert!(err.to_string().starts_with("❌ ОШИБКА ДАННЫХ:"), "{err}");
    }

    #[test]
    fn a_duplicate_completion_for_the_same_request_is_a_no_op() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: portrait_output(),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_completion_for_an_unknown_request_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::CompleteTraining {
                request_id: "someone-elses".into(),
                output: portrait_output(),
            }))
            .then_expect_error(AvatarError::UnknownTrainingRequest("someone-elses".into()));
    }

    #[test]
    fn a_failure_is_recorded_once() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::FailTraining {
                request_id: Some(REQUEST.into()),
                reason: "GPU fell over".into(),
                abandon: false,
            }))
            .then_expect_events(vec![AvatarEvent::TrainingFailed {
                owner: OWNER,
                request_id: Some(REQUEST.into()),
                reason: "GPU fell over".into(),
                at: at(),
                cancel_url: None,
            }]);
    }

    #[test]
    fn a_failure_after_completion_changes_nothing() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(Action::FailTraining {
                request_id: Some(REQUEST.into()),
                reason: "late".into(),
                abandon: false,
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failure_for_an_unknown_request_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::FailTraining {
                request_id: Some("x".into()),
                reason: "?".into(),
                abandon: false,
            }))
            .then_expect_error(AvatarError::UnknownTrainingRequest("x".into()));
    }

    #[test]
    fn a_training_can_fail_before_it_reaches_fal() {
        let mut given = with_photos(AvatarType::Portrait, MIN_PHOTOS);
        given.push(training_started(AvatarType::Portrait, TrainingPreset::Fast));
        AvatarTest::with(())
            .given(given)
            .when(system(Action::FailTraining {
                request_id: None,
                reason: "upload failed".into(),
                abandon: false,
            }))
            .then_expect_events(vec![AvatarEvent::TrainingFailed {
                owner: OWNER,
                request_id: None,
                reason: "upload failed".into(),
                at: at(),
                cancel_url: None,
            }]);
    }

    #[test]
    fn failing_without_a_request_when_nothing_waits_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::FailTraining {
                request_id: None,
                reason: "?".into(),
                abandon: false,
            }))
            .then_expect_error(AvatarError::NoTrainingInProgress);
    }

    fn failed() -> Vec<AvatarEvent> {
        let mut events = in_training(AvatarType::Portrait);
        events.push(AvatarEvent::TrainingFailed {
            owner: OWNER,
            request_id: Some(REQUEST.into()),
            reason: "poller deadline".into(),
            at: at(),
            cancel_url: None,
        });
        events
    }

    #[test]
    fn a_late_success_after_we_gave_up_is_still_the_users_model() {
        AvatarTest::with(())
            .given(failed())
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: portrait_output(),
            }))
            .then_expect_events(vec![completed(portrait_model())]);
    }

    #[test]
    fn after_a_failure_photos_can_change_and_training_can_restart() {
        AvatarTest::with(())
            .given(failed())
            .when(user(Action::UploadPhoto { photo: photo(11) }))
            .then_expect_events(vec![AvatarEvent::PhotoUploaded {
                photo: photo(11),
                photo_count: 11,
                at: at(),
            }]);
        let events = AvatarTest::with(())
            .given(failed())
            .when(user(Action::StartTraining {
                training_id: ANOTHER_PRESS,
                preset: TrainingPreset::Fast,
                style: Default::default(),
            }))
            .inspect_result()
            .unwrap();
        assert!(matches!(
            events[0],
            AvatarEvent::TrainingStarted {
                training_id: ANOTHER_PRESS,
                ..
            }
        ));
    }

    #[test]
    fn the_press_that_started_a_failed_training_does_not_start_another() {
        // The same request handled again (after an interruption) once its training failed.
        AvatarTest::with(())
            .given(failed())
            .when(user(Action::StartTraining {
                training_id: TRAINING,
                preset: TrainingPreset::Fast,
                style: Default::default(),
            }))
            .then_expect_error(AvatarError::DuplicateTraining(TRAINING));
    }

    #[test]
    fn events_and_snapshots_from_before_training_ids_still_load() {
        use cqrs_es::Aggregate as _;
        let mut event =
            serde_json::to_value(training_started(AvatarType::Portrait, TrainingPreset::Fast))
                .unwrap();
        event["TrainingStarted"]
            .as_object_mut()
            .unwrap()
            .remove("training_id");
        let old: AvatarEvent = serde_json::from_value(event).unwrap();
        let AvatarEvent::TrainingStarted { training_id, .. } = &old else {
            panic!("{old:?}")
        };
        assert!(training_id.is_nil());

        let mut avatar = Avatar::default();
        for e in with_photos(AvatarType::Portrait, MIN_PHOTOS) {
            avatar.apply(e);
        }
        avatar.apply(old);
        let mut snapshot = serde_json::to_value(&avatar).unwrap();
        snapshot
            .as_object_mut()
            .unwrap()
            .remove("started_trainings");
        let restored: Avatar = serde_json::from_value(snapshot).unwrap();
        assert_eq!(restored, avatar);
        assert!(restored.started_trainings.is_empty());
    }

    #[test]
    fn a_late_result_for_a_superseded_request_changes_nothing() {
        let mut given = failed();
        given.push(training_started(AvatarType::Portrait, TrainingPreset::Fast));
        AvatarTest::with(())
            .given(given)
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: portrait_output(),
            }))
            .then_expect_events(vec![]);
    }
}

mod generating {
    use super::*;

    fn requested(
        avatar_type: AvatarType,
        preset: Option<GenerationPreset>,
    ) -> (String, serde_json::Value) {
        let events = AvatarTest::with(())
            .given(trained(avatar_type))
            .when(user(generate(1, preset)))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested {
            endpoint,
            arguments,
            prompt,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(prompt, "in a spacesuit on Mars");
        (endpoint.clone(), arguments.clone())
    }

    fn framed(
        avatar_type: AvatarType,
        preset: Option<GenerationPreset>,
        aspect: aggregates::AspectRatio,
    ) -> (serde_json::Value, Option<aggregates::AspectRatio>) {
        let events = AvatarTest::with(())
            .given(trained(avatar_type))
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(7),
                prompt: "a lighthouse".into(),
                preset,
                num_images: 4,
                aspect: Some(aspect),
                batch: None,
                origin: None,
            }))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested {
            arguments,
            aspect,
            num_images,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(*num_images, 4);
        (arguments.clone(), *aspect)
    }

    // The frame is chosen apart from the preset: a named size on the LoRA endpoint, a ratio on
    // the ultra endpoint, and recorded in the event either way.
    #[test]
    fn each_aspect_ratio_maps_to_each_endpoints_own_field() {
        use aggregates::AspectRatio::*;
        let cases = [
            (Square, "square_hd", "1:1"),
            (Portrait, "portrait_4_3", "3:4"),
            (Tall, "portrait_16_9", "9:16"),
            (Landscape, "landscape_4_3", "4:3"),
            (Wide, "landscape_16_9", "16:9"),
        ];
        for (aspect, image_size, ratio) in cases {
            let (lora, recorded) = framed(AvatarType::Portrait, None, aspect);
            assert_eq!(lora["image_size"], image_size, "{aspect:?}");
            assert_eq!(lora["num_images"], 4);
            assert_eq!(recorded, Some(aspect));
            let (ultra, recorded) =
                framed(AvatarType::Style, Some(GenerationPreset::Portrait), aspect);
            assert_eq!(ultra["aspect_ratio"], ratio, "{aspect:?}");
            assert_eq!(recorded, Some(aspect));
        }
    }

    #[test]
    fn a_square_keeps_the_fast_presets_smaller_square_and_overrides_a_portrait_preset() {
        use aggregates::AspectRatio::*;
        let (fast, _) = framed(AvatarType::Portrait, Some(GenerationPreset::Fast), Square);
        assert_eq!(fast["image_size"], "square");
        let (portrait, _) = framed(AvatarType::Portrait, Some(GenerationPreset::Portrait), Wide);
        assert_eq!(portrait["image_size"], "landscape_16_9");
        assert_eq!(
            portrait["num_inference_steps"], 35,
            "the rest of the preset stays"
        );
    }

    fn batch_item(index: u32, size: u32) -> BatchItem {
        BatchItem {
            batch_id: Uuid::from_u128(900),
            index,
            size,
        }
    }

    fn in_batch(action: Action, id: Option<Uuid>, item: BatchItem) -> Action {
        let Action::Generate {
            generation_id,
            prompt,
            preset,
            num_images,
            aspect,
            ..
        } = action
        else {
            unreachable!()
        };
        Action::Generate {
            generation_id: id.unwrap_or(generation_id),
            prompt,
            preset,
            num_images,
            aspect,
            batch: Some(item),
            origin: None,
        }
    }

    #[test]
    fn a_prompt_outside_its_batch_is_refused() {
        for (index, size) in [(3, 3), (0, 0), (0, MAX_BATCH_SIZE + 1)] {
            AvatarTest::with(())
                .given(trained(AvatarType::Portrait))
                .when(user(in_batch(
                    generate(1, None),
                    None,
                    batch_item(index, size),
                )))
                .then_expect_error(AvatarError::InvalidBatch {
                    index,
                    size,
                    max: MAX_BATCH_SIZE,
                });
        }
    }

    // Each item of a batch is its own generation (one failing does not fail the others); the
    // avatar counts how many of the batch have finished, for "2 of 3 ready".
    #[test]
    fn a_batch_counts_its_finished_items_whatever_their_outcome() {
        use cqrs_es::Aggregate;
        let mut avatar = Avatar::default();
        for event in trained(AvatarType::Portrait) {
            avatar.apply(event);
        }
        for index in 0..3u32 {
            let id = Uuid::from_u128(500 + u128::from(index));
            let events = AvatarTest::with(())
                .given(trained(AvatarType::Portrait))
                .when(user(in_batch(
                    generate(1, None),
                    Some(id),
                    batch_item(index, 3),
                )))
                .inspect_result()
                .unwrap();
            for event in events {
                avatar.apply(event);
            }
        }
        let first = Uuid::from_u128(500);
        assert_eq!(avatar.batch_progress(first), Some((batch_item(0, 3), 0)));
        avatar.apply(AvatarEvent::GenerationFailed {
            owner: OWNER,
            generation_id: Uuid::from_u128(501),
            reason: "FAL refused it".into(),
            cancel_url: None,
            at: at(),
        });
        avatar.apply(AvatarEvent::GenerationCompleted {
            owner: OWNER,
            generation_id: first,
            images: vec![],
            at: at(),
        });
        assert_eq!(avatar.batch_progress(first), Some((batch_item(0, 3), 2)));
        assert_eq!(
            avatar.batch_progress(Uuid::from_u128(502)),
            Some((batch_item(2, 3), 2))
        );
        assert_eq!(avatar.pending_generations.len(), 1);
    }

    // Seed 000: portrait → flux-lora with the LoRA in `loras`, scale 1.0, square_hd.
    #[test]
    fn a_portrait_generates_on_flux_lora_with_seed_000_defaults() {
        let (endpoint, arguments) = requested(AvatarType::Portrait, None);
        assert_eq!(endpoint, PORTRAIT_GENERATOR);
        assert_eq!(
            arguments,
            json!({
                "prompt": "PERSON_ABCDEF12 in a spacesuit on Mars",
                "loras": [{"path": LORA, "scale": 1.0}],
                "image_size": "square_hd",
                "num_images": 1,
            })
        );
    }

    // Seed 000: style → ultra finetuned with finetune strength 1.1 and 1:1.
    #[test]
    fn a_style_generates_on_ultra_finetuned_with_seed_000_defaults() {
        let (endpoint, arguments) = requested(AvatarType::Style, None);
        assert_eq!(endpoint, STYLE_GENERATOR);
        assert_eq!(
            arguments,
            json!({
                "prompt": "STYLE_ABCDEF12 in a spacesuit on Mars",
                "finetune_id": FINETUNE,
                "finetune_strength": 1.1,
                "aspect_ratio": "1:1",
                "num_images": 1,
            })
        );
    }

    #[test]
    fn every_preset_maps_to_the_preset_table_on_both_endpoints() {
        let table = [
            ("fast", 20, 3.0, "square", 0.8, 0.8, "1:1"),
            ("balanced", 28, 3.5, "square_hd", 1.0, 1.0, "1:1"),
            ("quality", 50, 4.0, "square_hd", 1.2, 1.2, "1:1"),
            ("ultra", 35, 3.5, "square_hd", 1.1, 1.1, "1:1"),
            ("portrait", 35, 3.5, "portrait_4_3", 1.1, 1.0, "3:4"),
            ("landscape", 30, 3.5, "landscape_4_3", 1.0, 1.0, "4:3"),
            ("artistic", 40, 5.0, "square_hd", 0.9, 1.2, "1:1"),
            ("photorealistic", 40, 3.0, "portrait_4_3", 1.0, 1.0, "3:4"),
        ];
        assert_eq!(table.len(), GenerationPreset::ALL.len());
        for (name, steps, guidance, size, scale, strength, ratio) in table {
            let preset = GenerationPreset::parse(name).unwrap();
            let (_, lora) = requested(AvatarType::Portrait, Some(preset));
            assert_eq!(lora["num_inference_steps"], steps, "{name}");
            assert_eq!(lora["guidance_scale"], guidance, "{name}");
            assert_eq!(lora["image_size"], size, "{name}");
            assert_eq!(lora["loras"][0]["scale"], scale, "{name}");
            assert_eq!(lora["loras"][0]["path"], LORA, "{name}");
            let (_, ultra) = requested(AvatarType::Style, Some(preset));
            assert_eq!(ultra["finetune_strength"], strength, "{name}");
            assert_eq!(ultra["aspect_ratio"], ratio, "{name}");
            assert_eq!(ultra["finetune_id"], FINETUNE, "{name}");
            assert!(ultra.get("num_inference_steps").is_none(), "{name}");
            assert_eq!(
                ultra.get("raw").is_some(),
                name == "photorealistic",
                "{name}"
            );
        }
    }

    #[test]
    fn generating_before_training_is_refused() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(user(generate(1, None)))
            .then_expect_error(AvatarError::NotTrained);
    }

    #[test]
    fn an_empty_prompt_is_refused() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(1),
                prompt: " \n ".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }))
            .then_expect_error(AvatarError::EmptyPrompt);
    }

    #[test]
    fn an_over_long_prompt_is_refused() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(1),
                prompt: "a".repeat(MAX_PROMPT_CHARS + 1),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }))
            .then_expect_error(AvatarError::PromptTooLong {
                max: MAX_PROMPT_CHARS,
                actual: MAX_PROMPT_CHARS + 1,
            });
    }

    #[test]
    fn one_to_four_images_per_request() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(1),
                prompt: "x".into(),
                preset: None,
                num_images: 5,
                aspect: None,
                batch: None,
                origin: None,
            }))
            .then_expect_error(AvatarError::InvalidImageCount {
                requested: 5,
                max: 4,
            });
    }

    fn requested_event(id: u128) -> AvatarEvent {
        let model = portrait_model();
        AvatarEvent::GenerationRequested {
            owner: OWNER,
            generation_id: Uuid::from_u128(id),
            prompt: "in a spacesuit on Mars".into(),
            preset: None,
            endpoint: PORTRAIT_GENERATOR.into(),
            arguments: generation_arguments(
                &model,
                None,
                None,
                "PERSON_ABCDEF12 in a spacesuit on Mars".into(),
                1,
            ),
            num_images: 1,
            at: at(),
            aspect: None,
            batch: None,
            origin: None,
        }
    }

    #[test]
    fn the_same_generation_id_twice_is_refused() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested_event(7));
        AvatarTest::with(())
            .given(given)
            .when(user(generate(7, None)))
            .then_expect_error(AvatarError::DuplicateGeneration(Uuid::from_u128(7)));
    }

    fn image() -> GeneratedImage {
        GeneratedImage {
            url: "https://fal.media/img.png".into(),
            width: Some(1024),
            height: Some(1024),
            content_type: Some("image/png".into()),
            nsfw: false,
        }
    }

    #[test]
    fn a_generation_completes_once() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested_event(7));
        let complete = || {
            system(Action::CompleteGeneration {
                generation_id: Uuid::from_u128(7),
                images: vec![image()],
            })
        };
        let done = AvatarEvent::GenerationCompleted {
            owner: OWNER,
            generation_id: Uuid::from_u128(7),
            images: vec![image()],
            at: at(),
        };
        AvatarTest::with(())
            .given(given.clone())
            .when(complete())
            .then_expect_events(vec![done.clone()]);
        given.push(done);
        AvatarTest::with(())
            .given(given)
            .when(complete())
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_generation_can_fail_and_a_late_duplicate_changes_nothing() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested_event(7));
        let failed = AvatarEvent::GenerationFailed {
            owner: OWNER,
            generation_id: Uuid::from_u128(7),
            reason: "NSFW".into(),
            at: at(),
            cancel_url: None,
        };
        AvatarTest::with(())
            .given(given.clone())
            .when(system(Action::FailGeneration {
                generation_id: Uuid::from_u128(7),
                reason: "NSFW".into(),
                abandon: false,
            }))
            .then_expect_events(vec![failed.clone()]);
        given.push(failed);
        AvatarTest::with(())
            .given(given)
            .when(system(Action::CompleteGeneration {
                generation_id: Uuid::from_u128(7),
                images: vec![image()],
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn results_for_unknown_generations_are_refused() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(Action::CompleteGeneration {
                generation_id: Uuid::from_u128(9),
                images: vec![],
            }))
            .then_expect_error(AvatarError::UnknownGeneration(Uuid::from_u128(9)));
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(Action::FailGeneration {
                generation_id: Uuid::from_u128(9),
                reason: "?".into(),
                abandon: false,
            }))
            .then_expect_error(AvatarError::UnknownGeneration(Uuid::from_u128(9)));
    }

    #[test]
    fn another_user_cannot_generate_with_my_avatar() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(stranger(generate(1, None)))
            .then_expect_error(AvatarError::NotOwner);
    }
}

mod prompt_hygiene {
    use super::*;

    #[test]
    fn control_and_invisible_characters_leave_the_prompt() {
        assert_eq!(
            aggregates::values::clean_prompt(
                "\u{1b}]0;pwned\u{7}a\u{1b}[2J cat\u{202E} on\n a\tmat\u{85} "
            ),
            "]0;pwned a [2J cat on a mat"
        );
        let events = AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(11),
                prompt: "\u{1b}[2Jsunny\u{0}\r\nbeach".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested {
            prompt, arguments, ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(prompt, "[2Jsunny beach");
        assert_eq!(arguments["prompt"], "PERSON_ABCDEF12 [2Jsunny beach");
    }

    #[test]
    fn a_prompt_of_nothing_but_control_characters_is_empty() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(12),
                prompt: "\u{1b}\u{7}\n\t\u{202E}".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }))
            .then_expect_error(AvatarError::EmptyPrompt);
    }
}

/// Style avatars train a style LoRA on the trainer FAL supports today, must come back with a
/// LoRA file and no finetune id, and generate on the LoRA endpoint; avatars that already hold a
/// pro finetune keep generating on the ultra endpoint.
mod style_lora {
    use super::*;

    fn lora_training_started() -> AvatarEvent {
        let params = TrainerParams::for_preset(
            AvatarType::Style,
            StyleTrainer::Lora,
            TrainingPreset::Balanced,
            trigger(AvatarType::Style),
            &format!("aisha-{AVATAR}"),
        );
        AvatarEvent::TrainingStarted {
            training_id: TRAINING,
            owner: OWNER,
            avatar_type: AvatarType::Style,
            preset: TrainingPreset::Balanced,
            endpoint: params.endpoint().to_owned(),
            params,
            photo_keys: (1..=MIN_PHOTOS).map(|n| photo(n).storage_key).collect(),
            at: at(),
        }
    }

    fn in_lora_training() -> Vec<AvatarEvent> {
        let mut events = with_photos(AvatarType::Style, MIN_PHOTOS);
        events.push(lora_training_started());
        events.push(submitted(REQUEST));
        events
    }

    fn style_lora() -> TrainedModel {
        TrainedModel::StyleLora {
            lora_file_url: LORA.into(),
            config_file_url: Some(CONFIG.into()),
            trigger_word: trigger(AvatarType::Style).into(),
        }
    }

    #[test]
    fn a_style_trains_on_the_lora_trainer_in_style_mode_by_default() {
        let events = AvatarTest::with(())
            .given(with_photos(AvatarType::Style, MIN_PHOTOS))
            .when(user(Action::StartTraining {
                training_id: TRAINING,
                preset: TrainingPreset::Balanced,
                style: StyleTrainer::default(),
            }))
            .inspect_result()
            .unwrap();
        assert_eq!(events, vec![lora_training_started()]);
        let AvatarEvent::TrainingStarted {
            endpoint, params, ..
        } = &events[0]
        else {
            unreachable!()
        };
        assert_eq!(endpoint, STYLE_LORA_TRAINER);
        assert_eq!(
            params.to_fal_input("https://files/x.zip"),
            json!({"images_data_url": "https://files/x.zip", "trigger_word": "STYLE_ABCDEF12",
                "steps": 1000, "is_style": true, "create_masks": false})
        );
    }

    #[test]
    fn a_style_lora_training_must_return_a_lora_file() {
        AvatarTest::with(())
            .given(in_lora_training())
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput {
                    lora_file_url: Some(LORA.into()),
                    config_file_url: Some(CONFIG.into()),
                    finetune_id: None,
                },
            }))
            .then_expect_events(vec![AvatarEvent::TrainingCompleted {
                owner: OWNER,
                request_id: REQUEST.into(),
                model: style_lora(),
                at: at(),
            }]);
        AvatarTest::with(())
            .given(in_lora_training())
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput {
                    finetune_id: Some(FINETUNE.into()),
                    ..TrainingOutput::default()
                },
            }))
            .then_expect_error(AvatarError::ModelDataMismatch {
                avatar_type: AvatarType::Style,
                problem: ModelDataProblem::StyleLoraWithFinetuneId,
            });
        AvatarTest::with(())
            .given(in_lora_training())
            .when(system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: TrainingOutput::default(),
            }))
            .then_expect_error(AvatarError::ModelDataMismatch {
                avatar_type: AvatarType::Style,
                problem: ModelDataProblem::StyleLoraWithoutLoraFile,
            });
    }

    #[test]
    fn a_style_lora_generates_on_the_lora_endpoint_with_its_lora() {
        let mut given = in_lora_training();
        given.push(AvatarEvent::TrainingCompleted {
            owner: OWNER,
            request_id: REQUEST.into(),
            model: style_lora(),
            at: at(),
        });
        let events = AvatarTest::with(())
            .given(given)
            .when(user(Action::Generate {
                generation_id: Uuid::from_u128(5),
                prompt: "a lighthouse".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested {
            endpoint,
            arguments,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(endpoint, PORTRAIT_GENERATOR);
        assert_eq!(
            arguments,
            &json!({"prompt": "STYLE_ABCDEF12 a lighthouse", "loras": [{"path": LORA, "scale": 1.0}],
                "image_size": "square_hd", "num_images": 1})
        );
    }

    #[test]
    fn model_data_of_old_style_avatars_reads_as_a_pro_finetune_and_generates_on_ultra() {
        // As stored before style LoRAs: `"type": "style"`.
        let old =
            json!({"type": "style", "finetune_id": FINETUNE, "trigger_word": "STYLE_ABCDEF12"});
        let model: TrainedModel = serde_json::from_value(old).unwrap();
        assert_eq!(model, style_model());
        assert_eq!(model.kind().generator(), STYLE_GENERATOR);
    }

    #[test]
    fn an_operator_can_correct_a_style_avatar_to_either_kind() {
        AvatarTest::with(())
            .given(trained(AvatarType::Style))
            .when(operator(Action::CorrectModelData {
                avatar_type: AvatarType::Style,
                output: TrainingOutput {
                    lora_file_url: Some(LORA.into()),
                    config_file_url: Some(CONFIG.into()),
                    finetune_id: None,
                },
                reason: "retrained as a LoRA by hand".into(),
            }))
            .then_expect_events(vec![AvatarEvent::ModelDataCorrected {
                corrected_by: Actor::Operator("alice".into()),
                reason: "retrained as a LoRA by hand".into(),
                previous_type: AvatarType::Style,
                previous_model: Some(style_model()),
                avatar_type: AvatarType::Style,
                model: style_lora(),
                at: at(),
            }]);
    }
}

/// Paid jobs: a submission recorded once, failures that give up on a running job name it for
/// cancelling, and a deletion names every job still running.
mod paid_jobs {
    use super::*;

    const GENERATION: Uuid = Uuid::from_u128(7);

    fn requested() -> AvatarEvent {
        let model = portrait_model();
        AvatarEvent::GenerationRequested {
            owner: OWNER,
            generation_id: GENERATION,
            prompt: "at the sea".into(),
            preset: None,
            endpoint: PORTRAIT_GENERATOR.into(),
            arguments: generation_arguments(
                &model,
                None,
                None,
                "PERSON_ABCDEF12 at the sea".into(),
                1,
            ),
            num_images: 1,
            at: at(),
            aspect: None,
            batch: None,
            origin: None,
        }
    }

    fn record(request_id: &str) -> Action {
        Action::RecordGenerationSubmission {
            generation_id: GENERATION,
            request_id: request_id.into(),
            status_url: format!("https://queue/requests/{request_id}/status"),
            response_url: format!("https://queue/requests/{request_id}"),
            cancel_url: format!("https://queue/requests/{request_id}/cancel"),
        }
    }

    fn generation_submitted(request_id: &str) -> AvatarEvent {
        AvatarEvent::GenerationSubmitted {
            generation_id: GENERATION,
            request_id: request_id.into(),
            status_url: format!("https://queue/requests/{request_id}/status"),
            response_url: format!("https://queue/requests/{request_id}"),
            cancel_url: format!("https://queue/requests/{request_id}/cancel"),
            at: at(),
        }
    }

    #[test]
    fn a_generation_submission_is_recorded_once() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested());
        AvatarTest::with(())
            .given(given.clone())
            .when(system(record("g-1")))
            .then_expect_events(vec![generation_submitted("g-1")]);
        given.push(generation_submitted("g-1"));
        AvatarTest::with(())
            .given(given.clone())
            .when(system(record("g-1")))
            .then_expect_events(vec![]);
        AvatarTest::with(())
            .given(given)
            .when(system(record("g-2")))
            .then_expect_error(AvatarError::GenerationAlreadySubmitted {
                generation_id: GENERATION,
                request_id: "g-1".into(),
            });
    }

    #[test]
    fn a_submission_for_a_finished_or_unknown_generation_is_refused() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested());
        given.push(AvatarEvent::GenerationFailed {
            owner: OWNER,
            generation_id: GENERATION,
            reason: "deadline".into(),
            cancel_url: None,
            at: at(),
        });
        AvatarTest::with(())
            .given(given)
            .when(system(record("g-1")))
            .then_expect_error(AvatarError::GenerationFinished(GENERATION));
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(record("g-1")))
            .then_expect_error(AvatarError::UnknownGeneration(GENERATION));
    }

    #[test]
    fn giving_up_on_a_submitted_generation_names_its_job_to_cancel() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested());
        given.push(generation_submitted("g-1"));
        AvatarTest::with(())
            .given(given.clone())
            .when(system(Action::FailGeneration {
                generation_id: GENERATION,
                reason: "too slow".into(),
                abandon: true,
            }))
            .then_expect_events(vec![AvatarEvent::GenerationFailed {
                owner: OWNER,
                generation_id: GENERATION,
                reason: "too slow".into(),
                cancel_url: Some("https://queue/requests/g-1/cancel".into()),
                at: at(),
            }]);
        // A failure FAL itself reported has nothing left to cancel.
        AvatarTest::with(())
            .given(given)
            .when(system(Action::FailGeneration {
                generation_id: GENERATION,
                reason: "FAL failed".into(),
                abandon: false,
            }))
            .then_expect_events(vec![AvatarEvent::GenerationFailed {
                owner: OWNER,
                generation_id: GENERATION,
                reason: "FAL failed".into(),
                cancel_url: None,
                at: at(),
            }]);
    }

    #[test]
    fn giving_up_on_a_submitted_training_names_its_job_to_cancel() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(system(Action::FailTraining {
                request_id: Some(REQUEST.into()),
                reason: "deadline".into(),
                abandon: true,
            }))
            .then_expect_events(vec![AvatarEvent::TrainingFailed {
                owner: OWNER,
                request_id: Some(REQUEST.into()),
                reason: "deadline".into(),
                cancel_url: Some("https://queue/requests/req-1/cancel".into()),
                at: at(),
            }]);
    }

    #[test]
    fn deleting_names_every_running_generation_job() {
        let mut given = trained(AvatarType::Portrait);
        given.push(requested());
        given.push(generation_submitted("g-1"));
        let events = AvatarTest::with(())
            .given(given)
            .when(user(Action::Delete))
            .inspect_result()
            .unwrap();
        let AvatarEvent::AvatarDeleted {
            running_generation_cancel_urls,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            running_generation_cancel_urls,
            &vec!["https://queue/requests/g-1/cancel".to_owned()]
        );
    }

    #[test]
    fn a_training_awaiting_its_submission_is_known_as_such() {
        let mut avatar = Avatar::default();
        let mut events = with_photos(AvatarType::Portrait, MIN_PHOTOS);
        events.push(training_started(AvatarType::Portrait, TrainingPreset::Fast));
        for e in events {
            cqrs_es::Aggregate::apply(&mut avatar, e);
        }
        assert!(avatar.training_awaiting_submission().is_some());
        cqrs_es::Aggregate::apply(&mut avatar, submitted(REQUEST));
        assert!(avatar.training_awaiting_submission().is_none());
        assert!(avatar.training_request_pending(REQUEST));
    }

    #[test]
    fn old_snapshots_with_unrecorded_generations_still_load() {
        let mut avatar = Avatar::default();
        for e in trained(AvatarType::Portrait) {
            cqrs_es::Aggregate::apply(&mut avatar, e);
        }
        cqrs_es::Aggregate::apply(&mut avatar, requested());
        let mut snapshot = serde_json::to_value(&avatar).unwrap();
        // Snapshots written before submissions were recorded hold `null` per generation.
        snapshot["pending_generations"] = json!({ GENERATION.to_string(): null });
        let loaded: Avatar = serde_json::from_value(snapshot).unwrap();
        assert_eq!(loaded.pending_generation(GENERATION), Some(None));
    }
}

mod deleting {
    use super::*;

    #[test]
    fn deleting_lists_what_must_be_cleaned_up() {
        AvatarTest::with(())
            .given(trained(AvatarType::Style))
            .when(user(Action::Delete))
            .then_expect_events(vec![AvatarEvent::AvatarDeleted {
                owner: OWNER,
                photo_keys: (1..=MIN_PHOTOS).map(|n| photo(n).storage_key).collect(),
                running_training_cancel_url: None,
                model: Some(style_model()),
                at: at(),
                running_generation_cancel_urls: vec![],
            }]);
    }

    #[test]
    fn deleting_during_training_names_the_job_to_cancel() {
        let events = AvatarTest::with(())
            .given(in_training(AvatarType::Portrait))
            .when(user(Action::Delete))
            .inspect_result()
            .unwrap();
        let AvatarEvent::AvatarDeleted {
            running_training_cancel_url,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            running_training_cancel_url.as_deref(),
            Some("https://queue/requests/req-1/cancel")
        );
    }

    #[test]
    fn nothing_is_accepted_after_delete() {
        let mut given = trained(AvatarType::Portrait);
        given.push(AvatarEvent::AvatarDeleted {
            owner: OWNER,
            photo_keys: vec![],
            running_training_cancel_url: None,
            model: None,
            at: at(),
            running_generation_cancel_urls: vec![],
        });
        for command in [
            user(Action::Delete),
            user(generate(1, None)),
            user(Action::UploadPhoto { photo: photo(30) }),
            user(create("again")),
            system(Action::CompleteTraining {
                request_id: REQUEST.into(),
                output: portrait_output(),
            }),
        ] {
            AvatarTest::with(())
                .given(given.clone())
                .when(command)
                .then_expect_error(AvatarError::Deleted);
        }
    }

    #[test]
    fn another_user_cannot_delete_my_avatar() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(stranger(Action::Delete))
            .then_expect_error(AvatarError::NotOwner);
    }

    #[test]
    fn an_operator_may_delete() {
        let events = AvatarTest::with(())
            .given(with_photos(AvatarType::Portrait, 2))
            .when(operator(Action::Delete))
            .inspect_result()
            .unwrap();
        assert!(matches!(events[0], AvatarEvent::AvatarDeleted { .. }));
    }
}

mod correcting {
    use super::*;

    // Seed 000's fix for a "style" avatar whose finetune id was stored as a portrait's LoRA:
    // the correction records who fixed what and why, history stays as it was.
    #[test]
    fn an_operator_corrects_model_data_and_the_type_with_a_reason() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(operator(Action::CorrectModelData {
                avatar_type: AvatarType::Style,
                output: style_output(),
                reason: "legacy row: style avatar saved as portrait".into(),
            }))
            .then_expect_events(vec![AvatarEvent::ModelDataCorrected {
                corrected_by: Actor::Operator("alice".into()),
                reason: "legacy row: style avatar saved as portrait".into(),
                previous_type: AvatarType::Portrait,
                previous_model: Some(portrait_model()),
                avatar_type: AvatarType::Style,
                model: TrainedModel::ProFinetune {
                    finetune_id: FINETUNE.into(),
                    trigger_word: "PERSON_ABCDEF12".into(),
                },
                at: at(),
            }]);
    }

    #[test]
    fn a_correction_must_itself_obey_the_type_rules() {
        AvatarTest::with(())
            .given(trained(AvatarType::Style))
            .when(operator(Action::CorrectModelData {
                avatar_type: AvatarType::Style,
                output: TrainingOutput {
                    finetune_id: Some(FINETUNE.into()),
                    lora_file_url: Some(LORA.into()),
                    config_file_url: None,
                },
                reason: "oops".into(),
            }))
            .then_expect_error(mismatch(
                AvatarType::Style,
                ModelDataProblem::StyleWithLoraFile,
            ));
    }

    #[test]
    fn a_correction_needs_a_reason() {
        AvatarTest::with(())
            .given(trained(AvatarType::Style))
            .when(operator(Action::CorrectModelData {
                avatar_type: AvatarType::Style,
                output: style_output(),
                reason: "  ".into(),
            }))
            .then_expect_error(AvatarError::EmptyReason);
    }

    #[test]
    fn only_trained_avatars_have_model_data_to_correct() {
        AvatarTest::with(())
            .given(in_training(AvatarType::Style))
            .when(operator(Action::CorrectModelData {
                avatar_type: AvatarType::Style,
                output: style_output(),
                reason: "x".into(),
            }))
            .then_expect_error(AvatarError::NotTrained);
    }

    #[test]
    fn users_cannot_correct_model_data() {
        AvatarTest::with(())
            .given(trained(AvatarType::Style))
            .when(user(Action::CorrectModelData {
                avatar_type: AvatarType::Style,
                output: style_output(),
                reason: "x".into(),
            }))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "a Telegram user",
                action: "correct_model_data",
            });
    }

    #[test]
    fn a_corrected_style_avatar_generates_on_the_style_endpoint() {
        let mut given = trained(AvatarType::Portrait);
        given.push(AvatarEvent::ModelDataCorrected {
            corrected_by: Actor::Operator("alice".into()),
            reason: "fix".into(),
            previous_type: AvatarType::Portrait,
            previous_model: Some(portrait_model()),
            avatar_type: AvatarType::Style,
            model: style_model(),
            at: at(),
        });
        let events = AvatarTest::with(())
            .given(given)
            .when(user(generate(1, None)))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested { endpoint, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(endpoint, STYLE_GENERATOR);
    }
}

#[test]
fn actors_round_trip_through_their_text_form() {
    for actor in [
        Actor::User(42),
        Actor::System("training".into()),
        Actor::Operator("alice".into()),
    ] {
        assert_eq!(actor.to_string().parse::<Actor>(), Ok(actor));
    }
    assert!("nobody".parse::<Actor>().is_err());
}

#[test]
fn the_state_survives_a_snapshot_round_trip() {
    use cqrs_es::Aggregate;
    let mut avatar = Avatar::default();
    for event in trained(AvatarType::Portrait) {
        avatar.apply(event);
    }
    let json = serde_json::to_value(&avatar).unwrap();
    let back: Avatar = serde_json::from_value(json).unwrap();
    assert_eq!(back, avatar);
    assert_eq!(back.status, AvatarStatus::Trained);
}

mod packs_starters_and_upscales {
    use super::*;
    use aggregates::presets::UPSCALER;
    use aggregates::{Origin, UpscaleFactor};

    const SOURCE: u128 = 40;
    const UPSCALE: u128 = 41;

    fn from_pack(id: u128, origin: Origin) -> Action {
        let Action::Generate {
            generation_id,
            prompt,
            preset,
            num_images,
            aspect,
            batch,
            ..
        } = generate(id, None)
        else {
            unreachable!()
        };
        Action::Generate {
            generation_id,
            prompt,
            preset,
            num_images,
            aspect,
            batch,
            origin: Some(origin),
        }
    }

    fn image(n: u32, nsfw: bool) -> GeneratedImage {
        GeneratedImage {
            url: format!("https://v3.fal.media/files/out-{n}.png"),
            width: Some(1024),
            height: Some(1024),
            content_type: Some("image/png".into()),
            nsfw,
        }
    }

    /// A trained portrait whose generation `SOURCE` returned two images, the second flagged.
    fn with_finished_generation() -> Vec<AvatarEvent> {
        let mut events = trained(AvatarType::Portrait);
        let requested = AvatarTest::with(())
            .given(events.clone())
            .when(user(generate(SOURCE, None)))
            .inspect_result()
            .unwrap();
        events.extend(requested);
        events.push(AvatarEvent::GenerationCompleted {
            owner: OWNER,
            generation_id: Uuid::from_u128(SOURCE),
            images: vec![image(0, false), image(1, true)],
            at: at(),
        });
        events
    }

    fn upscale(of: u128, image: u8, factor: UpscaleFactor) -> Action {
        Action::Upscale {
            generation_id: Uuid::from_u128(UPSCALE),
            of: Uuid::from_u128(of),
            image,
            factor,
        }
    }

    #[test]
    fn a_packs_prompt_records_the_pack_it_came_from() {
        let origin = Origin::Pack {
            pack: "portrait-business".into(),
        };
        let events = AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(from_pack(1, origin.clone())))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested {
            origin: recorded,
            endpoint,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(recorded.as_ref(), Some(&origin));
        assert_eq!(endpoint, PORTRAIT_GENERATOR);
    }

    #[test]
    fn a_pack_id_outside_the_allowed_letters_is_refused() {
        for bad in ["", "Business", "a b", "../x", &"x".repeat(65)] {
            AvatarTest::with(())
                .given(trained(AvatarType::Portrait))
                .when(user(from_pack(1, Origin::Pack { pack: bad.into() })))
                .then_expect_error(AvatarError::InvalidPack(bad.into()));
        }
    }

    // Starter samples are the system's to make when a training completes, never a user's.
    #[test]
    fn starter_samples_are_asked_for_by_the_system_only() {
        let starter = Origin::Starter {
            pack: "starter-portrait-female".into(),
        };
        let events = AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(from_pack(1, starter.clone())))
            .inspect_result()
            .unwrap();
        assert!(matches!(
            &events[0],
            AvatarEvent::GenerationRequested { origin: Some(o), .. } if *o == starter
        ));
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(from_pack(1, starter)))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "a Telegram user",
                action: "generate",
            });
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(system(generate(2, None)))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "the system",
                action: "generate",
            });
    }

    #[test]
    fn an_upscale_origin_cannot_be_smuggled_into_a_generation() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(from_pack(
                1,
                Origin::Upscale {
                    of: Uuid::from_u128(SOURCE),
                    image: 0,
                    factor: UpscaleFactor::X2,
                },
            )))
            .then_expect_error(AvatarError::InvalidOrigin);
    }

    // The upscale is a generation of its own on FAL's upscaler, naming the image it enlarges.
    #[test]
    fn an_image_is_upscaled_on_the_upscaler_with_its_factor() {
        for factor in UpscaleFactor::ALL {
            AvatarTest::with(())
                .given(with_finished_generation())
                .when(user(upscale(SOURCE, 0, factor)))
                .then_expect_events(vec![AvatarEvent::GenerationRequested {
                    owner: OWNER,
                    generation_id: Uuid::from_u128(UPSCALE),
                    prompt: "in a spacesuit on Mars".into(),
                    preset: None,
                    endpoint: UPSCALER.into(),
                    arguments: json!({
                        "image_url": "https://v3.fal.media/files/out-0.png",
                        "upscale_mode": "factor",
                        "upscale_factor": f64::from(factor.times()),
                    }),
                    num_images: 1,
                    aspect: None,
                    batch: None,
                    origin: Some(Origin::Upscale {
                        of: Uuid::from_u128(SOURCE),
                        image: 0,
                        factor,
                    }),
                    at: at(),
                }]);
        }
    }

    #[test]
    fn a_flagged_a_missing_or_an_unknown_image_cannot_be_upscaled() {
        for (of, image) in [(SOURCE, 1), (SOURCE, 2), (999, 0)] {
            AvatarTest::with(())
                .given(with_finished_generation())
                .when(user(upscale(of, image, UpscaleFactor::X4)))
                .then_expect_error(AvatarError::ImageUnavailable {
                    generation_id: Uuid::from_u128(of),
                    image,
                });
        }
    }

    #[test]
    fn an_upscale_is_not_upscaled_again_and_a_stranger_upscales_nothing() {
        let mut given = with_finished_generation();
        let requested = AvatarTest::with(())
            .given(given.clone())
            .when(user(upscale(SOURCE, 0, UpscaleFactor::X2)))
            .inspect_result()
            .unwrap();
        given.extend(requested);
        given.push(AvatarEvent::GenerationCompleted {
            owner: OWNER,
            generation_id: Uuid::from_u128(UPSCALE),
            images: vec![image(9, false)],
            at: at(),
        });
        AvatarTest::with(())
            .given(given)
            .when(user(Action::Upscale {
                generation_id: Uuid::from_u128(42),
                of: Uuid::from_u128(UPSCALE),
                image: 0,
                factor: UpscaleFactor::X2,
            }))
            .then_expect_error(AvatarError::AlreadyUpscaled);
        AvatarTest::with(())
            .given(with_finished_generation())
            .when(stranger(upscale(SOURCE, 0, UpscaleFactor::X2)))
            .then_expect_error(AvatarError::NotOwner);
    }

    #[test]
    fn an_upscale_reuses_no_generation_id() {
        AvatarTest::with(())
            .given(with_finished_generation())
            .when(user(Action::Upscale {
                generation_id: Uuid::from_u128(SOURCE),
                of: Uuid::from_u128(SOURCE),
                image: 0,
                factor: UpscaleFactor::X2,
            }))
            .then_expect_error(AvatarError::DuplicateGeneration(Uuid::from_u128(SOURCE)));
    }

    // The state keeps images for upscaling only for the latest generations, so it stays small.
    #[test]
    fn only_the_latest_generations_keep_their_images() {
        use aggregates::avatar::UPSCALABLE_GENERATIONS;
        use cqrs_es::Aggregate;
        let mut avatar = Avatar::default();
        for event in with_finished_generation() {
            avatar.apply(event);
        }
        assert!(avatar.generation(Uuid::from_u128(SOURCE)).is_some());
        for n in 0..UPSCALABLE_GENERATIONS as u128 {
            let id = 1000 + n;
            let requested = AvatarTest::with(())
                .given(trained(AvatarType::Portrait))
                .when(user(generate(id, None)))
                .inspect_result()
                .unwrap();
            for event in requested {
                avatar.apply(event);
            }
            avatar.apply(AvatarEvent::GenerationCompleted {
                owner: OWNER,
                generation_id: Uuid::from_u128(id),
                images: vec![image(n as u32, false)],
                at: at(),
            });
        }
        assert_eq!(avatar.generation(Uuid::from_u128(SOURCE)), None);
        assert_eq!(avatar.generations.len(), UPSCALABLE_GENERATIONS);
        let newest = avatar.generation(Uuid::from_u128(1000 + UPSCALABLE_GENERATIONS as u128 - 1));
        assert_eq!(newest.map(|g| g.images.len()), Some(1));
    }
}

mod training_photo_retention {
    use super::*;

    fn photos_deleted() -> AvatarEvent {
        AvatarEvent::TrainingPhotosDeleted {
            photo_keys: (1..=MIN_PHOTOS).map(|n| photo(n).storage_key).collect(),
            at: at(),
        }
    }

    #[test]
    fn after_a_successful_training_the_photos_it_trained_on_are_deleted_on_record() {
        for avatar_type in [AvatarType::Portrait, AvatarType::Style] {
            AvatarTest::with(())
                .given(trained(avatar_type))
                .when(system(Action::DeleteTrainingPhotos))
                .then_expect_events(vec![photos_deleted()]);
        }
    }

    #[test]
    fn deleting_them_again_records_nothing() {
        let mut given = trained(AvatarType::Portrait);
        given.push(photos_deleted());
        AvatarTest::with(())
            .given(given)
            .when(system(Action::DeleteTrainingPhotos))
            .then_expect_events(vec![]);
    }

    #[test]
    fn photos_are_kept_until_a_training_succeeds() {
        let mut failed = in_training(AvatarType::Portrait);
        failed.push(AvatarEvent::TrainingFailed {
            owner: OWNER,
            request_id: Some(REQUEST.into()),
            reason: "FAL said no".into(),
            cancel_url: None,
            at: at(),
        });
        for given in [
            with_photos(AvatarType::Portrait, MIN_PHOTOS),
            in_training(AvatarType::Portrait),
            failed,
        ] {
            AvatarTest::with(())
                .given(given)
                .when(system(Action::DeleteTrainingPhotos))
                .then_expect_error(AvatarError::NotTrained);
        }
    }

    #[test]
    fn only_the_system_deletes_them_on_schedule() {
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(user(Action::DeleteTrainingPhotos))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "a Telegram user",
                action: "delete_training_photos",
            });
        AvatarTest::with(())
            .given(trained(AvatarType::Portrait))
            .when(operator(Action::DeleteTrainingPhotos))
            .then_expect_error(AvatarError::NotPermitted {
                actor: "an operator",
                action: "delete_training_photos",
            });
    }

    #[test]
    fn a_deleted_avatar_has_no_photos_to_expire() {
        let mut given = trained(AvatarType::Portrait);
        given.push(AvatarEvent::AvatarDeleted {
            owner: OWNER,
            photo_keys: vec![],
            running_training_cancel_url: None,
            model: None,
            at: at(),
            running_generation_cancel_urls: vec![],
        });
        AvatarTest::with(())
            .given(given)
            .when(system(Action::DeleteTrainingPhotos))
            .then_expect_error(AvatarError::Deleted);
    }

    #[test]
    fn the_model_still_generates_once_the_photos_are_gone() {
        let mut given = trained(AvatarType::Portrait);
        given.push(photos_deleted());
        let events = AvatarTest::with(())
            .given(given)
            .when(user(generate(1, None)))
            .inspect_result()
            .unwrap();
        let AvatarEvent::GenerationRequested { endpoint, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(endpoint, PORTRAIT_GENERATOR);
    }

    #[test]
    fn the_state_forgets_the_photos_and_a_later_delete_names_none() {
        use cqrs_es::Aggregate;
        let mut avatar = Avatar::default();
        for event in trained(AvatarType::Portrait) {
            avatar.apply(event);
        }
        avatar.apply(photos_deleted());
        assert!(avatar.photos.is_empty());
        assert_eq!(avatar.status, AvatarStatus::Trained);

        let mut given = trained(AvatarType::Portrait);
        given.push(photos_deleted());
        AvatarTest::with(())
            .given(given)
            .when(user(Action::Delete))
            .then_expect_events(vec![AvatarEvent::AvatarDeleted {
                owner: OWNER,
                photo_keys: vec![],
                running_training_cancel_url: None,
                model: Some(portrait_model()),
                at: at(),
                running_generation_cancel_urls: vec![],
            }]);
    }
}
