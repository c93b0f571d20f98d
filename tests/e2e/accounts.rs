//! The credits ledger on both backends: movements that survive a reload, races for the last
//! credits and for one payment, the owner check, the operator's `credits` commands run as the
//! real binary, and `audit verify` telling a healthy ledger from a tampered one.

use std::time::Duration;

use aggregates::{
    Account, AccountAction, AccountCommand, AccountError, AccountEvent, Action, Actor, GrantSource,
    ReleaseReason, ReservationPurpose, TrainingPreset,
};
use aisha::audit;
use aisha::store::accounts::{AccountStore, AccountStoreError};
use aisha::store::feed::Feed;
use aisha::store::{AvatarStore, Database};
use chrono::Utc;
use cqrs_es::Aggregate;
use projections::Cursor;
use uuid::Uuid;

use crate::projections::{aisha_cli, catch_up_all};
use crate::support::*;

on_both_backends!(
    grants_and_a_reservation_round_trip_through_a_reload,
    two_reservations_racing_for_the_last_credits_only_one_wins,
    one_payment_recorded_twice_at_once_is_credited_once,
    a_user_cannot_act_on_another_users_account,
    account_events_stay_out_of_the_avatar_feed_and_read_models,
    credits_grant_and_show_run_as_the_binary,
    audit_verify_passes_a_healthy_ledger_and_names_tampered_accounts,
);

const OTHER: i64 = 5151;

fn operator(action: AccountAction) -> AccountCommand {
    AccountCommand::new(Actor::Operator("ops".into()), Utc::now(), action)
}

fn system(action: AccountAction) -> AccountCommand {
    AccountCommand::new(Actor::System("test".into()), Utc::now(), action)
}

fn user(telegram_id: i64, action: AccountAction) -> AccountCommand {
    AccountCommand::new(Actor::User(telegram_id), Utc::now(), action)
}

fn grant(credits: u32) -> AccountCommand {
    operator(AccountAction::GrantCredits {
        credits,
        reason: "test grant".into(),
    })
}

fn training() -> ReservationPurpose {
    ReservationPurpose::Training {
        avatar_id: Uuid::new_v4(),
        preset: TrainingPreset::Fast,
    }
}

fn reserve(telegram_id: i64, reservation_id: Uuid, credits: u32) -> AccountCommand {
    user(
        telegram_id,
        AccountAction::Reserve {
            reservation_id,
            credits,
            purpose: training(),
        },
    )
}

fn release(reservation_id: Uuid) -> AccountCommand {
    system(AccountAction::Release {
        reservation_id,
        reason: ReleaseReason::Cancelled,
    })
}

fn purchase(charge: &str, credits: u32) -> AccountCommand {
    system(AccountAction::RecordPurchase {
        pack: "small".into(),
        credits,
        stars: 50,
        telegram_payment_charge_id: charge.into(),
    })
}

async fn run(store: &AccountStore, telegram_id: i64, command: AccountCommand) -> Account {
    let name = command.name();
    store
        .execute(telegram_id, command, Uuid::new_v4())
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {e}"))
        .state
}

async fn grants_and_a_reservation_round_trip_through_a_reload(db: Database) {
    let store = AccountStore::new(db.clone());
    run(&store, OWNER, grant(50)).await;
    run(
        &store,
        OWNER,
        system(AccountAction::GrantWelcome { credits: 10 }),
    )
    .await;
    let captured = Uuid::new_v4();
    let released = Uuid::new_v4();
    run(&store, OWNER, reserve(OWNER, captured, 15)).await;
    let held = run(&store, OWNER, reserve(OWNER, released, 5)).await;
    assert_eq!((held.available(), held.reserved()), (40, 20));
    run(
        &store,
        OWNER,
        system(AccountAction::Capture {
            reservation_id: captured,
        }),
    )
    .await;
    let before = run(&store, OWNER, release(released)).await;
    assert_eq!((before.available(), before.reserved()), (45, 0));

    // Another store on the same database, as after a restart, reads the same account.
    let reloaded = AccountStore::new(db.clone());
    let loaded = reloaded.load_with_sequence(OWNER).await.unwrap();
    assert_eq!(loaded.state, before);
    assert_eq!(loaded.sequence, 6);
    assert_eq!((loaded.state.granted, loaded.state.spent), (60, 15));
    let history = reloaded.history(OWNER).await.unwrap();
    let types: Vec<&str> = history.iter().map(|h| h.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CreditsGranted",
            "CreditsGranted",
            "CreditsReserved",
            "CreditsReserved",
            "ReservationCaptured",
            "ReservationReleased"
        ]
    );
    assert_eq!(history[0].actor.as_deref(), Some("operator:ops"));
    assert_eq!(history[2].actor.as_deref(), Some("telegram:4242"));
    assert_eq!(history[4].command.as_deref(), Some("capture"));
    let events: Vec<AccountEvent> = history.iter().map(|h| h.event.clone()).collect();
    assert_eq!(aggregates::balance_from_events(&events), 45);
    assert_eq!(reloaded.accounts().await.unwrap(), vec![OWNER]);

    // A retried reservation and a second release change nothing, after the reload too.
    let again = reloaded
        .execute(OWNER, release(released), Uuid::new_v4())
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(reloaded.history(OWNER).await.unwrap().len(), 6);
}

async fn two_reservations_racing_for_the_last_credits_only_one_wins(db: Database) {
    // Several rounds, each on its own account, so that the two commands really meet.
    for round in 0..5 {
        let telegram_id = 9_000 + round;
        run(&AccountStore::new(db.clone()), telegram_id, grant(10)).await;
        // Two stores, as two instances of the bot would have.
        let (a, b) = (AccountStore::new(db.clone()), AccountStore::new(db.clone()));
        let first = tokio::spawn(async move {
            a.execute(
                telegram_id,
                reserve(telegram_id, Uuid::new_v4(), 7),
                Uuid::new_v4(),
            )
            .await
        });
        let second = tokio::spawn(async move {
            b.execute(
                telegram_id,
                reserve(telegram_id, Uuid::new_v4(), 7),
                Uuid::new_v4(),
            )
            .await
        });
        let (first, second) = tokio::join!(first, second);
        let outcomes = [first.unwrap(), second.unwrap()];
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        let refused = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert!(
            matches!(
                refused,
                AccountStoreError::Rejected(AccountError::InsufficientCredits {
                    needed: 7,
                    balance: 3
                })
            ),
            "round {round}: {refused}"
        );
        let store = AccountStore::new(db.clone());
        let account = store.load(telegram_id).await.unwrap();
        assert_eq!((account.available(), account.reserved()), (3, 7));
        assert_eq!(store.history(telegram_id).await.unwrap().len(), 2);
    }
}

async fn one_payment_recorded_twice_at_once_is_credited_once(db: Database) {
    for round in 0..5 {
        let telegram_id = 9_100 + round;
        let charge = format!("charge-{round}");
        let (a, b) = (AccountStore::new(db.clone()), AccountStore::new(db.clone()));
        let (c1, c2) = (charge.clone(), charge.clone());
        let first = tokio::spawn(async move {
            a.execute(telegram_id, purchase(&c1, 100), Uuid::new_v4())
                .await
        });
        let second = tokio::spawn(async move {
            b.execute(telegram_id, purchase(&c2, 100), Uuid::new_v4())
                .await
        });
        let (first, second) = tokio::join!(first, second);
        let (first, second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
        assert_eq!(
            first.events.len() + second.events.len(),
            1,
            "round {round}: exactly one of the two recorded the payment"
        );
        assert_eq!(first.state.available(), 100);
        assert_eq!(second.state.available(), 100);

        // Telegram delivers it a third time, later: still one credit.
        let store = AccountStore::new(db.clone());
        let third = store
            .execute(telegram_id, purchase(&charge, 100), Uuid::new_v4())
            .await
            .unwrap();
        assert!(third.events.is_empty());
        let account = store.load(telegram_id).await.unwrap();
        assert_eq!((account.available(), account.purchased), (100, 100));
        let history = store.history(telegram_id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert!(matches!(
            &history[0].event,
            AccountEvent::CreditsPurchased { telegram_payment_charge_id, .. }
                if *telegram_payment_charge_id == charge
        ));
    }
}

async fn a_user_cannot_act_on_another_users_account(db: Database) {
    let store = AccountStore::new(db);
    run(&store, OTHER, grant(30)).await;
    for target in [OTHER, 777] {
        let refused = store
            .execute(target, reserve(OWNER, Uuid::new_v4(), 5), Uuid::new_v4())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, AccountStoreError::Rejected(AccountError::NotOwner)),
            "{refused}"
        );
    }
    assert_eq!(store.load(OTHER).await.unwrap().available(), 30);
    assert_eq!(store.history(OTHER).await.unwrap().len(), 1);
    assert_eq!(store.accounts().await.unwrap(), vec![OTHER]);
    // Their own account is theirs to use.
    let own = reserve(OWNER, Uuid::new_v4(), 5);
    let refused = store.execute(OWNER, own, Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(
        refused,
        AccountStoreError::Rejected(AccountError::InsufficientCredits { .. })
    ));
}

async fn account_events_stay_out_of_the_avatar_feed_and_read_models(db: Database) {
    let avatars = AvatarStore::new(db.clone());
    let accounts = AccountStore::new(db.clone());
    let id = avatar_with_photos(&avatars, 2).await;
    run(&accounts, OWNER, grant(20)).await;
    run(&accounts, OWNER, reserve(OWNER, Uuid::new_v4(), 5)).await;
    avatars
        .execute(
            id,
            by_owner(Action::Rename {
                name: "Новое имя".into(),
            }),
            Uuid::new_v4(),
        )
        .await
        .unwrap();

    let feed = Feed::new(db.clone());
    // PostgreSQL's feed may hold events back for a moment; wait for all four avatar events.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = feed.read_after(Cursor::START, 100).await.unwrap();
        if seen.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sequences: Vec<(Uuid, u64)> = seen.iter().map(|e| (e.avatar_id, e.sequence)).collect();
    assert_eq!(sequences, [(id, 1), (id, 2), (id, 3), (id, 4)]);

    catch_up_all(&feed).await;
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?} {:?}", report.drifts, report.ledger);
    assert_eq!((report.avatars, report.events), (1, 4));
    assert_eq!((report.ledger.accounts, report.ledger.events), (1, 2));
    assert_eq!(report.ledger.problems, []);
}

async fn credits_grant_and_show_run_as_the_binary(db: Database) {
    let out = aisha_cli(
        &db,
        &[
            "credits",
            "grant",
            "4242",
            "50",
            "--reason",
            "sorry for the outage",
            "--by",
            "alice",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("granted 50 credits to 4242 (by operator:alice): 50 available, 0 reserved"),
        "{stdout}"
    );

    // Refused before anything is written: no reason, a blank one, nothing to grant, a negative
    // amount. Each says why in one line on stderr.
    for (args, says) in [
        (vec!["credits", "grant", "4242", "5"], "--reason"),
        (
            vec!["credits", "grant", "4242", "5", "--reason", "   "],
            "blank",
        ),
        (vec!["credits", "grant", "4242", "0", "--reason", "x"], "0"),
        (
            vec!["credits", "grant", "4242", "-5", "--reason", "x"],
            "-5",
        ),
    ] {
        let out = aisha_cli(&db, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // The user reserves some (as the bot will), enough movements pile up that only the last 20
    // are shown, and the last grant's reason would drive the terminal if printed raw.
    let store = AccountStore::new(db.clone());
    run(&store, OWNER, reserve(OWNER, Uuid::new_v4(), 15)).await;
    for _ in 0..20 {
        run(&store, OWNER, grant(1)).await;
    }
    run(
        &store,
        OWNER,
        operator(AccountAction::GrantCredits {
            credits: 1,
            reason: "\u{1b}[2Jall good\u{202e}".into(),
        }),
    )
    .await;
    assert_eq!(store.history(OWNER).await.unwrap().len(), 23);

    let out = aisha_cli(&db, &["credits", "show", "4242"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("account 4242: 56 available, 15 reserved"),
        "{stdout}"
    );
    assert!(stdout.contains("last 20 of 23 movements"), "{stdout}");
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{stdout:?}"
    );
    assert!(stdout.contains("\\u{1b}[2Jall good\\u{202e}"), "{stdout}");
    let movements: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("seq"))
        .skip(1)
        .collect();
    assert_eq!(movements.len(), 20, "{stdout}");
    // The oldest three (the first grant, the reservation, one grant) are not among them.
    assert!(!stdout.contains("sorry for the outage"), "{stdout}");
    assert!(!stdout.contains("CreditsReserved"), "{stdout}");
    assert!(movements[0].starts_with("4 "), "{stdout}");
    assert!(movements[0].contains("CreditsGranted"), "{stdout}");
    assert!(movements[0].contains("+1"), "{stdout}");
    assert!(movements[19].starts_with("23 "), "{stdout}");
    assert!(movements[19].contains("operator:ops"), "{stdout}");

    // An account nobody has touched is empty, which is an answer, not an error.
    let out = aisha_cli(&db, &["credits", "show", "777"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("account 777: 0 available, 0 reserved"),
        "{stdout}"
    );
    assert!(stdout.contains("no movements yet"), "{stdout}");
    assert_eq!(store.accounts().await.unwrap(), vec![OWNER]);
}

/// Replaces one stored event's payload, as someone editing the table by hand would.
async fn tamper(db: &Database, telegram_id: i64, sequence: u64, payload: &str) {
    assert!(!payload.contains('\''), "{payload}");
    let sql = format!(
        "UPDATE events SET payload = '{payload}'
          WHERE aggregate_type = '{}' AND aggregate_id = 'account-{telegram_id}'
            AND sequence = {sequence}",
        Account::TYPE
    );
    let mut conn = db.acquire().await.unwrap();
    let changed = conn.tx().execute(&sql, vec![]).await.unwrap();
    assert_eq!(changed, 1, "{sql}");
}

async fn audit_verify_passes_a_healthy_ledger_and_names_tampered_accounts(db: Database) {
    let store = AccountStore::new(db.clone());
    // OWNER: two reservations made and released (events 1–5).
    let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
    run(&store, OWNER, grant(10)).await;
    run(&store, OWNER, reserve(OWNER, r1, 4)).await;
    run(&store, OWNER, release(r1)).await;
    run(&store, OWNER, reserve(OWNER, r2, 4)).await;
    run(&store, OWNER, release(r2)).await;
    // OTHER: a grant spent on a reservation, then a purchase (events 1–3).
    run(&store, OTHER, grant(10)).await;
    run(&store, OTHER, reserve(OTHER, Uuid::new_v4(), 5)).await;
    run(&store, OTHER, purchase("charge-a", 20)).await;
    // Two more: one paid once, one granted once.
    run(&store, 6001, purchase("charge-b", 20)).await;
    run(&store, 6001, grant(3)).await;
    run(&store, 6002, grant(3)).await;

    let feed = Feed::new(db.clone());
    let report = audit::verify(&feed).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.ledger);
    assert_eq!((report.ledger.accounts, report.ledger.events), (4, 11));
    let out = aisha_cli(&db, &["audit", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("4 accounts, 11 account events checked: ledgers consistent"),
        "{stdout}"
    );

    let at = Utc::now();
    let json = |event: AccountEvent| serde_json::to_string(&event).unwrap();
    // OWNER's second release is rewritten to release the first reservation again.
    tamper(
        &db,
        OWNER,
        5,
        &json(AccountEvent::ReservationReleased {
            reservation_id: r1,
            credits: 4,
            reason: ReleaseReason::Cancelled,
            at,
        }),
    )
    .await;
    // OTHER's grant shrinks below the reservation that followed it.
    tamper(
        &db,
        OTHER,
        1,
        &json(AccountEvent::CreditsGranted {
            credits: 3,
            source: GrantSource::Operator {
                operator: "ops".into(),
                reason: "test grant".into(),
            },
            at,
        }),
    )
    .await;
    // 6001's grant becomes a second credit of the same charge.
    tamper(
        &db,
        6001,
        2,
        &json(AccountEvent::CreditsPurchased {
            pack: "small".into(),
            credits: 3,
            stars: 50,
            telegram_payment_charge_id: "charge-b".into(),
            at,
        }),
    )
    .await;
    // 6002's grant becomes negative, which no event can be.
    tamper(
        &db,
        6002,
        1,
        &json(AccountEvent::CreditsGranted {
            credits: 3,
            source: GrantSource::Welcome,
            at,
        })
        .replace("\"credits\":3", "\"credits\":-3"),
    )
    .await;

    let report = audit::verify(&feed).await.unwrap();
    assert!(!report.is_clean());
    assert!(report.drifts.is_empty(), "{:?}", report.drifts);
    let mut found: Vec<(i64, &str)> = report
        .ledger
        .problems
        .iter()
        .map(|p| (p.telegram_id, p.check))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (OWNER, "balance"),
            (OWNER, "reservation"),
            (OTHER, "balance"),
            (OTHER, "never_negative"),
            (6001, "payment"),
            (6002, "readable"),
        ],
        "{:#?}",
        report.ledger.problems
    );
    let detail = |id: i64, check: &str| {
        report
            .ledger
            .problems
            .iter()
            .find(|p| p.telegram_id == id && p.check == check)
            .unwrap()
            .detail
            .clone()
    };
    assert_eq!(
        detail(OWNER, "reservation"),
        format!("reservation {r1} ended twice: at events 3 and 5")
    );
    assert_eq!(
        detail(OWNER, "balance"),
        "its movements sum to 10 available credits, the loaded account has 6"
    );
    assert_eq!(
        detail(OTHER, "never_negative"),
        "the available balance went to -2 at event 2 (CreditsReserved)"
    );
    assert_eq!(
        detail(6001, "payment"),
        "charge charge-b was credited twice: at events 1 and 2"
    );

    let out = aisha_cli(&db, &["audit", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for named in [
        "ledger: account 4242 (reservation)",
        "ledger: account 5151 (never_negative)",
        "ledger: account 6001 (payment)",
        "ledger: account 6002 (readable)",
        "4 accounts, 10 account events checked: 6 ledger problem(s)",
        "no drift",
    ] {
        assert!(stdout.contains(named), "{named}: {stdout}");
    }
}
