//! The money read model on both backends: a ledger driven through every kind of movement gives
//! exact rows in each table and view, the same rows after a rebuild, a clean `audit verify` (and
//! a named problem once a balance is tampered with), each event applied once by two runners on one
//! PostgreSQL database, and the views as CSV through the analytics API.

use std::sync::Arc;
use std::time::Duration;

use aggregates::{
    AccountAction, AccountCommand, Actor, GenerationPreset, ReleaseReason, ReservationPurpose,
    TrainingPreset,
};
use aisha::audit;
use aisha::config::FalPrices;
use aisha::http::{router, AppState};
use aisha::store::accounts::AccountStore;
use aisha::store::checkpoints::load_checkpoint;
use aisha::store::feed::Feed;
use aisha::store::runner::ProjectionRunner;
use aisha::store::{money, AvatarStore, Database};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use projections::{Cursor, LedgerEvent};
use tower::ServiceExt;
use uuid::Uuid;

use crate::projections::{aisha_cli, catch_up_all, full_life};

on_both_backends!(
    a_ledger_gives_exact_rows_in_every_money_table_and_view,
    a_rebuild_gives_the_same_rows_and_audit_verify_names_a_tampered_balance,
    the_money_views_are_served_as_csv,
);

mod two_instances {
    /// Two instances, each with its own pool and runner, on one PostgreSQL database.
    #[sqlx::test(migrations = false)]
    async fn two_runners_on_one_postgres_apply_each_ledger_event_once(pool: sqlx::PgPool) {
        let db = aisha::store::Database::Postgres(pool);
        db.migrate().await.expect("migrate postgres");
        super::two_runners_apply_each_event_once(db).await;
    }
}

const ANNA: i64 = 1001;
const BORIS: i64 = 1002;
const TOKEN: &str = "money-7c21";

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

async fn run(
    store: &AccountStore,
    telegram_id: i64,
    by: Actor,
    when: DateTime<Utc>,
    action: AccountAction,
) {
    store
        .execute(
            telegram_id,
            AccountCommand::new(by, when, action),
            Uuid::new_v4(),
        )
        .await
        .unwrap_or_else(|e| panic!("account {telegram_id}: {e}"));
}

fn system() -> Actor {
    Actor::System("test".into())
}

struct Ledger {
    open: Uuid,
    avatar: Uuid,
}

/// Anna: a grant, a purchase, a training paid, a generation failed and given back, one still
/// held, and the purchase refunded. Boris: a welcome gift and a purchase the next day.
async fn ledger(store: &AccountStore) -> Ledger {
    let avatar = Uuid::new_v4();
    let (trained, failed, open) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let operator = Actor::Operator("ops".into());
    run(
        store,
        ANNA,
        operator,
        at(1, 10, 0),
        AccountAction::GrantCredits {
            credits: 30,
            reason: "goodwill".into(),
        },
    )
    .await;
    let purchase = |pack: &str, credits, stars, charge: &str| AccountAction::RecordPurchase {
        pack: pack.into(),
        credits,
        stars,
        telegram_payment_charge_id: charge.into(),
    };
    run(
        store,
        ANNA,
        system(),
        at(1, 11, 0),
        purchase("50:200", 50, 200, "ch-1"),
    )
    .await;
    let reserve = |reservation_id, credits, purpose| AccountAction::Reserve {
        reservation_id,
        credits,
        purpose,
    };
    let training = ReservationPurpose::Training {
        avatar_id: avatar,
        preset: TrainingPreset::Fast,
    };
    run(
        store,
        ANNA,
        Actor::User(ANNA),
        at(2, 9, 0),
        reserve(trained, 20, training),
    )
    .await;
    run(
        store,
        ANNA,
        system(),
        at(2, 9, 30),
        AccountAction::Capture {
            reservation_id: trained,
        },
    )
    .await;
    let generation = |generation_id, preset, images| ReservationPurpose::Generation {
        avatar_id: avatar,
        generation_id,
        preset,
        images,
    };
    let ultra = generation(failed, Some(GenerationPreset::Ultra), 2);
    run(
        store,
        ANNA,
        Actor::User(ANNA),
        at(2, 10, 0),
        reserve(failed, 4, ultra),
    )
    .await;
    let release = AccountAction::Release {
        reservation_id: failed,
        reason: ReleaseReason::Failed,
    };
    run(store, ANNA, system(), at(2, 10, 5), release).await;
    run(
        store,
        ANNA,
        Actor::User(ANNA),
        at(2, 11, 0),
        reserve(open, 3, generation(open, None, 3)),
    )
    .await;
    let refund = AccountAction::RequestRefund {
        telegram_payment_charge_id: "ch-1".into(),
        window: Duration::from_secs(14 * 24 * 3600),
    };
    run(store, ANNA, Actor::User(ANNA), at(2, 12, 0), refund).await;

    run(
        store,
        BORIS,
        system(),
        at(3, 8, 0),
        AccountAction::GrantWelcome { credits: 5 },
    )
    .await;
    run(
        store,
        BORIS,
        system(),
        at(3, 9, 0),
        purchase("10:50", 10, 50, "ch-2"),
    )
    .await;
    Ledger { open, avatar }
}

/// Applies the money read model until it has every ledger event (waiting out other writers).
async fn money_caught_up(feed: &Feed) {
    let runner = ProjectionRunner::ledger(feed.clone(), Arc::new(projections::money::Money));
    for _ in 0..400 {
        runner.catch_up().await.expect("catch up");
        if ledger_lag(feed).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the money read model did not catch up in 10 s");
}

async fn ledger_lag(feed: &Feed) -> i64 {
    let mut conn = feed.database().acquire().await.unwrap();
    let cursor = load_checkpoint(&mut conn.tx(), "ledger:money")
        .await
        .unwrap();
    drop(conn);
    feed.lag_of("Account", cursor).await.unwrap().events_behind
}

async fn view(db: &Database, name: &str) -> String {
    let mut conn = db.acquire().await.unwrap();
    projections::analytics::view_csv(&mut conn.tx(), name, day(1), day(4))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no view {name}"))
}

/// Every row of the three money tables, as text, in key order.
async fn money_rows(db: &Database) -> Vec<String> {
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();
    let mut out = Vec::new();
    for (table, key) in [
        ("money_movements", "telegram_id, sequence"),
        ("money_balances", "telegram_id"),
        ("money_open_reservations", "telegram_id, reservation_id"),
    ] {
        let sql = match tx.backend() {
            db::Backend::Postgres => {
                format!("SELECT t::text AS r FROM {table} t ORDER BY {key}")
            }
            // SQLite has no row values as text: join the columns.
            db::Backend::Sqlite => {
                let columns: Vec<String> = tx
                    .fetch_all(
                        &format!("SELECT name FROM pragma_table_info('{table}')"),
                        vec![],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let name: String = r.get("name").unwrap();
                        format!("coalesce(CAST({name} AS text), 'NULL')")
                    })
                    .collect();
                format!(
                    "SELECT {} AS r FROM {table} ORDER BY {key}",
                    columns.join(" || '|' || ")
                )
            }
        };
        for row in tx.fetch_all(&sql, vec![]).await.unwrap() {
            out.push(format!("{table}: {}", row.get::<String>("r").unwrap()));
        }
    }
    out
}

async fn a_ledger_gives_exact_rows_in_every_money_table_and_view(db: Database) {
    // Given a ledger with every kind of movement and an avatar's FAL work on 2 March,
    let accounts = AccountStore::new(db.clone());
    let store = AvatarStore::new(db.clone());
    let feed = Feed::new(db.clone());
    let ledger = ledger(&accounts).await;
    full_life(&store).await;
    let prices =
        FalPrices::parse("fal-ai/flux-lora-portrait-trainer:2.5,fal-ai/flux-lora:0.035").unwrap();
    money::store_prices(&db, prices.iter(), 0.013)
        .await
        .unwrap();

    // the ledger feed delivers the Account events alone, in commit order,
    let events: Vec<LedgerEvent> = feed.read_stream_after(Cursor::START, 100).await.unwrap();
    let order: Vec<(i64, u64)> = events.iter().map(|e| (e.telegram_id, e.sequence)).collect();
    let mut expected: Vec<(i64, u64)> = (1..=8).map(|s| (ANNA, s)).collect();
    expected.extend([(BORIS, 1), (BORIS, 2)]);
    assert_eq!(order, expected);

    // and when the read models catch up,
    catch_up_all(&feed).await;
    money_caught_up(&feed).await;

    // then each movement is a row, labelled with what it paid for,
    let mut movements = money::recent_movements(&db, ANNA, 100).await.unwrap();
    movements.reverse();
    let rows: Vec<_> = movements
        .iter()
        .map(|m| {
            (
                m.sequence,
                m.kind.as_str(),
                m.credits,
                m.available_delta,
                m.reserved_delta,
                m.stars,
                m.purpose_kind.as_deref(),
                m.preset.as_deref(),
                m.pack.as_deref(),
                m.release_reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "granted", 30, 30, 0, None, None, None, None, None),
            (
                2,
                "purchased",
                50,
                50,
                0,
                Some(200),
                None,
                None,
                Some("50:200"),
                None
            ),
            (
                3,
                "reserved",
                20,
                -20,
                20,
                None,
                Some("training"),
                Some("fast"),
                None,
                None
            ),
            (
                4,
                "captured",
                20,
                0,
                -20,
                None,
                Some("training"),
                Some("fast"),
                None,
                None
            ),
            (
                5,
                "reserved",
                4,
                -4,
                4,
                None,
                Some("generation"),
                Some("ultra"),
                None,
                None
            ),
            (
                6,
                "released",
                4,
                4,
                -4,
                None,
                Some("generation"),
                Some("ultra"),
                None,
                Some("failed")
            ),
            (
                7,
                "reserved",
                3,
                -3,
                3,
                None,
                Some("generation"),
                Some("default"),
                None,
                None
            ),
            (
                8,
                "refunded",
                50,
                -50,
                0,
                Some(200),
                None,
                None,
                Some("50:200"),
                None
            ),
        ]
    );
    assert_eq!(movements[0].grant_source.as_deref(), Some("operator"));
    assert_eq!(movements[7].charge_id.as_deref(), Some("ch-1"));
    assert_eq!(movements[7].at, at(2, 12, 0));
    let latest = money::recent_movements(&db, ANNA, 2).await.unwrap();
    assert_eq!(
        latest.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        vec![8, 7]
    );

    // each account has its balance,
    let mut conn = db.acquire().await.unwrap();
    let balances = projections::money::balances(&mut conn.tx(), false)
        .await
        .unwrap();
    drop(conn);
    let figures: Vec<_> = balances
        .iter()
        .map(|b| {
            (
                b.telegram_id,
                b.available,
                b.reserved,
                b.granted,
                b.purchased,
                b.spent,
                b.refunded,
                b.movements,
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![
            (ANNA, 7, 3, 30, 50, 20, 50, 8),
            (BORIS, 15, 0, 5, 10, 0, 0, 2)
        ]
    );
    let account = accounts.load(ANNA).await.unwrap();
    assert_eq!((account.available(), account.reserved()), (7, 3));

    // the reservation still held is open, from when it was made,
    assert_eq!(
        money::open_reservations_before(&db, at(2, 11, 0))
            .await
            .unwrap(),
        vec![(ANNA, ledger.open)]
    );
    assert!(money::open_reservations_before(&db, at(2, 10, 59))
        .await
        .unwrap()
        .is_empty());
    let mut conn = db.acquire().await.unwrap();
    let held = conn
        .tx()
        .fetch_all(
            "SELECT credits, purpose_kind, preset, avatar_id, generation_id, images
               FROM money_open_reservations",
            vec![],
        )
        .await
        .unwrap();
    drop(conn);
    assert_eq!(held.len(), 1);
    let h = &held[0];
    assert_eq!(
        (
            h.get::<i64>("credits").unwrap(),
            h.get::<String>("purpose_kind").unwrap(),
            h.get::<String>("preset").unwrap(),
            h.get::<Option<String>>("avatar_id").unwrap(),
            h.get::<Option<String>>("generation_id").unwrap(),
            h.get::<Option<i64>>("images").unwrap(),
        ),
        (
            3,
            "generation".to_owned(),
            "default".to_owned(),
            Some(ledger.avatar.to_string()),
            Some(ledger.open.to_string()),
            Some(3)
        )
    );

    // and the views add them up per day.
    assert_eq!(
        view(&db, "money_purchases").await,
        "day,pack,purchases,stars,credits\n\
         2026-03-01,50:200,1,200,50\n\
         2026-03-03,10:50,1,50,10\n"
    );
    assert_eq!(
        view(&db, "money_spending").await,
        "day,purpose_kind,preset,reservations,credits_reserved,captures,credits_captured,releases,\
         credits_released,released_failed,released_cancelled,released_deadline_passed,\
         released_avatar_deleted,released_refused\n\
         2026-03-02,generation,default,1,3,0,0,0,0,0,0,0,0,0\n\
         2026-03-02,generation,ultra,1,4,0,0,1,4,4,0,0,0,0\n\
         2026-03-02,training,fast,1,20,1,20,0,0,0,0,0,0,0\n"
    );
    assert_eq!(
        view(&db, "money_refunds").await,
        "day,refunds,stars,credits\n2026-03-02,1,200,50\n"
    );
    assert_eq!(
        view(&db, "money_balance_totals").await,
        "day,accounts,available,reserved,granted,purchased,spent,refunded\n\
         2026-03-03,2,22,3,35,60,20,50\n"
    );
    assert_eq!(
        view(&db, "money_fal_usage").await,
        "day,endpoint,work_kind,requests,images,billed_units,unit_usd,cost_usd\n\
         2026-03-02,fal-ai/flux-lora,generation,1,2,2,0.035,0.070\n\
         2026-03-02,fal-ai/flux-lora-portrait-trainer,training,1,0,1,2.500,2.500\n"
    );
    assert_eq!(
        view(&db, "money_fal_revenue").await,
        "day,fal_requests,unpriced_requests,fal_cost_usd,stars_purchased,stars_refunded,\
         revenue_stars,stars_usd,revenue_usd,margin_usd\n\
         2026-03-01,0,0,0.000,200,0,200,0.013,2.600,2.600\n\
         2026-03-02,2,0,2.570,0,200,-200,0.013,-2.600,-5.170\n\
         2026-03-03,0,0,0.000,50,0,50,0.013,0.650,0.650\n"
    );

    // Without prices (an offline start), the work is counted as unpriced, not as free.
    money::store_prices(&db, FalPrices::default().iter(), 0.013)
        .await
        .unwrap();
    let revenue = view(&db, "money_fal_revenue").await;
    assert!(
        revenue.contains("\n2026-03-02,2,2,0.000,0,200,-200,0.013,-2.600,-2.600\n"),
        "{revenue}"
    );
    let usage = view(&db, "money_fal_usage").await;
    assert!(
        usage.contains("\n2026-03-02,fal-ai/flux-lora,generation,1,2,2,,\n"),
        "{usage}"
    );
}

async fn a_rebuild_gives_the_same_rows_and_audit_verify_names_a_tampered_balance(db: Database) {
    // Given a caught-up money read model,
    let accounts = AccountStore::new(db.clone());
    let feed = Feed::new(db.clone());
    ledger(&accounts).await;
    money_caught_up(&feed).await;
    let before = money_rows(&db).await;
    assert_eq!(before.len(), 8 + 2 + 2 + 1, "{before:#?}");

    // when it is rebuilt from the events, it holds the same rows,
    let rebuilt = audit::rebuild(&feed, Some("money")).await.unwrap();
    assert_eq!(
        rebuilt
            .iter()
            .map(|r| (r.projection, r.events))
            .collect::<Vec<_>>(),
        vec![("money", 10)]
    );
    assert_eq!(money_rows(&db).await, before);

    // and the audit finds the ledger and its read model consistent.
    let report = audit::verify(&feed).await.unwrap();
    assert!(
        report.is_clean(),
        "{:?} {:?}",
        report.ledger.problems,
        report.money
    );
    assert_eq!((report.money.events, report.money.balances), (10, 2));

    // Once a balance row is changed by hand, the audit names the account twice: the row is not
    // the sum of its movements, and a replay disagrees with it.
    let mut conn = db.acquire().await.unwrap();
    conn.tx()
        .execute(
            "UPDATE money_balances SET available = available + 1 WHERE telegram_id = $1",
            vec![BORIS.into()],
        )
        .await
        .unwrap();
    drop(conn);
    let report = audit::verify(&feed).await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report.ledger.problems.is_empty(),
        "{:?}",
        report.ledger.problems
    );
    let found: Vec<(Option<i64>, &str)> = report
        .money
        .problems
        .iter()
        .map(|p| (p.telegram_id, p.check))
        .collect();
    assert_eq!(
        found,
        vec![(Some(BORIS), "balance"), (Some(BORIS), "rebuild")],
        "{:?}",
        report.money.problems
    );
    let out = aisha_cli(&db, &["audit", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for named in [
        "money: account 1002 (balance): money_balances holds available 16,",
        "money: account 1002 (rebuild): money_balances: the rows differ",
        "2 money balances, 10 ledger events replayed: 2 money problem(s)",
    ] {
        assert!(stdout.contains(named), "{named}: {stdout}");
    }

    // A rebuild repairs it.
    audit::rebuild(&feed, Some("money")).await.unwrap();
    assert_eq!(money_rows(&db).await, before);
    assert!(audit::verify(&feed).await.unwrap().is_clean());
}

async fn the_money_views_are_served_as_csv(db: Database) {
    let accounts = AccountStore::new(db.clone());
    let feed = Feed::new(db.clone());
    ledger(&accounts).await;
    money_caught_up(&feed).await;
    let app = router(AppState {
        store: Arc::new(AvatarStore::new(db.clone()).notifying(feed.clone())),
        feed: feed.clone(),
        admin_token: Some(TOKEN.into()),
        metrics: aisha::telemetry::prometheus(),
        feed_lag_alert: aisha::app::DEFAULT_FEED_LAG_ALERT,
    });
    for view in projections::money::VIEWS {
        let uri = format!(
            "/api/analytics/views/{}.csv?from=2026-03-01&to=2026-03-04",
            view.name
        );
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri(&uri)
                    .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        // The route serves exactly what the view holds.
        assert_eq!(body, self::view(&db, view.name).await, "{uri}");
    }
    let purchases = self::view(&db, "money_purchases").await;
    assert_eq!(purchases.lines().count(), 3, "{purchases}");
}

async fn two_runners_apply_each_event_once(db: Database) {
    // Given two instances, each with its own pool, feed and live money runner,
    let Database::Postgres(pool) = &db else {
        unreachable!()
    };
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let other = Database::Postgres(other_pool);
    let feeds = [Feed::new(db.clone()), Feed::new(other.clone())];
    let live: Vec<_> = feeds
        .iter()
        .map(|feed| {
            let runner =
                ProjectionRunner::ledger(feed.clone(), Arc::new(projections::money::Money))
                    .with_batch_size(3);
            tokio::spawn(runner.run())
        })
        .collect();

    // when both instances write grants to five accounts at once,
    let writers: Vec<_> = [db.clone(), other.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, db)| {
            tokio::spawn(async move {
                let store = AccountStore::new(db);
                for i in 0..20i64 {
                    let telegram_id = 2000 + (i % 5);
                    let grant = AccountAction::GrantCredits {
                        credits: (n as u32 + 1) * 10,
                        reason: format!("batch {n}"),
                    };
                    run(
                        &store,
                        telegram_id,
                        Actor::Operator("ops".into()),
                        Utc::now(),
                        grant,
                    )
                    .await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    // then once both runners are idle, every event is one movement and each balance its sum.
    let mut caught_up = false;
    for _ in 0..400 {
        if ledger_lag(&feeds[0]).await == 0 {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    live.iter().for_each(|runner| runner.abort());
    assert!(caught_up, "the live runners did not catch up in 10 s");
    let mut conn = db.acquire().await.unwrap();
    let mut tx = conn.tx();
    let movements = tx
        .fetch_i64("SELECT count(*) FROM money_movements", vec![])
        .await
        .unwrap();
    assert_eq!(movements, Some(40));
    let stored = projections::money::balances(&mut tx, false).await.unwrap();
    let summed = projections::money::balances(&mut tx, true).await.unwrap();
    assert_eq!(stored, summed);
    assert_eq!(
        stored
            .iter()
            .map(|b| (b.telegram_id, b.available, b.movements))
            .collect::<Vec<_>>(),
        (2000..2005)
            .map(|id| (id, 4 * 10 + 4 * 20, 8))
            .collect::<Vec<_>>()
    );
}
