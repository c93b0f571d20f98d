//! The Telegram inbox's contract, on both databases: an update is kept once however often it
//! comes; one holder per chat, chats in parallel; a holder that lost its lease writes nothing
//! more; a chat is let go only when nothing of it waits.

use std::time::Duration;

use aisha::bot::inbox::{Claim, Inbox, Incoming, Outcome};
use aisha::store::Database;
use sqlx::PgPool;

fn message(update_id: i64, chat: i64, text: &str) -> Incoming {
    let body = serde_json::json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "A"},
            "from": {"id": chat, "is_bot": false, "first_name": "A"},
            "text": text
        }
    });
    Incoming::from_body(body.to_string().as_bytes()).expect("an update")
}

fn inbox(db: &Database, holder: &str, lease: Duration) -> Inbox {
    Inbox::new(db.clone(), holder.to_owned(), lease)
}

async fn kept_once_and_handled_in_order_per_chat(db: Database) {
    let a = inbox(&db, "a", Duration::from_secs(30));
    let b = inbox(&db, "b", Duration::from_secs(30));
    // Two chats; one update delivered three times, to both instances.
    let updates = [
        message(1, 100, "first"),
        message(2, 200, "other chat"),
        message(3, 100, "second"),
    ];
    assert_eq!(a.keep(&updates).await.unwrap(), 3);
    assert_eq!(b.keep(&updates[..1]).await.unwrap(), 0, "a duplicate");
    assert_eq!(a.keep(&updates[2..]).await.unwrap(), 0, "a duplicate");

    // The oldest update's chat goes to the first to ask; the other instance gets the other chat.
    let first = a.claim().await.unwrap().expect("a chat to handle");
    assert_eq!(first.chat, 100);
    let second = b.claim().await.unwrap().expect("the other chat");
    assert_eq!(second.chat, 200);
    assert_eq!(a.claim().await.unwrap(), None, "both chats are held");

    // In update_id order, each once.
    let taken = a.take(first).await.unwrap().expect("update 1");
    assert_eq!((taken.update_id, taken.attempt), (1, 1));
    assert!(taken.body.contains("first"));
    assert_eq!(
        a.finish(first, 1, Outcome::Handled, false).await.unwrap(),
        1
    );
    assert!(
        !a.release_if_idle(first).await.unwrap(),
        "update 3 still waits"
    );
    let taken = a.take(first).await.unwrap().expect("update 3");
    assert_eq!(taken.update_id, 3);
    assert_eq!(
        a.finish(first, 3, Outcome::Handled, false).await.unwrap(),
        1
    );
    assert_eq!(a.take(first).await.unwrap().map(|t| t.update_id), None);
    assert!(a.release_if_idle(first).await.unwrap());

    // A later update of the released chat is taken by whoever asks, with a new fence.
    b.keep(&[message(4, 100, "third")]).await.unwrap();
    let again = b.claim().await.unwrap().expect("the chat again");
    assert_eq!(again.chat, 100);
    assert!(again.fence > first.fence);
    // The old holder's fence is gone: it can neither take nor mark.
    assert_eq!(a.take(first).await.unwrap().map(|t| t.update_id), None);
    assert_eq!(
        a.finish(first, 4, Outcome::Handled, false).await.unwrap(),
        0
    );
    assert!(!a.renew(first).await.unwrap());
    assert!(b.renew(again).await.unwrap());
}

async fn an_interrupted_update_goes_to_the_next_holder_after_the_lease(db: Database) {
    let lease = Duration::from_millis(300);
    let dead = inbox(&db, "dead", lease);
    let alive = inbox(&db, "alive", lease);
    dead.keep(&[message(10, 300, "hello")]).await.unwrap();
    let lost = dead.claim().await.unwrap().expect("the chat");
    let taken = dead.take(lost).await.unwrap().expect("update 10");
    assert_eq!(taken.attempt, 1);
    // The holder stops here (killed, or paused) and renews no more.
    assert_eq!(alive.claim().await.unwrap(), None, "the lease still runs");
    let claim = wait_for_claim(&alive).await;
    assert_eq!(claim.chat, 300);
    let again = alive.take(claim).await.unwrap().expect("update 10 again");
    assert_eq!((again.update_id, again.attempt), (10, 2));
    // The paused holder wakes: what it finished is no longer its to mark.
    assert_eq!(
        dead.finish(lost, 10, Outcome::Handled, false)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        alive
            .finish(claim, 10, Outcome::Handled, false)
            .await
            .unwrap(),
        1
    );
}

async fn a_floods_excess_is_skipped_and_the_rest_kept(db: Database) {
    let a = inbox(&db, "a", Duration::from_secs(30));
    let flood: Vec<_> = (1..=50).map(|n| message(n, 400, "spam")).collect();
    a.keep(&flood).await.unwrap();
    let claim = a.claim().await.unwrap().expect("the chat");
    let waiting = a.waiting(claim, 100).await.unwrap();
    assert_eq!(waiting.len(), 50);
    // Keep 21 (the one in hand and 20 behind it); the rest is skipped at once.
    let skipped = a
        .finish(claim, waiting[20], Outcome::Skipped, true)
        .await
        .unwrap();
    assert_eq!(skipped, 29);
    assert_eq!(
        a.waiting(claim, 100).await.unwrap(),
        (1..=21).collect::<Vec<_>>()
    );
}

async fn wait_for_claim(inbox: &Inbox) -> Claim {
    for _ in 0..200 {
        if let Some(claim) = inbox.claim().await.unwrap() {
            return claim;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the chat was never taken over");
}

#[tokio::test]
async fn kept_once_and_in_order_on_sqlite() {
    let (db, _dir) = crate::support::sqlite().await;
    kept_once_and_handled_in_order_per_chat(db).await;
}

#[sqlx::test(migrations = false)]
async fn kept_once_and_in_order_on_postgres(pool: PgPool) {
    let db = Database::Postgres(pool);
    db.migrate().await.unwrap();
    kept_once_and_handled_in_order_per_chat(db).await;
}

#[tokio::test]
async fn taken_over_after_the_lease_on_sqlite() {
    let (db, _dir) = crate::support::sqlite().await;
    an_interrupted_update_goes_to_the_next_holder_after_the_lease(db).await;
}

#[sqlx::test(migrations = false)]
async fn taken_over_after_the_lease_on_postgres(pool: PgPool) {
    let db = Database::Postgres(pool);
    db.migrate().await.unwrap();
    an_interrupted_update_goes_to_the_next_holder_after_the_lease(db).await;
}

#[tokio::test]
async fn flood_excess_on_sqlite() {
    let (db, _dir) = crate::support::sqlite().await;
    a_floods_excess_is_skipped_and_the_rest_kept(db).await;
}

#[sqlx::test(migrations = false)]
async fn flood_excess_on_postgres(pool: PgPool) {
    let db = Database::Postgres(pool);
    db.migrate().await.unwrap();
    a_floods_excess_is_skipped_and_the_rest_kept(db).await;
}

/// Many workers of two instances claim at once: never two holders of one chat.
#[sqlx::test(migrations = false)]
async fn concurrent_claims_never_give_one_chat_two_holders(pool: PgPool) {
    let db = Database::Postgres(pool);
    db.migrate().await.unwrap();
    let updates: Vec<_> = (1..=200).map(|n| message(n, 500 + n % 10, "x")).collect();
    inbox(&db, "a", Duration::from_secs(30))
        .keep(&updates)
        .await
        .unwrap();
    let mut claims = Vec::new();
    for worker in 0..8 {
        let inbox = inbox(&db, &format!("w{worker}"), Duration::from_secs(30));
        claims.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..20 {
                if let Some(claim) = inbox.claim().await.unwrap() {
                    mine.push(claim.chat);
                }
            }
            mine
        }));
    }
    let mut held = Vec::new();
    for claim in claims {
        held.extend(claim.await.unwrap());
    }
    held.sort_unstable();
    let before = held.len();
    held.dedup();
    assert_eq!(held.len(), before, "a chat was held twice: {held:?}");
    assert_eq!(held.len(), 10, "every chat found a holder");
}

/// An update handled again after an interruption must take the branch it took the first time:
/// the step it reads is the one before its own write, not the one it wrote.
async fn an_update_handled_again_reads_the_step_it_first_read(db: Database) {
    use aggregates::{AvatarType, Gender};
    use aisha::bot::dialogues::Dialogues;
    use aisha::bot::inbox::scope::within;
    use aisha::bot::State;
    use teloxide::dispatching::dialogue::Storage;
    use teloxide::types::ChatId;

    let dialogues = Dialogues::new(db);
    let chat = ChatId(4242);
    let get = |update: i64, attempt: i32| {
        let dialogues = dialogues.clone();
        within(update, attempt, async move {
            dialogues.get_dialogue(chat).await.unwrap()
        })
    };
    let set = |update: i64, attempt: i32, state: State| {
        let dialogues = dialogues.clone();
        within(update, attempt, async move {
            dialogues.update_dialogue(chat, state).await.unwrap()
        })
    };
    let naming = State::AwaitingName {
        avatar_type: AvatarType::Portrait,
        gender: Gender::Female,
    };
    let uploading = State::Uploading {
        avatar_id: uuid::Uuid::new_v4(),
    };

    // Given a chat waiting for a name,
    set(6, 1, naming.clone()).await;
    // when the name (update 7) moves it on to photos and is cut short before its reply,
    assert_eq!(get(7, 1).await, Some(naming.clone()));
    set(7, 1, uploading.clone()).await;
    // then its second handling reads the name step again, and so does a third after it
    // wrote the same step once more;
    assert_eq!(get(7, 2).await, Some(naming.clone()));
    set(7, 2, uploading.clone()).await;
    assert_eq!(get(7, 3).await, Some(naming.clone()));
    // the next update reads the photos step;
    assert_eq!(get(8, 1).await, Some(uploading.clone()));
    // a step ended by an update is still there for that update's re-run, and gone for the next.
    let dialogues_ = dialogues.clone();
    within(8, 1, async move {
        dialogues_.remove_dialogue(chat).await.unwrap()
    })
    .await;
    assert_eq!(get(8, 2).await, Some(uploading));
    assert_eq!(get(9, 1).await.unwrap_or_default(), State::Idle);
    // Outside an update (an operator's tool), the step is what was last written.
    assert_eq!(
        dialogues
            .clone()
            .get_dialogue(chat)
            .await
            .unwrap()
            .unwrap_or_default(),
        State::Idle
    );
}

#[tokio::test]
async fn a_rerun_reads_the_step_before_on_sqlite() {
    let (db, _dir) = crate::support::sqlite().await;
    an_update_handled_again_reads_the_step_it_first_read(db).await;
}

#[sqlx::test(migrations = false)]
async fn a_rerun_reads_the_step_before_on_postgres(pool: PgPool) {
    let db = Database::Postgres(pool);
    db.migrate().await.unwrap();
    an_update_handled_again_reads_the_step_it_first_read(db).await;
}
