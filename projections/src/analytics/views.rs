//! The list of views analysts may export by name, and the export.

use chrono::NaiveDate;
use db::Tx;
use ColumnKind::{Day as D, Integer as I, Real as R, Text as T};

use crate::view::{ColumnKind, View};
use crate::ProjectionError;

/// Every view with a `day` column, in the order the documentation lists them. The HTTP API and
/// the CLI export these by name; a name not listed here is never put into SQL.
pub const VIEWS: &[View] = &[
    View {
        name: "analytics_daily",
        columns: &[
            ("day", D),
            ("avatars_created", I),
            ("avatars_deleted", I),
            ("trainings_started", I),
            ("trainings_completed", I),
            ("trainings_failed", I),
            ("training_avg_seconds", R),
            ("generations_requested", I),
            ("generations_completed", I),
            ("generations_failed", I),
            ("images_generated", I),
            ("generation_avg_seconds", R),
            ("active_users", I),
        ],
        key: &["day"],
    },
    View {
        name: "analytics_trainings",
        columns: &[
            ("day", D),
            ("avatar_type", T),
            ("started", I),
            ("completed", I),
            ("failed", I),
            ("avg_completed_seconds", R),
            ("avg_failed_seconds", R),
            ("failure_rate", R),
        ],
        key: &["day", "avatar_type"],
    },
    View {
        name: "analytics_generations",
        columns: &[
            ("day", D),
            ("preset", T),
            ("requested", I),
            ("completed", I),
            ("failed", I),
            ("images", I),
            ("avg_completed_seconds", R),
            ("failure_rate", R),
        ],
        key: &["day", "preset"],
    },
    View {
        name: "analytics_packs",
        columns: &[
            ("day", D),
            ("pack", T),
            ("origin_kind", T),
            ("requested", I),
            ("completed", I),
            ("failed", I),
            ("images", I),
        ],
        key: &["day", "pack", "origin_kind"],
    },
    View {
        name: "analytics_aspect_ratios",
        columns: &[
            ("day", D),
            ("aspect_ratio", T),
            ("endpoint", T),
            ("generations", I),
            ("images", I),
        ],
        key: &["day", "aspect_ratio", "endpoint"],
    },
    View {
        name: "analytics_upscales",
        columns: &[
            ("day", D),
            ("factor", I),
            ("requested", I),
            ("completed", I),
            ("failed", I),
        ],
        key: &["day", "factor"],
    },
    // The credits ledger's views (projections/src/money.rs).
    crate::money::PURCHASES_VIEW,
    crate::money::SPENDING_VIEW,
    crate::money::REFUNDS_VIEW,
    crate::money::BALANCE_TOTALS_VIEW,
    crate::money::FAL_USAGE_VIEW,
    crate::money::FAL_REVENUE_VIEW,
];

/// The exportable view called `name`.
pub fn view(name: &str) -> Option<&'static View> {
    VIEWS.iter().find(|v| v.name == name)
}

/// The rows of view `name` for `from..=to` (UTC days) as CSV, header first; `None` when `name`
/// is not in [`VIEWS`]. Only days with rows appear.
pub async fn view_csv(
    tx: &mut Tx<'_>,
    name: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Option<String>, ProjectionError> {
    let Some(view) = view(name) else {
        return Ok(None);
    };
    view.csv(tx, from, to).await.map(Some)
}

#[cfg(test)]
mod tests {
    use db::Backend;

    use super::*;

    #[test]
    fn every_view_is_keyed_by_day_and_named_once() {
        let mut names: Vec<&str> = VIEWS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VIEWS.len());
        for v in VIEWS {
            assert_eq!(v.columns[0], ("day", ColumnKind::Day), "{}", v.name);
            for key in v.key {
                assert!(
                    v.columns.iter().any(|(c, _)| c == key),
                    "{} orders by {key}, not one of its columns",
                    v.name
                );
            }
        }
        assert_eq!(
            view("analytics_upscales").map(View::header).as_deref(),
            Some("day,factor,requested,completed,failed")
        );
        assert!(view("gallery_avatars").is_none());
        let packs = view("analytics_packs").unwrap();
        assert_eq!(
            packs.order_by(Backend::Postgres),
            "day, pack COLLATE \"C\", origin_kind COLLATE \"C\""
        );
        assert_eq!(packs.order_by(Backend::Sqlite), "day, pack, origin_kind");
    }

    #[test]
    fn every_money_view_is_exported_by_the_analytics_list() {
        for view in crate::money::VIEWS {
            assert_eq!(super::view(view.name), Some(&view), "{}", view.name);
        }
    }
}
