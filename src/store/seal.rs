//! What of a stored event is personal, and how it is sealed: those fields are written as
//! placeholders, their real values in one sealed blob beside them. Opened with the key, the
//! event is whole again; once the key is destroyed it still decodes, with every personal field
//! reading `[erased]` (text), 0 (ids), or empty — so history replays and audits for ever.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::keys::SecretKey;

/// The field that carries the sealed values, inside the event's own object.
pub const SEALED_FIELD: &str = "_sealed";
/// What a personal text reads as once its key is gone.
pub const ERASED: &str = "[erased]";
/// Prefix of a Telegram user in the `actor` metadata.
const TELEGRAM_ACTOR: &str = "telegram:";

/// How a personal field reads when erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erase {
    /// A text: `[erased]`.
    Text,
    /// A number (a Telegram id, a size): 0.
    Zero,
    /// A list or an object: empty.
    Empty,
}

/// A trained model's personal fields (its files and trigger); its `type` tag stays readable.
macro_rules! model_fields {
    ($field:literal) => {
        [
            (concat!($field, ".lora_file_url"), Erase::Text),
            (concat!($field, ".config_file_url"), Erase::Text),
            (concat!($field, ".trigger_phrase"), Erase::Text),
            (concat!($field, ".trigger_word"), Erase::Text),
            (concat!($field, ".finetune_id"), Erase::Text),
        ]
    };
}

/// The personal fields of each Avatar event, as dotted paths inside the event's object.
pub fn avatar_fields(event_type: &str) -> &'static [(&'static str, Erase)] {
    use Erase::*;
    match event_type {
        "AvatarCreated" => &[("owner", Zero), ("name", Text)],
        "AvatarRenamed" => &[("name", Text)],
        "PhotoUploaded" => &[
            ("photo.photo_id", Text),
            ("photo.content_hash", Text),
            ("photo.storage_key", Text),
            ("photo.byte_size", Zero),
        ],
        "PhotoRemoved" => &[("photo_id", Text)],
        "TrainingStarted" => &[("owner", Zero), ("photo_keys", Empty)],
        "TrainingSubmitted" => &[("archive_url", Text)],
        "TrainingCompleted" => {
            const F: [(&str, Erase); 6] = {
                let m = model_fields!("model");
                [("owner", Zero), m[0], m[1], m[2], m[3], m[4]]
            };
            &F
        }
        "TrainingFailed" => &[("owner", Zero), ("reason", Text)],
        "TrainingPhotosDeleted" => &[("photo_keys", Empty)],
        "GenerationRequested" => &[("owner", Zero), ("prompt", Text), ("arguments", Empty)],
        // Each image's address is personal; how many there were, their size and flags are not
        // (the analytics count them, and must count the same after an erasure).
        "GenerationCompleted" => &[("owner", Zero), ("images[].url", Text)],
        "GenerationFailed" => &[("owner", Zero), ("reason", Text)],
        "AvatarDeleted" => {
            const F: [(&str, Erase); 7] = {
                let m = model_fields!("model");
                [
                    ("owner", Zero),
                    ("photo_keys", Empty),
                    m[0],
                    m[1],
                    m[2],
                    m[3],
                    m[4],
                ]
            };
            &F
        }
        "ModelDataCorrected" => {
            const F: [(&str, Erase); 11] = {
                let (p, m) = (model_fields!("previous_model"), model_fields!("model"));
                [
                    ("reason", Text),
                    p[0],
                    p[1],
                    p[2],
                    p[3],
                    p[4],
                    m[0],
                    m[1],
                    m[2],
                    m[3],
                    m[4],
                ]
            };
            &F
        }
        _ => &[],
    }
}

/// The authenticated context of one sealed part: binds it to its event, so a blob copied into
/// another event (or another avatar) does not open.
pub fn context(aggregate_type: &str, aggregate_id: &str, sequence: usize, part: &str) -> Vec<u8> {
    format!("aisha/1|{aggregate_type}|{aggregate_id}|{sequence}|{part}").into_bytes()
}

fn erased(value: &Value, how: Erase) -> Value {
    match how {
        Erase::Text => Value::String(ERASED.to_owned()),
        Erase::Zero => Value::from(0),
        Erase::Empty => match value {
            Value::Object(_) => Value::Object(Map::new()),
            _ => Value::Array(Vec::new()),
        },
    }
}

/// The value at a dotted path; a numeric part indexes a list (`images.0.url`).
fn slot<'v>(object: &'v mut Map<String, Value>, path: &str) -> Option<&'v mut Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut here = object.get_mut(first)?;
    for part in parts {
        here = match here {
            Value::Array(items) => items.get_mut(part.parse::<usize>().ok()?)?,
            Value::Object(map) => map.get_mut(part)?,
            _ => return None,
        };
    }
    Some(here)
}

/// A spec path with `[]` (every element of a list) as the concrete paths of `object`.
fn expand(object: &Map<String, Value>, path: &str) -> Vec<String> {
    let Some((list, rest)) = path.split_once("[]") else {
        return vec![path.to_owned()];
    };
    let len = list
        .split('.')
        .try_fold(None::<&Value>, |here, part| match here {
            None => object.get(part).map(Some),
            Some(Value::Object(map)) => map.get(part).map(Some),
            Some(_) => None,
        })
        .flatten()
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    (0..len).map(|i| format!("{list}.{i}{rest}")).collect()
}

/// The object holding an event's fields: `{"Type": {…}}` → the inner object.
fn fields_of(payload: &mut Value) -> Option<&mut Map<String, Value>> {
    let outer = payload.as_object_mut()?;
    if outer.len() != 1 {
        return None;
    }
    outer.values_mut().next()?.as_object_mut()
}

/// Seals `fields` of `object` in place: placeholders in, the real values sealed under
/// [`SEALED_FIELD`]. Absent and `null` fields are left alone (nothing personal in them).
fn seal_object(
    object: &mut Map<String, Value>,
    fields: &[(&str, Erase)],
    key: &SecretKey,
    context: &[u8],
) {
    let mut sealed = Map::new();
    for (spec, how) in fields {
        for path in expand(object, spec) {
            if let Some(value) = slot(object, &path) {
                if value.is_null() {
                    continue;
                }
                let placeholder = erased(value, *how);
                sealed.insert(path, std::mem::replace(value, placeholder));
            }
        }
    }
    if sealed.is_empty() {
        return;
    }
    let plain = serde_json::to_vec(&Value::Object(sealed)).expect("JSON values serialize");
    object.insert(
        SEALED_FIELD.to_owned(),
        Value::String(B64.encode(key.seal(&plain, context))),
    );
}

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Nothing was sealed (an old event, or nothing personal in it).
    Plain,
    /// Sealed and opened: the event is whole.
    Whole,
    /// Sealed, and the key is gone (or the blob does not open): placeholders remain.
    Erased,
}

fn open_object(object: &mut Map<String, Value>, key: Option<&SecretKey>, context: &[u8]) -> Opened {
    let Some(blob) = object.remove(SEALED_FIELD) else {
        return Opened::Plain;
    };
    let values = key
        .zip(blob.as_str())
        .and_then(|(key, text)| key.open(&B64.decode(text).ok()?, context))
        .and_then(|plain| serde_json::from_slice::<Map<String, Value>>(&plain).ok());
    let Some(values) = values else {
        return Opened::Erased;
    };
    for (path, value) in values {
        if let Some(place) = slot(object, &path) {
            *place = value;
        }
    }
    Opened::Whole
}

/// Seals an Avatar event's personal fields.
pub fn seal_avatar_payload(event_type: &str, payload: &mut Value, key: &SecretKey, context: &[u8]) {
    if let Some(object) = fields_of(payload) {
        seal_object(object, avatar_fields(event_type), key, context);
    }
}

/// Seals the metadata's personal entries: a Telegram user as the actor.
pub fn seal_metadata(metadata: &mut Value, key: &SecretKey, context: &[u8]) {
    if let Some(object) = metadata.as_object_mut() {
        let personal = object
            .get("actor")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with(TELEGRAM_ACTOR));
        if personal {
            seal_object(object, &[("actor", Erase::Text)], key, context);
        }
    }
}

/// What the feed's readers see of sealed metadata, without opening it. [`seal_metadata`] seals
/// one entry, a Telegram user as the actor, so a sealed blob means exactly that: the actor reads
/// `telegram:` with no id. A read model may keep that a user acted, never which one (the owner
/// comes from the events), and no reader of the feed pays a decryption for it.
pub fn withhold_sealed_metadata(metadata: &mut std::collections::HashMap<String, String>) {
    if metadata.remove(SEALED_FIELD).is_some() {
        metadata.insert("actor".to_owned(), TELEGRAM_ACTOR.to_owned());
    }
}

/// Opens an event's payload (or metadata, `event_object` false) in place.
pub fn open(
    value: &mut Value,
    event_object: bool,
    key: Option<&SecretKey>,
    context: &[u8],
) -> Opened {
    let object = if event_object {
        fields_of(value)
    } else {
        value.as_object_mut()
    };
    match object {
        Some(object) => open_object(object, key, context),
        None => Opened::Plain,
    }
}

/// Whether a stored text holds anything sealed: lets readers skip parsing what has nothing to open.
pub fn mentions_sealed(text: &str) -> bool {
    text.contains(SEALED_FIELD)
}

/// A whole snapshot, sealed as one blob.
pub fn seal_whole(value: &Value, key: &SecretKey, context: &[u8]) -> Value {
    let plain = serde_json::to_vec(value).expect("JSON values serialize");
    let mut object = Map::new();
    object.insert(
        SEALED_FIELD.to_owned(),
        Value::String(B64.encode(key.seal(&plain, context))),
    );
    Value::Object(object)
}

/// A sealed snapshot's value; `None` if it cannot be opened. An unsealed one passes through.
pub fn open_whole(value: Value, key: Option<&SecretKey>, context: &[u8]) -> Option<Value> {
    let Some(blob) = value.get(SEALED_FIELD).and_then(Value::as_str) else {
        return Some(value);
    };
    let plain = key?.open(&B64.decode(blob).ok()?, context)?;
    serde_json::from_slice(&plain).ok()
}

#[cfg(test)]
mod tests {
    use aggregates::AvatarEvent;
    use serde_json::json;

    use super::*;

    fn key() -> SecretKey {
        SecretKey::random()
    }

    fn generation_requested() -> Value {
        json!({"GenerationRequested": {
            "owner": 918273645, "generation_id": "7d0c5bce-3d3c-4c59-9a53-3bd2b6f8a2c1",
            "prompt": "astronaut riding a pink giraffe", "preset": null, "endpoint": "fal-ai/flux-lora",
            "arguments": {"prompt": "TOK astronaut riding a pink giraffe"}, "num_images": 1,
            "at": "2026-12-02T03:00:00Z"}})
    }

    #[test]
    fn a_sealed_event_hides_what_is_personal_and_opens_whole_with_its_key() {
        let key = key();
        let original = generation_requested();
        let mut stored = original.clone();
        let cx = context("Avatar", "a", 7, "payload");
        seal_avatar_payload("GenerationRequested", &mut stored, &key, &cx);

        let text = stored.to_string();
        assert!(!text.contains("giraffe"), "{text}");
        assert!(!text.contains("918273645"), "{text}");
        assert!(
            text.contains("fal-ai/flux-lora"),
            "the endpoint stays readable"
        );

        let mut opened = stored.clone();
        assert_eq!(open(&mut opened, true, Some(&key), &cx), Opened::Whole);
        assert_eq!(opened, original);
    }

    #[test]
    fn without_its_key_an_event_still_decodes_with_placeholders() {
        let key = key();
        let cx = context("Avatar", "a", 7, "payload");
        for (event_type, mut payload) in [
            ("GenerationRequested", generation_requested()),
            (
                "AvatarCreated",
                json!({"AvatarCreated": {"avatar_id": "7d0c5bce-3d3c-4c59-9a53-3bd2b6f8a2c1",
                    "owner": 918273645, "name": "Alice", "gender": "female", "avatar_type": "portrait",
                    "at": "2026-12-02T03:00:00Z"}}),
            ),
            (
                "TrainingCompleted",
                json!({"TrainingCompleted": {"owner": 918273645, "request_id": "r1",
                    "model": {"type": "portrait", "lora_file_url": "https://x/lora.safetensors",
                    "config_file_url": null, "trigger_phrase": "TOK"},
                    "at": "2026-12-02T03:00:00Z"}}),
            ),
        ] {
            seal_avatar_payload(event_type, &mut payload, &key, &cx);
            assert_eq!(open(&mut payload, true, None, &cx), Opened::Erased);
            let event: AvatarEvent = serde_json::from_value(payload.clone())
                .unwrap_or_else(|e| panic!("{event_type} must decode erased: {e}: {payload}"));
            assert_eq!(event.name(), event_type);
            let text = payload.to_string();
            assert!(
                !text.contains("918273645") && !text.contains("Alice") && !text.contains("giraffe")
            );
            assert!(text.contains(ERASED));
        }
    }

    #[test]
    fn erased_images_keep_their_count_and_sizes_but_not_their_addresses() {
        let key = key();
        let cx = context("Avatar", "a", 9, "payload");
        let original = json!({"GenerationCompleted": {"owner": 918273645,
            "generation_id": "7d0c5bce-3d3c-4c59-9a53-3bd2b6f8a2c1",
            "images": [{"url": "https://x/one.png", "width": 512, "height": 512, "content_type": "image/png", "nsfw": false},
                       {"url": "https://x/two.png", "width": 512, "height": 768, "content_type": "image/png", "nsfw": true}],
            "at": "2026-12-02T03:00:00Z"}});
        let mut stored = original.clone();
        seal_avatar_payload("GenerationCompleted", &mut stored, &key, &cx);
        assert!(!stored.to_string().contains("one.png"));
        let mut erased = stored.clone();
        open(&mut erased, true, None, &cx);
        let event: AvatarEvent = serde_json::from_value(erased).unwrap();
        let AvatarEvent::GenerationCompleted { images, .. } = event else {
            unreachable!()
        };
        assert_eq!(images.len(), 2);
        assert_eq!(
            (images[1].height, images[1].nsfw, images[1].url.as_str()),
            (Some(768), true, ERASED)
        );
        open(&mut stored, true, Some(&key), &cx);
        assert_eq!(stored, original);
    }

    #[test]
    fn a_blob_moved_to_another_event_does_not_open() {
        let key = key();
        let mut payload = generation_requested();
        seal_avatar_payload(
            "GenerationRequested",
            &mut payload,
            &key,
            &context("Avatar", "a", 7, "payload"),
        );
        assert_eq!(
            open(
                &mut payload,
                true,
                Some(&key),
                &context("Avatar", "a", 8, "payload")
            ),
            Opened::Erased
        );
    }

    #[test]
    fn only_a_telegram_actor_is_sealed_in_metadata() {
        let key = key();
        let cx = context("Avatar", "a", 1, "metadata");
        let mut user = json!({"actor": "telegram:918273645", "command": "Generate"});
        seal_metadata(&mut user, &key, &cx);
        assert_eq!(user["actor"], ERASED);
        let mut system = json!({"actor": "system:training", "command": "CompleteTraining"});
        seal_metadata(&mut system, &key, &cx);
        assert_eq!(system["actor"], "system:training");
        assert!(system.get(SEALED_FIELD).is_none());
        open(&mut user, false, Some(&key), &cx);
        assert_eq!(user["actor"], "telegram:918273645");
    }

    #[test]
    fn the_feed_sees_that_a_telegram_user_acted_and_not_which_one() {
        let key = key();
        let cx = context("Avatar", "a", 1, "metadata");
        let stored = |mut metadata: Value| {
            seal_metadata(&mut metadata, &key, &cx);
            let mut seen: std::collections::HashMap<String, String> =
                serde_json::from_str(&metadata.to_string()).unwrap();
            withhold_sealed_metadata(&mut seen);
            seen
        };
        let user = stored(json!({"actor": "telegram:918273645", "command": "Generate"}));
        assert_eq!(user["actor"], "telegram:");
        assert_eq!(user["command"], "Generate");
        assert!(!user.contains_key(SEALED_FIELD));
        assert!(!user.values().any(|v| v.contains("918273645")));
        let system = stored(json!({"actor": "system:training", "command": "CompleteTraining"}));
        assert_eq!(system["actor"], "system:training");
        assert_eq!(system.len(), 2);
    }
}
