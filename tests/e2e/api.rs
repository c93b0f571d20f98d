//! The admin API (bearer token, events, state at a sequence, analytics as JSON and CSV) and the
//! operators' `/healthz` and `/metrics`, called on the router without a socket.

use std::sync::Arc;

use aisha::http::{router, AppState};
use aisha::store::feed::Feed;
use aisha::store::{AvatarStore, Database};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

use crate::projections::{catch_up_all, full_life, t};
use crate::support::*;

const TOKEN: &str = "admin-3f9c1e7a";

on_both_backends!(
    the_api_is_off_without_an_admin_token,
    requests_without_the_right_token_are_refused,
    an_avatars_events_and_its_state_at_a_sequence,
    analytics_for_a_date_range_as_json_and_csv,
    each_analytics_view_is_served_as_csv_by_name,
    healthz_reports_each_consumers_lag,
    metrics_lists_the_counters,
);

struct Api {
    app: Router,
    store: Arc<AvatarStore>,
    feed: Feed,
}

fn api(db: &Database, admin_token: Option<&str>) -> Api {
    let feed = Feed::new(db.clone());
    let store = Arc::new(AvatarStore::new(db.clone()).notifying(feed.clone()));
    let state = AppState {
        store: store.clone(),
        feed: feed.clone(),
        admin_token: admin_token.map(Into::into),
        metrics: aisha::telemetry::prometheus(),
        feed_lag_alert: aisha::app::DEFAULT_FEED_LAG_ALERT,
    };
    Api {
        app: router(state),
        store,
        feed,
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn get(app: &Router, uri: &str, authorization: Option<&str>) -> Reply {
    let mut request = Request::builder().uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn bearer() -> Option<&'static str> {
    Some("Bearer admin-3f9c1e7a")
}

async fn the_api_is_off_without_an_admin_token(db: Database) {
    let api = api(&db, None);
    let id = avatar_with_photos(&api.store, 1).await;
    for uri in [
        format!("/api/avatars/{id}/events"),
        "/api/analytics/daily?from=2026-03-01&to=2026-03-02".to_owned(),
    ] {
        assert_eq!(
            get(&api.app, &uri, bearer()).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&api.app, &uri, None).await.status,
            StatusCode::NOT_FOUND
        );
    }
    // The operators' routes do not depend on it.
    assert_eq!(get(&api.app, "/healthz", None).await.status, StatusCode::OK);
}

async fn requests_without_the_right_token_are_refused(db: Database) {
    let api = api(&db, Some(TOKEN));
    let id = avatar_with_photos(&api.store, 1).await;
    let uris = [
        format!("/api/avatars/{id}/events"),
        format!("/api/avatars/{id}/state?at=1"),
        "/api/analytics/daily?from=2026-03-01&to=2026-03-02".to_owned(),
        "/api/analytics/daily.csv?from=2026-03-01&to=2026-03-02".to_owned(),
    ];
    for uri in &uris {
        for refused in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer wrong-token"),
            Some("Bearer admin-3f9c1e7"),
            Some("Bearer admin-3f9c1e7a-and-more"),
            Some("Basic YWRtaW46YWRtaW4="),
            Some(TOKEN),
        ] {
            let reply = get(&api.app, uri, refused).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{uri} with {refused:?}"
            );
            assert_eq!(reply.json()["error"], "a valid bearer token is required");
            assert!(!reply.body.contains(TOKEN));
        }
        let reply = get(&api.app, uri, bearer()).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
        // The scheme is case-insensitive.
        let reply = get(&api.app, uri, Some("bearer admin-3f9c1e7a")).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
    }
}

async fn an_avatars_events_and_its_state_at_a_sequence(db: Database) {
    let api = api(&db, Some(TOKEN));
    let life = full_life(&api.store).await;
    let id = life.portrait;

    let reply = get(&api.app, &format!("/api/avatars/{id}/events"), bearer()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("application/json"));
    let json = reply.json();
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), 22);
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["event_type"], "AvatarCreated");
    assert_eq!(events[0]["actor"], "telegram:4242");
    assert_eq!(events[0]["command"], "create");
    assert_eq!(events[14]["event_type"], "TrainingSubmitted");
    assert_eq!(events[14]["actor"], "system:test");
    assert_eq!(events[21]["event_type"], "AvatarDeleted");

    let reply = get(
        &api.app,
        &format!("/api/avatars/{id}/state?at=13"),
        bearer(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["sequence"], 13);
    assert_eq!(json["latest_sequence"], 22);
    assert_eq!(json["event_type"], "PhotoRemoved");
    assert_eq!(json["state"]["status"], "draft");
    assert_eq!(json["state"]["photos"].as_array().unwrap().len(), 10);
    assert_eq!(json["at"], serde_json::to_value(t(12)).unwrap());

    let latest = get(&api.app, &format!("/api/avatars/{id}/state"), bearer()).await;
    assert_eq!(latest.json()["state"]["status"], "deleted");

    for (uri, status) in [
        (
            format!("/api/avatars/{id}/state?at=23"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/avatars/{}/events", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/avatars/{}/state", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/avatars/not-a-uuid/events".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/avatars/{id}/state?at=x"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(get(&api.app, &uri, bearer()).await.status, status, "{uri}");
    }
}

async fn analytics_for_a_date_range_as_json_and_csv(db: Database) {
    let api = api(&db, Some(TOKEN));
    full_life(&api.store).await;
    catch_up_all(&api.feed).await;

    let reply = get(
        &api.app,
        "/api/analytics/daily?from=2026-03-01&to=2026-03-04",
        bearer(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["from"], "2026-03-01");
    assert_eq!(json["to"], "2026-03-04");
    let days = json["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["day"], "2026-03-02");
    assert_eq!(days[0]["avatars_created"]["portrait"], 1);
    assert_eq!(
        days[0]["trainings"]["portrait"]["avg_completed_seconds"],
        600.0
    );
    assert_eq!(days[0]["generations"]["quality"]["images"], 2);
    assert_eq!(days[1]["trainings"]["style"]["failed"], 1);
    let totals = &json["totals"];
    // The portrait's owner was active only with it, and it is deleted.
    assert_eq!(totals["active_users"], 1);
    assert_eq!(totals["avatars_deleted"], 1);
    assert_eq!(totals["generations"]["requested"], 3);

    // One day only: the next day's style avatar is outside it.
    let reply = get(
        &api.app,
        "/api/analytics/daily?from=2026-03-03&to=2026-03-03",
        bearer(),
    )
    .await;
    let json = reply.json();
    assert_eq!(json["days"].as_array().unwrap().len(), 1);
    assert_eq!(json["totals"]["avatars_created"]["style"], 1);
    assert!(json["totals"]["avatars_created"].get("portrait").is_none());

    let reply = get(
        &api.app,
        "/api/analytics/daily.csv?from=2026-03-01&to=2026-03-04",
        bearer(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("text/csv"));
    let lines: Vec<&str> = reply.body.lines().collect();
    assert_eq!(
        lines,
        vec![
            projections::analytics::CSV_HEADER,
            "2026-03-01,0,0,0,0,0,0,0,,0,0,0,0,,0",
            "2026-03-02,1,1,0,1,1,1,0,600.000,3,1,1,2,120.000,0",
            "2026-03-03,1,0,1,0,1,0,1,,0,0,0,0,,1",
            "2026-03-04,0,0,0,0,0,0,0,,0,0,0,0,,0",
        ]
    );

    for bad in [
        "/api/analytics/daily",
        "/api/analytics/daily?from=2026-03-01",
        "/api/analytics/daily?from=2026-03-05&to=2026-03-01",
        "/api/analytics/daily?from=yesterday&to=2026-03-01",
        "/api/analytics/daily.csv?from=2000-01-01&to=2026-03-01",
    ] {
        let reply = get(&api.app, bad, bearer()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(reply.json()["error"].is_string());
    }
}

async fn healthz_reports_each_consumers_lag(db: Database) {
    let api = api(&db, None);
    avatar_with_photos(&api.store, 4).await;

    let reply = get(&api.app, "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["database"], "reachable");
    let consumers = json["consumers"].as_array().unwrap();
    let names: Vec<&str> = consumers
        .iter()
        .map(|c| c["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["analytics", "gallery", "generations", "training_jobs"]
    );
    for c in consumers {
        assert_eq!(c["events_behind"], 5, "{c}");
        assert!(c["oldest_unread_seconds"].as_f64().unwrap() >= 0.0);
        assert!(c["updated_at"].is_null());
    }

    catch_up_all(&api.feed).await;
    let json = get(&api.app, "/healthz", None).await.json();
    for c in json["consumers"].as_array().unwrap() {
        assert_eq!(c["events_behind"], 0, "{c}");
        assert!(c["oldest_unread_seconds"].is_null());
        assert!(c["updated_at"].is_string());
    }
}

async fn metrics_lists_the_counters(db: Database) {
    let api = api(&db, None);
    let id = avatar_with_photos(&api.store, 2).await;
    let refused = api
        .store
        .execute(
            id,
            by_owner(aggregates::Action::StartTraining {
                training_id: Uuid::new_v4(),
                preset: aggregates::TrainingPreset::Fast,
                style: Default::default(),
            }),
            Uuid::new_v4(),
        )
        .await;
    assert!(refused.is_err());
    catch_up_all(&api.feed).await;
    avatar_with_photos(&api.store, 1).await;

    let reply = get(&api.app, "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("text/plain"));
    let text = reply.body;
    for expected in [
        "# TYPE commands_total counter",
        r#"commands_total{command="create",outcome="accepted"}"#,
        r#"commands_total{command="upload_photo",outcome="accepted"}"#,
        r#"commands_total{command="start_training",outcome="rejected"}"#,
        "# TYPE webhook_verifications_total counter",
        r#"webhook_verifications_total{result="ok"} 0"#,
        r#"feed_events_applied_total{consumer="gallery"}"#,
        r#"feed_apply_delay_seconds{consumer="analytics"}"#,
        // Two new events that no runner has applied yet.
        r#"feed_lag_events{consumer="gallery"} 2"#,
        r#"feed_lag_events{consumer="training_jobs"} 2"#,
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

async fn each_analytics_view_is_served_as_csv_by_name(db: Database) {
    let api = api(&db, Some(TOKEN));
    full_life(&api.store).await;
    catch_up_all(&api.feed).await;
    for view in projections::analytics::VIEWS {
        let uri = format!(
            "/api/analytics/views/{}.csv?from=2026-03-01&to=2026-03-04",
            view.name
        );
        let reply = get(&api.app, &uri, bearer()).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
        assert!(reply.content_type.starts_with("text/csv"));
        let header: Vec<&str> = view.columns.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            reply.body.lines().next(),
            Some(header.join(",").as_str()),
            "{uri}"
        );
    }
    // The life's generations on 2 March in the daily generations view, by preset.
    let reply = get(
        &api.app,
        "/api/analytics/views/analytics_generations?from=2026-03-02&to=2026-03-02",
        bearer(),
    )
    .await;
    assert!(reply.body.lines().count() > 1, "{}", reply.body);
    assert!(reply
        .body
        .lines()
        .skip(1)
        .all(|l| l.starts_with("2026-03-02,")));

    let reply = get(
        &api.app,
        "/api/analytics/views/events?from=2026-03-01&to=2026-03-02",
        bearer(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("analytics_packs"));
    let reply = get(
        &api.app,
        "/api/analytics/views/analytics_packs?from=2026-03-02",
        bearer(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = get(
        &api.app,
        "/api/analytics/views/analytics_packs?from=2026-03-01&to=2026-03-02",
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
