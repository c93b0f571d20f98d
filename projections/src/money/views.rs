//! The money views analysts export by name (see `migrations/*/20261216000001_money.sql`).

use crate::view::{ColumnKind, View};

use ColumnKind::{Day as D, Integer as I, Real as R, Text as T};

/// Credits bought per day and pack.
pub const PURCHASES_VIEW: View = View {
    name: "money_purchases",
    columns: &[
        ("day", D),
        ("pack", T),
        ("purchases", I),
        ("stars", I),
        ("credits", I),
    ],
    key: &["day", "pack"],
};

/// Credits held, spent and given back per day, purpose and preset.
pub const SPENDING_VIEW: View = View {
    name: "money_spending",
    columns: &[
        ("day", D),
        ("purpose_kind", T),
        ("preset", T),
        ("reservations", I),
        ("credits_reserved", I),
        ("captures", I),
        ("credits_captured", I),
        ("releases", I),
        ("credits_released", I),
        ("released_failed", I),
        ("released_cancelled", I),
        ("released_deadline_passed", I),
        ("released_avatar_deleted", I),
        ("released_refused", I),
    ],
    key: &["day", "purpose_kind", "preset"],
};

/// Purchases refunded per day.
pub const REFUNDS_VIEW: View = View {
    name: "money_refunds",
    columns: &[("day", D), ("refunds", I), ("stars", I), ("credits", I)],
    key: &["day"],
};

/// All accounts' balances together, one row, dated by the newest movement.
pub const BALANCE_TOTALS_VIEW: View = View {
    name: "money_balance_totals",
    columns: &[
        ("day", D),
        ("accounts", I),
        ("available", I),
        ("reserved", I),
        ("granted", I),
        ("purchased", I),
        ("spent", I),
        ("refunded", I),
    ],
    key: &["day"],
};

/// FAL work completed per day and endpoint, at the configured prices.
pub const FAL_USAGE_VIEW: View = View {
    name: "money_fal_usage",
    columns: &[
        ("day", D),
        ("endpoint", T),
        ("work_kind", T),
        ("requests", I),
        ("images", I),
        ("billed_units", I),
        ("unit_usd", R),
        ("cost_usd", R),
    ],
    key: &["day", "endpoint"],
};

/// FAL cost against Stars revenue per day.
pub const FAL_REVENUE_VIEW: View = View {
    name: "money_fal_revenue",
    columns: &[
        ("day", D),
        ("fal_requests", I),
        ("unpriced_requests", I),
        ("fal_cost_usd", R),
        ("stars_purchased", I),
        ("stars_refunded", I),
        ("revenue_stars", I),
        ("stars_usd", R),
        ("revenue_usd", R),
        ("margin_usd", R),
    ],
    key: &["day"],
};

/// The money views in the order the documentation lists them; [`crate::analytics::VIEWS`]
/// includes them, so the CSV export serves them by name.
pub const VIEWS: [View; 6] = [
    PURCHASES_VIEW,
    SPENDING_VIEW,
    REFUNDS_VIEW,
    BALANCE_TOTALS_VIEW,
    FAL_USAGE_VIEW,
    FAL_REVENUE_VIEW,
];
