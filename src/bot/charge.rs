//! Paid work from the bot's side: the price is reserved on the user's account in the same step
//! that asks the avatar for the work, under one correlation id, and given back at once when the
//! avatar refuses. The work's outcome settles the reservation later (`actors::settle`); a crash
//! between the two writes leaves a reservation the avatar never heard of, which the settle sweep
//! releases.

use aggregates::account::ReservationPurpose;
use aggregates::{
    AccountAction, AccountCommand, AccountError, Action, Actor, AvatarError,
    Command as AvatarCommand, Origin, ReleaseReason,
};
use chrono::Utc;
use uuid::Uuid;

use crate::bot::ctx::{capitalised, Ctx};
use crate::bot::keyboards as kb;
use crate::bot::press::Answer;
use crate::bot::texts::Texts;
use crate::bot::BotError;
use crate::store::accounts::AccountStoreError;
use crate::store::{Executed, StoreError};

/// The system actor that gives back a reservation the avatar refused.
const REFUSAL_ACTOR: &str = "bot";

/// Why paid (or free) work was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::bot) enum Refusal {
    /// The avatar's rules said no; nothing was charged.
    Avatar(AvatarError),
    /// The balance does not cover the price; nothing was asked of the avatar.
    NoCredits { needed: u32, available: u64 },
}

impl From<AvatarError> for Refusal {
    fn from(refusal: AvatarError) -> Self {
        Self::Avatar(refusal)
    }
}

impl Refusal {
    /// The refusal as one sentence for the user.
    pub(in crate::bot) fn text(&self, t: &dyn Texts) -> String {
        match self {
            Self::Avatar(refusal) => t.refusal(refusal),
            Self::NoCredits { needed, available } => t.insufficient_credits(*needed, *available),
        }
    }
}

/// What an action costs and what its reservation is for; `None` when it is free or credits are
/// not charged.
struct Price {
    reservation_id: Uuid,
    credits: u32,
    purpose: ReservationPurpose,
}

impl Ctx {
    fn price_of(&self, avatar_id: Uuid, action: &Action) -> Option<Price> {
        let payments = &self.deps.payments;
        if !payments.enabled() {
            return None;
        }
        let prices = &payments.prices;
        match action {
            Action::StartTraining {
                training_id,
                preset,
                ..
            } => Some(Price {
                // The training's own id (one per press): its correlation id names the
                // reservation (see settle), and a press handled again reserves nothing more.
                reservation_id: *training_id,
                credits: prices.training(*preset),
                purpose: ReservationPurpose::Training {
                    avatar_id,
                    preset: *preset,
                },
            }),
            // The starter samples are part of the training's price.
            Action::Generate {
                origin: Some(Origin::Starter { .. }),
                ..
            } => None,
            Action::Generate {
                generation_id,
                preset,
                num_images,
                ..
            } => Some(Price {
                reservation_id: *generation_id,
                credits: prices.generation(*preset, *num_images),
                purpose: ReservationPurpose::Generation {
                    avatar_id,
                    generation_id: *generation_id,
                    preset: *preset,
                    images: *num_images,
                },
            }),
            Action::Upscale { generation_id, .. } => Some(Price {
                reservation_id: *generation_id,
                credits: upscale_price(self),
                purpose: ReservationPurpose::Generation {
                    avatar_id,
                    generation_id: *generation_id,
                    preset: None,
                    images: 1,
                },
            }),
            _ => None,
        }
    }

    /// Runs a user's avatar command that may cost credits: reserve the price, then ask the
    /// avatar, both under the reservation's id as correlation id. Free actions (or credits off)
    /// go straight to the avatar.
    pub(in crate::bot) async fn execute_paid(
        &self,
        avatar_id: Uuid,
        action: Action,
    ) -> Result<Result<Executed, Refusal>, BotError> {
        let Some(price) = self.price_of(avatar_id, &action) else {
            return match self.execute(avatar_id, action).await {
                Ok(executed) => Ok(Ok(executed)),
                Err(StoreError::Rejected(refusal)) => Ok(Err(refusal.into())),
                Err(e) => Err(e.into()),
            };
        };
        let Price {
            reservation_id,
            credits,
            purpose,
        } = price;
        let reserve = AccountCommand::new(
            Actor::User(self.user),
            Utc::now(),
            AccountAction::Reserve {
                reservation_id,
                credits,
                purpose,
            },
        );
        match self
            .deps
            .accounts
            .execute(self.user, reserve, reservation_id)
            .await
        {
            Ok(_) => {}
            Err(AccountStoreError::Rejected(AccountError::InsufficientCredits {
                needed,
                balance,
            })) => {
                tracing::info!(user = self.user, %avatar_id, needed, balance, "paid work refused: not enough credits");
                return Ok(Err(Refusal::NoCredits {
                    needed,
                    available: balance,
                }));
            }
            Err(e) => return Err(e.into()),
        }
        let command = AvatarCommand::new(Actor::User(self.user), Utc::now(), action);
        let executed = self
            .deps
            .store
            .execute(avatar_id, command, reservation_id)
            .await;
        match self.done_before(avatar_id, executed).await {
            Ok(executed) => {
                tracing::info!(user = self.user, %avatar_id, %reservation_id, credits, "paid work accepted; credits reserved");
                Ok(Ok(executed))
            }
            // The same request again (a double tap): the first one holds the credits and runs.
            Err(StoreError::Rejected(
                refusal @ (AvatarError::DuplicateGeneration(_) | AvatarError::DuplicateTraining(_)),
            )) => Ok(Err(refusal.into())),
            // Handled again after an interruption, the reservation may be the first run's,
            // whose work the avatar took: the settle sweep decides by the avatar instead.
            Err(StoreError::Rejected(refusal)) if crate::bot::inbox::is_retry() => {
                Ok(Err(refusal.into()))
            }
            Err(StoreError::Rejected(refusal)) => {
                self.give_back(reservation_id).await;
                Ok(Err(refusal.into()))
            }
            // Whether the avatar took it is unknown: the settle sweep decides by the avatar.
            Err(e) => Err(e.into()),
        }
    }

    /// Releases a reservation whose work the avatar refused. If this fails, the settle sweep
    /// releases it later, since the avatar never heard of the work.
    async fn give_back(&self, reservation_id: Uuid) {
        let release = AccountCommand::new(
            Actor::System(REFUSAL_ACTOR.into()),
            Utc::now(),
            AccountAction::Release {
                reservation_id,
                reason: ReleaseReason::Refused,
            },
        );
        if let Err(e) = self
            .deps
            .accounts
            .execute(self.user, release, reservation_id)
            .await
        {
            tracing::warn!(user = self.user, %reservation_id, error = %crate::telemetry::chain(&e),
                "could not give back the credits of refused work; the sweep will");
        }
    }

    /// The price line for an action of `credits`, with the balance; `None` while credits are
    /// not charged (or the balance cannot be read: the action still shows its own refusal).
    pub(in crate::bot) async fn price_line(&self, credits: u32) -> Option<String> {
        let available = self.balance_for_prices().await?;
        Some(self.t().price_line(credits, available))
    }

    /// The price of each training preset, exactly what choosing it reserves.
    pub(in crate::bot) async fn training_prices(&self) -> Option<String> {
        let available = self.balance_for_prices().await?;
        let t = self.t();
        let prices: Vec<(&str, u32)> = aggregates::TrainingPreset::ALL
            .into_iter()
            .map(|p| {
                (
                    t.training_preset_button(p),
                    self.deps.payments.prices.training(p),
                )
            })
            .collect();
        Some(t.price_list(&prices, available))
    }

    /// What an upscale reserves (shown under results).
    pub(in crate::bot) fn upscale_price(&self) -> Option<u32> {
        self.deps.payments.enabled().then(|| upscale_price(self))
    }

    async fn balance_for_prices(&self) -> Option<u64> {
        // None while payments are off. Read once, with the welcome gift a new user is owed already in it.
        crate::bot::screens::payments::grant_welcome(self)
            .await
            .map(|account| account.available())
    }

    /// Answers a refusal of a button's action: an alert with the reason, or, for missing
    /// credits, a message with the packs to buy (an alert cannot carry buttons).
    pub(in crate::bot) async fn answer_refusal(
        &self,
        refusal: Refusal,
    ) -> Result<Answer, BotError> {
        let t = self.t();
        match refusal {
            Refusal::Avatar(refusal) => Ok(Answer::Alert(capitalised(&t.refusal(&refusal)))),
            no_credits @ Refusal::NoCredits { .. } => {
                self.say_no_credits(&no_credits).await?;
                Ok(Answer::Silent)
            }
        }
    }

    /// "Not enough credits" with the packs under it.
    pub(in crate::bot) async fn say_no_credits(&self, refusal: &Refusal) -> Result<(), BotError> {
        let t = self.t();
        self.say(
            refusal.text(t),
            Some(kb::credit_packs(t, &self.deps.payments.packs)),
        )
        .await?;
        Ok(())
    }
}

/// An upscale costs one image at the default image price.
fn upscale_price(ctx: &Ctx) -> u32 {
    ctx.deps.payments.prices.generation(None, 1)
}
