//! The questions callers ask an avatar before sending a command, as given/when/then: each
//! answer, and that the command itself is refused for the same reason.

use aggregates::avatar::MIN_PHOTOS;
use aggregates::presets::TrainerParams;
use aggregates::*;
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

const OWNER: i64 = 1001;
const AVATAR: Uuid = Uuid::from_u128(0xabcdef12_0000_4000_8000_000000000002);
const REQUEST: &str = "req-1";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn user(action: Action) -> Command {
    Command::new(Actor::User(OWNER), at(), action)
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

fn with_photos(count: usize) -> Vec<AvatarEvent> {
    let mut events = vec![AvatarEvent::AvatarCreated {
        avatar_id: AVATAR,
        owner: OWNER,
        name: AvatarName::parse("Маша").unwrap(),
        gender: Gender::Female,
        avatar_type: AvatarType::Portrait,
        at: at(),
    }];
    events.extend((1..=count).map(|n| AvatarEvent::PhotoUploaded {
        photo: photo(n),
        photo_count: n,
        at: at(),
    }));
    events
}

fn in_training() -> Vec<AvatarEvent> {
    let mut events = with_photos(MIN_PHOTOS);
    let params = TrainerParams::for_preset(
        AvatarType::Portrait,
        StyleTrainer::ProFinetune,
        TrainingPreset::Balanced,
        "PERSON_ABCDEF12",
        &format!("aisha-{AVATAR}"),
    );
    events.push(AvatarEvent::TrainingStarted {
        training_id: Uuid::new_v4(),
        owner: OWNER,
        avatar_type: AvatarType::Portrait,
        preset: TrainingPreset::Balanced,
        endpoint: params.endpoint().to_owned(),
        params,
        photo_keys: (1..=MIN_PHOTOS).map(|n| photo(n).storage_key).collect(),
        at: at(),
    });
    events
}

fn failed() -> Vec<AvatarEvent> {
    let mut events = in_training();
    events.push(AvatarEvent::TrainingFailed {
        owner: OWNER,
        request_id: None,
        reason: "FAL said no".into(),
        cancel_url: None,
        at: at(),
    });
    events
}

fn trained() -> Vec<AvatarEvent> {
    let mut events = in_training();
    events.push(AvatarEvent::TrainingCompleted {
        owner: OWNER,
        request_id: REQUEST.into(),
        model: TrainedModel::Portrait {
            lora_file_url: "https://fal.media/files/lora.safetensors".into(),
            config_file_url: None,
            trigger_phrase: "PERSON_ABCDEF12".into(),
        },
        at: at(),
    });
    events
}

/// The avatar the events leave.
fn given(events: Vec<AvatarEvent>) -> Avatar {
    let mut avatar = Avatar::default();
    for event in events {
        avatar.apply(event);
    }
    avatar
}

fn start_training() -> Action {
    Action::StartTraining {
        training_id: Uuid::new_v4(),
        preset: TrainingPreset::Balanced,
        style: StyleTrainer::Lora,
    }
}

fn generate() -> Action {
    Action::Generate {
        generation_id: Uuid::from_u128(7),
        prompt: "in a garden".into(),
        preset: None,
        num_images: 1,
        aspect: None,
        batch: None,
        origin: None,
    }
}

#[test]
fn a_draft_takes_photos() {
    // given a draft, when asked, then photos are welcome
    assert_eq!(given(with_photos(3)).can_take_photos(), Ok(()));
}

#[test]
fn a_failed_training_takes_photos_again() {
    assert_eq!(given(failed()).can_take_photos(), Ok(()));
}

#[test]
fn training_and_trained_avatars_take_no_photos() {
    assert_eq!(
        given(in_training()).can_take_photos(),
        Err(AvatarError::PhotosLocked)
    );
    assert_eq!(
        given(trained()).can_take_photos(),
        Err(AvatarError::PhotosLocked)
    );
}

#[test]
fn the_answer_on_photos_is_the_rule_of_removing_one() {
    // given a trained avatar, when a photo is removed, then the refusal is the question's
    TestFramework::<Avatar>::with(())
        .given(trained())
        .when(user(Action::RemovePhoto {
            photo_id: "p1".into(),
        }))
        .then_expect_error(given(trained()).can_take_photos().unwrap_err());
}

#[test]
fn enough_photos_start_a_training() {
    assert_eq!(given(with_photos(MIN_PHOTOS)).can_start_training(), Ok(()));
    assert_eq!(given(failed()).can_start_training(), Ok(()));
}

#[test]
fn too_few_photos_start_no_training() {
    let refusal = AvatarError::NotEnoughPhotos {
        have: MIN_PHOTOS - 1,
        min: MIN_PHOTOS,
    };
    assert_eq!(
        given(with_photos(MIN_PHOTOS - 1)).can_start_training(),
        Err(refusal.clone())
    );
    TestFramework::<Avatar>::with(())
        .given(with_photos(MIN_PHOTOS - 1))
        .when(user(start_training()))
        .then_expect_error(refusal);
}

#[test]
fn a_training_under_way_or_done_starts_no_other() {
    assert_eq!(
        given(in_training()).can_start_training(),
        Err(AvatarError::TrainingAlreadyStarted)
    );
    assert_eq!(
        given(trained()).can_start_training(),
        Err(AvatarError::AlreadyTrained)
    );
    TestFramework::<Avatar>::with(())
        .given(trained())
        .when(user(start_training()))
        .then_expect_error(AvatarError::AlreadyTrained);
}

#[test]
fn only_a_trained_avatar_generates() {
    assert_eq!(given(trained()).can_generate(), Ok(()));
    for events in [with_photos(MIN_PHOTOS), in_training(), failed()] {
        assert_eq!(given(events).can_generate(), Err(AvatarError::NotTrained));
    }
    TestFramework::<Avatar>::with(())
        .given(in_training())
        .when(user(generate()))
        .then_expect_error(AvatarError::NotTrained);
}

#[test]
fn statuses_parse_back_from_their_names() {
    for status in [
        AvatarStatus::New,
        AvatarStatus::Draft,
        AvatarStatus::Training,
        AvatarStatus::Trained,
        AvatarStatus::TrainingFailed,
        AvatarStatus::Deleted,
    ] {
        assert_eq!(AvatarStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(AvatarStatus::parse("Trained"), None);
    assert_eq!(AvatarStatus::parse(""), None);
}
