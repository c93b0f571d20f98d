//! The credits ledger's rules as given/when/then: one test per rule and per refusal.

use std::time::Duration;

use aggregates::account::{
    ensure_own_account, normalize_promo_code, telegram_id_of, REMEMBERED_ENDED_RESERVATIONS,
};
use aggregates::*;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

type AccountTest = TestFramework<Account>;

const USER: i64 = 4_242_424_242;
const AVATAR: Uuid = Uuid::from_u128(0xabcdef12_0000_4000_8000_000000000001);
const CHARGE: &str = "stxAbC123charge";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const WINDOW: Duration = Duration::from_secs(21 * 24 * 60 * 60);

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn later(by: Duration) -> DateTime<Utc> {
    at() + TimeDelta::from_std(by).unwrap()
}

fn user(action: AccountAction) -> AccountCommand {
    AccountCommand::new(Actor::User(USER), at(), action)
}

fn system(action: AccountAction) -> AccountCommand {
    AccountCommand::new(Actor::System("payments".into()), at(), action)
}

fn operator(action: AccountAction) -> AccountCommand {
    AccountCommand::new(Actor::Operator("alice".into()), at(), action)
}

fn reservation(n: u128) -> Uuid {
    Uuid::from_u128(0x5e5e_0000_4000_8000_0000_0000_0000 + n)
}

fn generation(n: u128, images: u32) -> ReservationPurpose {
    ReservationPurpose::Generation {
        avatar_id: AVATAR,
        generation_id: Uuid::from_u128(0x6e6e_0000_4000_8000_0000_0000_0000 + n),
        preset: Some(GenerationPreset::Quality),
        images,
    }
}

fn training() -> ReservationPurpose {
    ReservationPurpose::Training {
        avatar_id: AVATAR,
        preset: TrainingPreset::Balanced,
    }
}

fn welcomed(credits: u32) -> AccountEvent {
    AccountEvent::CreditsGranted {
        credits,
        source: GrantSource::Welcome,
        at: at(),
    }
}

fn purchased(charge: &str, credits: u32, stars: u32) -> AccountEvent {
    AccountEvent::CreditsPurchased {
        pack: format!("pack_{credits}"),
        credits,
        stars,
        telegram_payment_charge_id: charge.into(),
        at: at(),
    }
}

fn record_purchase(charge: &str, credits: u32, stars: u32) -> AccountAction {
    AccountAction::RecordPurchase {
        pack: format!("pack_{credits}"),
        credits,
        stars,
        telegram_payment_charge_id: charge.into(),
    }
}

fn reserved(n: u128, credits: u32) -> AccountEvent {
    AccountEvent::CreditsReserved {
        reservation_id: reservation(n),
        credits,
        purpose: generation(n, 2),
        at: at(),
    }
}

fn reserve(n: u128, credits: u32) -> AccountAction {
    AccountAction::Reserve {
        reservation_id: reservation(n),
        credits,
        purpose: generation(n, 2),
    }
}

fn captured(n: u128, credits: u32) -> AccountEvent {
    AccountEvent::ReservationCaptured {
        reservation_id: reservation(n),
        credits,
        at: at(),
    }
}

fn released(n: u128, credits: u32, reason: ReleaseReason) -> AccountEvent {
    AccountEvent::ReservationReleased {
        reservation_id: reservation(n),
        credits,
        reason,
        at: at(),
    }
}

fn capture(n: u128) -> AccountAction {
    AccountAction::Capture {
        reservation_id: reservation(n),
    }
}

fn release(n: u128, reason: ReleaseReason) -> AccountAction {
    AccountAction::Release {
        reservation_id: reservation(n),
        reason,
    }
}

fn request_refund(charge: &str) -> AccountAction {
    AccountAction::RequestRefund {
        telegram_payment_charge_id: charge.into(),
        window: WINDOW,
    }
}

fn refunded(charge: &str, credits: u32, stars: u32, by: RefundRequester) -> AccountEvent {
    AccountEvent::PurchaseRefunded {
        telegram_payment_charge_id: charge.into(),
        credits,
        stars,
        by,
        at: at(),
    }
}

/// The state after `events`, as the store would load it.
fn state(events: &[AccountEvent]) -> Account {
    let mut account = Account::default();
    for event in events {
        account.apply(event.clone());
    }
    account
}

fn not_permitted(actor: &'static str, action: &'static str) -> AccountError {
    AccountError::NotPermitted { actor, action }
}

mod welcome_credits {
    use super::*;

    #[test]
    fn a_new_account_gets_its_welcome_credits() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(system(AccountAction::GrantWelcome { credits: 10 }))
            .then_expect_events(vec![welcomed(10)]);
    }

    #[test]
    fn welcome_credits_come_only_once_per_account() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(system(AccountAction::GrantWelcome { credits: 10 }))
            .then_expect_error(AccountError::WelcomeAlreadyGranted);
    }

    #[test]
    fn a_grant_of_no_credits_is_refused() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(system(AccountAction::GrantWelcome { credits: 0 }))
            .then_expect_error(AccountError::ZeroCredits);
    }
}

mod promo_codes {
    use super::*;

    fn redeem(code: &str) -> AccountAction {
        AccountAction::RedeemPromoCode {
            code: code.into(),
            credits: 25,
        }
    }

    fn promo_granted(code: &str) -> AccountEvent {
        AccountEvent::CreditsGranted {
            credits: 25,
            source: GrantSource::PromoCode { code: code.into() },
            at: at(),
        }
    }

    #[test]
    fn a_user_redeems_a_promo_code_recorded_in_its_normal_spelling() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(user(redeem("  spring26 ")))
            .then_expect_events(vec![promo_granted("SPRING26")]);
    }

    #[test]
    fn a_promo_code_is_used_once_per_account_whatever_its_spelling() {
        AccountTest::with(())
            .given(vec![promo_granted("SPRING26")])
            .when(user(redeem("Spring26")))
            .then_expect_error(AccountError::PromoCodeAlreadyUsed("SPRING26".into()));
    }

    #[test]
    fn another_code_still_counts() {
        AccountTest::with(())
            .given(vec![promo_granted("SPRING26")])
            .when(user(redeem("summer26")))
            .then_expect_events(vec![promo_granted("SUMMER26")]);
    }

    #[test]
    fn a_blank_code_is_refused() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(user(redeem("   ")))
            .then_expect_error(AccountError::EmptyPromoCode);
    }

    #[test]
    fn the_binary_can_normalise_codes_the_same_way() {
        assert_eq!(normalize_promo_code(" spring26\n"), "SPRING26");
    }
}

mod operator_grants {
    use super::*;

    #[test]
    fn an_operator_grants_credits_under_their_name_with_a_reason() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(operator(AccountAction::GrantCredits {
                credits: 50,
                reason: " training lost in outage #12 ".into(),
            }))
            .then_expect_events(vec![AccountEvent::CreditsGranted {
                credits: 50,
                source: GrantSource::Operator {
                    operator: "alice".into(),
                    reason: "training lost in outage #12".into(),
                },
                at: at(),
            }]);
    }

    #[test]
    fn an_operator_grant_needs_a_reason() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(operator(AccountAction::GrantCredits {
                credits: 50,
                reason: "  ".into(),
            }))
            .then_expect_error(AccountError::EmptyReason);
    }
}

mod purchases {
    use super::*;

    #[test]
    fn a_paid_pack_credits_the_account() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(system(record_purchase(CHARGE, 100, 250)))
            .then_expect_events(vec![purchased(CHARGE, 100, 250)]);
    }

    #[test]
    fn a_charge_delivered_twice_is_credited_once_and_the_repeat_is_not_an_error() {
        AccountTest::with(())
            .given(vec![purchased(CHARGE, 100, 250)])
            .when(system(record_purchase(CHARGE, 100, 250)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_first_recording_of_a_charge_stands_even_if_the_pack_changed_since() {
        AccountTest::with(())
            .given(vec![purchased(CHARGE, 100, 250)])
            .when(system(record_purchase(CHARGE, 120, 250)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_payment_without_a_charge_id_or_without_stars_is_refused() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(system(record_purchase(" ", 100, 250)))
            .then_expect_error(AccountError::EmptyChargeId);
        AccountTest::with(())
            .given_no_previous_events()
            .when(system(record_purchase(CHARGE, 100, 0)))
            .then_expect_error(AccountError::ZeroStars);
    }
}

mod reserving {
    use super::*;

    #[test]
    fn a_reservation_holds_exactly_the_price_shown() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(user(reserve(1, 10)))
            .then_expect_events(vec![reserved(1, 10)]);
        let account = state(&[welcomed(10), reserved(1, 10)]);
        assert_eq!((account.available(), account.reserved()), (0, 10));
        assert_eq!(account.reservation(reservation(1)).unwrap().credits, 10);
    }

    #[test]
    fn a_training_is_reserved_with_its_preset() {
        AccountTest::with(())
            .given(vec![welcomed(50)])
            .when(user(AccountAction::Reserve {
                reservation_id: reservation(1),
                credits: 40,
                purpose: training(),
            }))
            .then_expect_events(vec![AccountEvent::CreditsReserved {
                reservation_id: reservation(1),
                credits: 40,
                purpose: training(),
                at: at(),
            }]);
    }

    #[test]
    fn a_reservation_beyond_the_balance_is_refused_with_what_is_missing() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(user(reserve(1, 11)))
            .then_expect_error(AccountError::InsufficientCredits {
                needed: 11,
                balance: 10,
            });
    }

    #[test]
    fn an_empty_account_cannot_reserve() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(user(reserve(1, 1)))
            .then_expect_error(AccountError::InsufficientCredits {
                needed: 1,
                balance: 0,
            });
    }

    #[test]
    fn two_reservations_cannot_spend_the_same_credits() {
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 8)])
            .when(user(reserve(2, 8)))
            .then_expect_error(AccountError::InsufficientCredits {
                needed: 8,
                balance: 2,
            });
    }

    #[test]
    fn a_retried_reservation_is_the_same_reservation() {
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 8)])
            .when(user(reserve(1, 8)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_retry_after_the_reservation_ended_changes_nothing() {
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 8), captured(1, 8)])
            .when(user(reserve(1, 8)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_reservation_id_reused_for_other_credits_or_work_is_refused() {
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 8)])
            .when(user(reserve(1, 9)))
            .then_expect_error(AccountError::ReservationConflict(reservation(1)));
        AccountTest::with(())
            .given(vec![
                welcomed(10),
                reserved(1, 8),
                released(1, 8, ReleaseReason::Failed),
            ])
            .when(user(AccountAction::Reserve {
                reservation_id: reservation(1),
                credits: 8,
                purpose: generation(1, 4),
            }))
            .then_expect_error(AccountError::ReservationConflict(reservation(1)));
    }

    #[test]
    fn a_reservation_of_nothing_is_refused() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(user(reserve(1, 0)))
            .then_expect_error(AccountError::ZeroCredits);
    }

    #[test]
    fn open_reservations_are_found_by_avatar_and_by_age() {
        let other_avatar = AccountEvent::CreditsReserved {
            reservation_id: reservation(3),
            credits: 1,
            purpose: ReservationPurpose::Training {
                avatar_id: Uuid::from_u128(7),
                preset: TrainingPreset::Fast,
            },
            at: later(DAY),
        };
        let account = state(&[welcomed(10), reserved(1, 2), reserved(2, 2), other_avatar]);
        assert_eq!(
            account.open_reservations_for_avatar(AVATAR),
            vec![reservation(1), reservation(2)]
        );
        assert_eq!(
            account.open_reservations_made_before(at()),
            vec![reservation(1), reservation(2)]
        );
    }
}

mod capturing_and_releasing {
    use super::*;

    fn holding() -> Vec<AccountEvent> {
        vec![welcomed(10), reserved(1, 6)]
    }

    #[test]
    fn delivered_work_captures_its_reservation() {
        AccountTest::with(())
            .given(holding())
            .when(system(capture(1)))
            .then_expect_events(vec![captured(1, 6)]);
        let account = state(&[welcomed(10), reserved(1, 6), captured(1, 6)]);
        assert_eq!((account.available(), account.reserved()), (4, 0));
        assert_eq!(account.spent, 6);
    }

    #[test]
    fn a_duplicate_capture_is_a_no_op() {
        let mut given = holding();
        given.push(captured(1, 6));
        AccountTest::with(())
            .given(given)
            .when(system(capture(1)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn failed_work_releases_its_reservation_back_to_the_available_balance() {
        AccountTest::with(())
            .given(holding())
            .when(system(release(1, ReleaseReason::Failed)))
            .then_expect_events(vec![released(1, 6, ReleaseReason::Failed)]);
        let account = state(&[
            welcomed(10),
            reserved(1, 6),
            released(1, 6, ReleaseReason::Failed),
        ]);
        assert_eq!((account.available(), account.reserved()), (10, 0));
        assert_eq!(account.spent, 0);
    }

    #[test]
    fn a_duplicate_release_is_a_no_op_whatever_its_reason() {
        let mut given = holding();
        given.push(released(1, 6, ReleaseReason::DeadlinePassed));
        AccountTest::with(())
            .given(given)
            .when(system(release(1, ReleaseReason::Failed)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_captured_reservation_cannot_be_released() {
        let mut given = holding();
        given.push(captured(1, 6));
        AccountTest::with(())
            .given(given)
            .when(system(release(1, ReleaseReason::Failed)))
            .then_expect_error(AccountError::ReservationAlreadyCaptured(reservation(1)));
    }

    #[test]
    fn a_released_reservation_cannot_be_captured() {
        let mut given = holding();
        given.push(released(1, 6, ReleaseReason::AvatarDeleted));
        AccountTest::with(())
            .given(given)
            .when(system(capture(1)))
            .then_expect_error(AccountError::ReservationAlreadyReleased(reservation(1)));
    }

    #[test]
    fn an_unknown_reservation_can_be_neither_captured_nor_released() {
        AccountTest::with(())
            .given(holding())
            .when(system(capture(9)))
            .then_expect_error(AccountError::UnknownReservation(reservation(9)));
        AccountTest::with(())
            .given(holding())
            .when(system(release(9, ReleaseReason::Cancelled)))
            .then_expect_error(AccountError::UnknownReservation(reservation(9)));
    }

    #[test]
    fn an_operator_may_release_a_stuck_reservation() {
        AccountTest::with(())
            .given(holding())
            .when(operator(release(1, ReleaseReason::Refused)))
            .then_expect_events(vec![released(1, 6, ReleaseReason::Refused)]);
    }

    #[test]
    fn released_credits_can_be_reserved_again() {
        AccountTest::with(())
            .given(vec![
                welcomed(10),
                reserved(1, 10),
                released(1, 10, ReleaseReason::Failed),
            ])
            .when(user(reserve(2, 10)))
            .then_expect_events(vec![reserved(2, 10)]);
    }

    #[test]
    fn only_the_latest_ended_reservations_are_remembered() {
        let mut events = vec![welcomed(1_000)];
        for n in 0..(REMEMBERED_ENDED_RESERVATIONS as u128 + 10) {
            events.push(reserved(n, 1));
            events.push(captured(n, 1));
        }
        let account = state(&events);
        assert_eq!(
            account.ended_reservations.len(),
            REMEMBERED_ENDED_RESERVATIONS
        );
        assert_eq!(account.spent, REMEMBERED_ENDED_RESERVATIONS as u64 + 10);
    }
}

mod refunds {
    use super::*;

    fn bought() -> Vec<AccountEvent> {
        vec![welcomed(10), purchased(CHARGE, 100, 250)]
    }

    fn at_time(when: DateTime<Utc>, action: AccountAction) -> AccountCommand {
        AccountCommand::new(Actor::User(USER), when, action)
    }

    #[test]
    fn a_user_gets_an_unspent_purchase_refunded_within_the_window() {
        AccountTest::with(())
            .given(bought())
            .when(user(request_refund(CHARGE)))
            .then_expect_events(vec![refunded(CHARGE, 100, 250, RefundRequester::User)]);
        let mut events = bought();
        events.push(refunded(CHARGE, 100, 250, RefundRequester::User));
        let account = state(&events);
        assert_eq!(account.available(), 10);
        assert!(account.purchases[CHARGE].refunded);
    }

    #[test]
    fn the_last_moment_of_the_window_is_still_in_time() {
        let result = AccountTest::with(())
            .given(bought())
            .when(at_time(later(WINDOW), request_refund(CHARGE)))
            .inspect_result();
        assert_eq!(result.map(|events| events.len()), Ok(1));
    }

    #[test]
    fn after_the_window_a_refund_is_refused() {
        AccountTest::with(())
            .given(bought())
            .when(at_time(
                later(WINDOW + Duration::from_secs(1)),
                request_refund(CHARGE),
            ))
            .then_expect_error(AccountError::RefundWindowClosed {
                purchased_at: at(),
                closed_at: later(WINDOW),
            });
    }

    #[test]
    fn spent_credits_cannot_be_refunded() {
        let mut given = bought();
        given.extend([reserved(1, 11), captured(1, 11)]);
        AccountTest::with(())
            .given(given)
            .when(user(request_refund(CHARGE)))
            .then_expect_error(AccountError::PurchaseCreditsSpent {
                needed: 100,
                available: 99,
            });
    }

    #[test]
    fn granted_credits_are_in_effect_spent_first() {
        let mut given = bought();
        given.extend([reserved(1, 10), captured(1, 10)]);
        AccountTest::with(())
            .given(given)
            .when(user(request_refund(CHARGE)))
            .then_expect_events(vec![refunded(CHARGE, 100, 250, RefundRequester::User)]);
    }

    #[test]
    fn credits_held_by_an_open_reservation_are_not_refundable() {
        let mut given = bought();
        given.push(reserved(1, 20));
        AccountTest::with(())
            .given(given)
            .when(user(request_refund(CHARGE)))
            .then_expect_error(AccountError::PurchaseCreditsSpent {
                needed: 100,
                available: 90,
            });
    }

    #[test]
    fn a_second_refund_of_one_purchase_is_a_no_op_even_after_the_window() {
        let mut given = bought();
        given.push(refunded(CHARGE, 100, 250, RefundRequester::User));
        AccountTest::with(())
            .given(given)
            .when(at_time(later(WINDOW * 2), request_refund(CHARGE)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unknown_charge_cannot_be_refunded() {
        AccountTest::with(())
            .given(bought())
            .when(user(request_refund("other")))
            .then_expect_error(AccountError::UnknownPurchase("other".into()));
    }

    #[test]
    fn an_operator_refunds_with_a_reason_and_a_window_of_their_choice() {
        AccountTest::with(())
            .given(bought())
            .when(AccountCommand::new(
                Actor::Operator("alice".into()),
                later(WINDOW * 2),
                AccountAction::RefundPurchase {
                    telegram_payment_charge_id: CHARGE.into(),
                    window: WINDOW * 3,
                    reason: "charged during outage".into(),
                },
            ))
            .then_expect_events(vec![AccountEvent::PurchaseRefunded {
                telegram_payment_charge_id: CHARGE.into(),
                credits: 100,
                stars: 250,
                by: RefundRequester::Operator {
                    operator: "alice".into(),
                    reason: "charged during outage".into(),
                },
                at: later(WINDOW * 2),
            }]);
    }

    #[test]
    fn an_operator_refund_needs_a_reason() {
        AccountTest::with(())
            .given(bought())
            .when(operator(AccountAction::RefundPurchase {
                telegram_payment_charge_id: CHARGE.into(),
                window: WINDOW,
                reason: "".into(),
            }))
            .then_expect_error(AccountError::EmptyReason);
    }
}

mod authorization {
    use super::*;

    #[test]
    fn a_user_cannot_grant_credits_to_themselves() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(user(AccountAction::GrantCredits {
                credits: 1_000,
                reason: "because".into(),
            }))
            .then_expect_error(not_permitted("a Telegram user", "grant_credits"));
        AccountTest::with(())
            .given_no_previous_events()
            .when(user(AccountAction::GrantWelcome { credits: 10 }))
            .then_expect_error(not_permitted("a Telegram user", "grant_welcome"));
    }

    #[test]
    fn a_user_cannot_record_a_payment_nor_end_a_reservation() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(user(record_purchase(CHARGE, 100, 250)))
            .then_expect_error(not_permitted("a Telegram user", "record_purchase"));
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 5)])
            .when(user(release(1, ReleaseReason::Cancelled)))
            .then_expect_error(not_permitted("a Telegram user", "release"));
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 5)])
            .when(user(capture(1)))
            .then_expect_error(not_permitted("a Telegram user", "capture"));
    }

    #[test]
    fn the_system_cannot_refund_on_a_users_behalf() {
        AccountTest::with(())
            .given(vec![purchased(CHARGE, 100, 250)])
            .when(system(request_refund(CHARGE)))
            .then_expect_error(not_permitted("the system", "request_refund"));
    }

    #[test]
    fn the_system_cannot_reserve_nor_grant_as_an_operator() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(system(reserve(1, 5)))
            .then_expect_error(not_permitted("the system", "reserve"));
        AccountTest::with(())
            .given_no_previous_events()
            .when(system(AccountAction::GrantCredits {
                credits: 5,
                reason: "x".into(),
            }))
            .then_expect_error(not_permitted("the system", "grant_credits"));
    }

    #[test]
    fn an_operator_cannot_spend_a_users_credits_nor_invent_a_payment() {
        AccountTest::with(())
            .given(vec![welcomed(10)])
            .when(operator(reserve(1, 5)))
            .then_expect_error(not_permitted("an operator", "reserve"));
        AccountTest::with(())
            .given(vec![welcomed(10), reserved(1, 5)])
            .when(operator(capture(1)))
            .then_expect_error(not_permitted("an operator", "capture"));
        AccountTest::with(())
            .given_no_previous_events()
            .when(operator(record_purchase(CHARGE, 100, 250)))
            .then_expect_error(not_permitted("an operator", "record_purchase"));
    }

    #[test]
    fn a_user_may_only_address_their_own_account() {
        let own = account_id(USER);
        assert_eq!(own, "account-4242424242");
        assert_eq!(telegram_id_of(&own), Some(USER));
        assert_eq!(telegram_id_of("avatar-1"), None);
        assert_eq!(ensure_own_account(&own, &Actor::User(USER)), Ok(()));
        assert_eq!(
            ensure_own_account(&account_id(7), &Actor::User(USER)),
            Err(AccountError::NotOwner)
        );
        assert_eq!(
            ensure_own_account(&own, &Actor::System("payments".into())),
            Ok(())
        );
        assert_eq!(
            ensure_own_account(&own, &Actor::Operator("alice".into())),
            Ok(())
        );
    }
}

mod the_books {
    use super::*;

    /// A small deterministic generator (a linear congruential one), so the long run below is the
    /// same on every machine.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, sides: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % sides
        }
    }

    fn next_command(dice: &mut Dice, step: u64) -> AccountCommand {
        let when = at() + TimeDelta::hours(step as i64);
        let id = u128::from(dice.roll(40));
        let charge = format!("charge-{}", dice.roll(12));
        let credits = 1 + dice.roll(30) as u32;
        let (by, action) = match dice.roll(11) {
            0 => (
                Actor::System("bot".into()),
                AccountAction::GrantWelcome { credits },
            ),
            1 => (
                Actor::User(USER),
                AccountAction::RedeemPromoCode {
                    code: format!("code{}", dice.roll(5)),
                    credits,
                },
            ),
            2 => (
                Actor::Operator("alice".into()),
                AccountAction::GrantCredits {
                    credits,
                    reason: "goodwill".into(),
                },
            ),
            3 | 4 => (
                Actor::System("payments".into()),
                AccountAction::RecordPurchase {
                    pack: "pack".into(),
                    credits: credits * 5,
                    stars: credits * 10,
                    telegram_payment_charge_id: charge,
                },
            ),
            5 | 6 => (Actor::User(USER), reserve(id, credits)),
            7 => (Actor::System("fal".into()), capture(id)),
            8 => (
                Actor::System("fal".into()),
                release(id, ReleaseReason::Failed),
            ),
            9 => (Actor::User(USER), request_refund(&charge)),
            _ => (
                Actor::Operator("bob".into()),
                AccountAction::RefundPurchase {
                    telegram_payment_charge_id: charge,
                    window: WINDOW * 10,
                    reason: "support ticket".into(),
                },
            ),
        };
        AccountCommand::new(by, when, action)
    }

    #[tokio::test]
    async fn the_balance_is_always_the_sum_of_the_ledgers_movements() {
        let mut dice = Dice(2026);
        let mut account = Account::default();
        let mut history = Vec::new();
        let (mut accepted, mut refused) = (0, 0);
        for step in 0..3_000 {
            let sink = EventSink::default();
            match account
                .handle(next_command(&mut dice, step), &(), &sink)
                .await
            {
                Ok(()) => accepted += 1,
                Err(_) => refused += 1,
            }
            history.extend(sink.collect().await);

            let audited = balance_from_events(&history);
            assert!(audited >= 0, "the balance went negative at step {step}");
            assert_eq!(audited, account.available() as i64, "at step {step}");
            let open: u64 = account
                .open_reservations
                .values()
                .map(|r| u64::from(r.credits))
                .sum();
            assert_eq!(account.reserved(), open);
            assert_eq!(
                account.available() + account.reserved(),
                account.total_granted_and_purchased() - account.spent - account.refunded
            );
        }
        assert!(accepted > 500 && refused > 500, "{accepted} / {refused}");
        let kinds: std::collections::BTreeSet<_> = history.iter().map(|e| e.name()).collect();
        assert_eq!(kinds.len(), 6, "every kind of event occurred: {kinds:?}");
        assert_eq!(
            state(&history),
            account,
            "replaying the history rebuilds the state"
        );
    }

    #[test]
    fn each_event_says_how_it_moves_the_available_balance() {
        let events = [
            welcomed(10),
            purchased(CHARGE, 100, 250),
            reserved(1, 10),
            captured(1, 10),
            reserved(2, 5),
            released(2, 5, ReleaseReason::Cancelled),
            refunded(CHARGE, 100, 250, RefundRequester::User),
        ];
        let deltas: Vec<i64> = events.iter().map(AccountEvent::available_delta).collect();
        assert_eq!(deltas, [10, 100, -10, 0, -5, 5, -100]);
        assert_eq!(balance_from_events(&events), 0);
        assert_eq!(state(&events).available(), 0);
    }
}

mod serialization {
    use super::*;

    #[test]
    fn events_are_tagged_by_name_and_versioned() {
        let event = AccountEvent::CreditsGranted {
            credits: 25,
            source: GrantSource::PromoCode {
                code: "SPRING26".into(),
            },
            at: at(),
        };
        assert_eq!(event.event_type(), "CreditsGranted");
        assert_eq!(event.event_version(), "1");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"CreditsGranted": {
                "credits": 25,
                "source": {"type": "promo_code", "code": "SPRING26"},
                "at": "2026-01-02T03:04:05Z",
            }})
        );
    }

    #[test]
    fn events_round_trip_and_never_name_the_user() {
        let events = vec![
            welcomed(10),
            purchased(CHARGE, 100, 250),
            AccountEvent::CreditsReserved {
                reservation_id: reservation(1),
                credits: 40,
                purpose: training(),
                at: at(),
            },
            reserved(2, 6),
            captured(1, 40),
            released(2, 6, ReleaseReason::DeadlinePassed),
            refunded(CHARGE, 100, 250, RefundRequester::User),
        ];
        for event in events {
            let json = serde_json::to_string(&event).unwrap();
            assert!(!json.contains(&USER.to_string()), "{json}");
            let back: AccountEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn the_state_round_trips_as_a_snapshot() {
        let account = state(&[
            welcomed(10),
            purchased(CHARGE, 100, 250),
            reserved(1, 6),
            reserved(2, 6),
            captured(1, 6),
        ]);
        let json = serde_json::to_string(&account).unwrap();
        assert_eq!(serde_json::from_str::<Account>(&json).unwrap(), account);
    }
}
