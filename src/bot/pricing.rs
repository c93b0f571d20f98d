//! What credits cost and what paid work costs in credits: the `PAYMENTS` switch, the packs sold
//! for Telegram Stars, the welcome gift, the prices of trainings and images, the refund window,
//! and the invoice payload that names a pack. Parsed once at start; every error names its variable.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aggregates::{GenerationPreset, TrainingPreset};
use uuid::Uuid;

/// Telegram's currency code for Stars, the only currency digital goods may be sold in.
pub const STARS: &str = "XTR";
/// Telegram allows invoice payloads of 1–128 bytes.
const MAX_PAYLOAD_BYTES: usize = 128;
const PAYLOAD_PREFIX: &str = "pack";

/// Why a payments setting could not be read; the message names the variable and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("{variable}: `{value}` is not `off` or `stars`")]
    Mode {
        variable: &'static str,
        value: String,
    },
    #[error("{variable}: at least one pack `credits:stars` is needed")]
    NoPacks { variable: &'static str },
    #[error("{variable}: `{entry}` is not `credits:stars` with two positive whole numbers")]
    Pack {
        variable: &'static str,
        entry: String,
    },
    #[error("{variable}: the pack `{entry}` is listed twice")]
    DuplicatePack {
        variable: &'static str,
        entry: String,
    },
    #[error("{variable}: `{entry}` is not a whole number of credits")]
    Price {
        variable: &'static str,
        entry: String,
    },
    #[error("{variable}: `{preset}` is not a preset (expected one of {expected}, or `default`)")]
    UnknownPreset {
        variable: &'static str,
        preset: String,
        expected: String,
    },
    #[error("{variable}: preset `{preset}` is priced twice")]
    DuplicatePreset {
        variable: &'static str,
        preset: String,
    },
    #[error("{variable}: no price for preset `{preset}` (price every preset, or add `default:N`)")]
    MissingPreset {
        variable: &'static str,
        preset: &'static str,
    },
    #[error("{variable}: `{value}` is not a whole number of days")]
    Days {
        variable: &'static str,
        value: String,
    },
}

/// Whether the bot sells credits (charging paid work comes next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaymentsMode {
    /// Everything is free, as before credits existed: no checks, no buttons, no invoices.
    #[default]
    Off,
    /// Credits are sold in Telegram Stars, and trainings and images are paid for with them.
    Stars,
}

impl PaymentsMode {
    pub fn parse(value: &str) -> Result<Self, PricingError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" | "" => Ok(Self::Off),
            "stars" => Ok(Self::Stars),
            _ => Err(PricingError::Mode {
                variable: "PAYMENTS",
                value: value.to_owned(),
            }),
        }
    }
}

/// A pack of credits on sale: so many credits for so many Stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreditPack {
    pub credits: u32,
    pub stars: u32,
}

impl CreditPack {
    /// The pack's name as configured and as the ledger records it (`credits:stars`).
    pub fn name(&self) -> String {
        format!("{}:{}", self.credits, self.stars)
    }
}

/// The packs on sale, in the configured order (which is the order of the buttons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditPacks(Vec<CreditPack>);

impl CreditPacks {
    /// `credits:stars,credits:stars,…` (`CREDIT_PACKS`).
    pub fn parse(value: &str) -> Result<Self, PricingError> {
        const VARIABLE: &str = "CREDIT_PACKS";
        let mut packs: Vec<CreditPack> = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let wrong = || PricingError::Pack {
                variable: VARIABLE,
                entry: entry.to_owned(),
            };
            let (credits, stars) = entry.split_once(':').ok_or_else(wrong)?;
            let credits = positive(credits).ok_or_else(wrong)?;
            let stars = positive(stars).ok_or_else(wrong)?;
            let pack = CreditPack { credits, stars };
            if packs.contains(&pack) {
                return Err(PricingError::DuplicatePack {
                    variable: VARIABLE,
                    entry: entry.to_owned(),
                });
            }
            packs.push(pack);
        }
        if packs.is_empty() {
            return Err(PricingError::NoPacks { variable: VARIABLE });
        }
        Ok(Self(packs))
    }

    pub fn iter(&self) -> impl Iterator<Item = &CreditPack> {
        self.0.iter()
    }

    /// Whether `pack` is on sale exactly so (same credits for the same Stars).
    pub fn offers(&self, pack: CreditPack) -> bool {
        self.0.contains(&pack)
    }
}

impl Default for CreditPacks {
    fn default() -> Self {
        Self::parse(DEFAULT_CREDIT_PACKS).expect("the default packs parse")
    }
}

/// The packs when `CREDIT_PACKS` is not set.
pub const DEFAULT_CREDIT_PACKS: &str = "10:50,50:200,120:450";

fn positive(s: &str) -> Option<u32> {
    s.trim().parse::<u32>().ok().filter(|n| *n > 0)
}

/// The presets a price list can name.
pub trait Preset: Copy + Eq + fmt::Debug + 'static {
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
}

impl Preset for TrainingPreset {
    fn all() -> &'static [Self] {
        &TrainingPreset::ALL
    }
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Preset for GenerationPreset {
    fn all() -> &'static [Self] {
        &GenerationPreset::ALL
    }
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Credits per unit of work, one value for every preset or one per preset. Zero is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceList<P: Preset> {
    /// Every preset's price, in the presets' own order.
    prices: Vec<(P, u32)>,
    /// The price when no preset was chosen: `default:N`, the one value, or the dearest preset's.
    otherwise: u32,
}

impl<P: Preset> PriceList<P> {
    /// `N`, or `preset:N,…` naming every preset (or giving `default:N` for the rest).
    pub fn parse(variable: &'static str, value: &str) -> Result<Self, PricingError> {
        let value = value.trim();
        let price = |entry: &str| {
            entry
                .trim()
                .parse::<u32>()
                .map_err(|_| PricingError::Price {
                    variable,
                    entry: entry.trim().to_owned(),
                })
        };
        if !value.contains(':') {
            let one = price(value)?;
            return Ok(Self::flat(one));
        }
        let mut listed: Vec<(P, u32)> = Vec::new();
        let mut default = None;
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, amount) = entry.split_once(':').ok_or_else(|| PricingError::Price {
                variable,
                entry: entry.to_owned(),
            })?;
            let name = name.trim().to_ascii_lowercase();
            let amount = price(amount)?;
            if name == "default" {
                if default.replace(amount).is_some() {
                    return Err(PricingError::DuplicatePreset {
                        variable,
                        preset: name,
                    });
                }
                continue;
            }
            let preset = P::all()
                .iter()
                .copied()
                .find(|p| p.name() == name)
                .ok_or_else(|| PricingError::UnknownPreset {
                    variable,
                    preset: name.clone(),
                    expected: P::all()
                        .iter()
                        .map(|p| format!("`{}`", p.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if listed.iter().any(|(p, _)| *p == preset) {
                return Err(PricingError::DuplicatePreset {
                    variable,
                    preset: name,
                });
            }
            listed.push((preset, amount));
        }
        let prices = P::all()
            .iter()
            .map(|preset| {
                listed
                    .iter()
                    .find(|(p, _)| p == preset)
                    .map(|(_, amount)| *amount)
                    .or(default)
                    .map(|amount| (*preset, amount))
                    .ok_or(PricingError::MissingPreset {
                        variable,
                        preset: preset.name(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Without a preset the work may be any of them; charging the dearest never undercharges.
        let otherwise =
            default.unwrap_or_else(|| prices.iter().map(|(_, a)| *a).max().unwrap_or(0));
        Ok(Self { prices, otherwise })
    }

    /// The same price for every preset.
    pub fn flat(credits: u32) -> Self {
        Self {
            prices: P::all().iter().map(|p| (*p, credits)).collect(),
            otherwise: credits,
        }
    }

    /// The price of one unit of work with `preset` (or none chosen).
    pub fn of(&self, preset: Option<P>) -> u32 {
        preset
            .and_then(|preset| self.prices.iter().find(|(p, _)| *p == preset))
            .map_or(self.otherwise, |(_, amount)| *amount)
    }
}

/// What paid work costs in credits.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Prices {
    /// Credits per training: one value, or per preset (`fast:20,balanced:30,quality:40`).
    #[arg(long = "price-training", env = "PRICE_TRAINING", default_value = DEFAULT_PRICE_TRAINING,
          value_parser = |s: &str| PriceList::<TrainingPreset>::parse("PRICE_TRAINING", s))]
    pub training: PriceList<TrainingPreset>,
    /// Credits per image: one value, or per generation preset (`ultra:3,default:1`); a
    /// generation of n images costs n times this.
    #[arg(long = "price-image", env = "PRICE_IMAGE", default_value = DEFAULT_PRICE_IMAGE,
          value_parser = |s: &str| PriceList::<GenerationPreset>::parse("PRICE_IMAGE", s))]
    pub image: PriceList<GenerationPreset>,
}

impl Prices {
    pub fn parse(training: &str, image: &str) -> Result<Self, PricingError> {
        Ok(Self {
            training: PriceList::parse("PRICE_TRAINING", training)?,
            image: PriceList::parse("PRICE_IMAGE", image)?,
        })
    }

    /// The credits a training with `preset` costs.
    pub fn training(&self, preset: TrainingPreset) -> u32 {
        self.training.of(Some(preset))
    }

    /// The credits `images` images with `preset` cost.
    pub fn generation(&self, preset: Option<GenerationPreset>, images: u32) -> u32 {
        self.image.of(preset).saturating_mul(images)
    }
}

/// `PRICE_TRAINING` when not set.
pub const DEFAULT_PRICE_TRAINING: &str = "fast:20,balanced:30,quality:40";
/// `PRICE_IMAGE` when not set.
pub const DEFAULT_PRICE_IMAGE: &str = "1";

impl Default for Prices {
    fn default() -> Self {
        Self::parse(DEFAULT_PRICE_TRAINING, DEFAULT_PRICE_IMAGE).expect("the default prices parse")
    }
}

/// Everything the bot needs to sell credits and charge for work; read from the environment as
/// a section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Payments")]
pub struct PaymentsConfig {
    /// `off` (nothing costs anything) or `stars` (credits are sold in Telegram Stars and paid
    /// work costs credits).
    #[arg(long = "payments", env = "PAYMENTS", default_value = "off", value_parser = PaymentsMode::parse)]
    pub mode: PaymentsMode,
    /// The packs on sale, `credits:stars` comma-separated, in the order shown.
    #[arg(long = "credit-packs", env = "CREDIT_PACKS", default_value = DEFAULT_CREDIT_PACKS, value_parser = CreditPacks::parse)]
    pub packs: CreditPacks,
    /// Credits every new account gets once when payments are on (0: none).
    #[arg(long = "welcome-credits", env = "WELCOME_CREDITS", default_value_t = 0)]
    pub welcome_credits: u32,
    #[command(flatten)]
    pub prices: Prices,
    /// Days after a purchase during which its unspent credits may be refunded.
    #[arg(long = "refund-window-days", env = "REFUND_WINDOW_DAYS", default_value = "14", value_parser = parse_refund_window)]
    pub refund_window: Duration,
    /// Who answers questions about payments (`/paysupport`): a @username, an e-mail or a link.
    #[arg(long = "payments-support", env = "PAYMENTS_SUPPORT")]
    pub support_contact: Option<String>,
}

impl PaymentsConfig {
    /// Off: today's bot, where nothing costs anything.
    pub fn off() -> Self {
        Self {
            mode: PaymentsMode::Off,
            packs: CreditPacks::default(),
            welcome_credits: 0,
            prices: Prices::default(),
            refund_window: days(14),
            support_contact: None,
        }
    }

    /// Selling in Stars with the default packs and prices.
    pub fn stars() -> Self {
        Self {
            mode: PaymentsMode::Stars,
            ..Self::off()
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode == PaymentsMode::Stars
    }
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self::off()
    }
}

/// `REFUND_WINDOW_DAYS`.
pub fn parse_refund_window(value: &str) -> Result<Duration, PricingError> {
    value
        .trim()
        .parse::<u64>()
        .map(days)
        .map_err(|_| PricingError::Days {
            variable: "REFUND_WINDOW_DAYS",
            value: value.to_owned(),
        })
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 60 * 60)
}

/// The invoice payload of a pack: `pack:<credits>:<stars>:<nonce>`. The nonce makes every
/// invoice distinct; the pack is checked against the configuration at pre-checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePayload {
    pub pack: CreditPack,
    pub nonce: String,
}

impl InvoicePayload {
    pub fn new(pack: CreditPack) -> Self {
        Self {
            pack,
            nonce: Uuid::new_v4().simple().to_string()[..12].to_owned(),
        }
    }
}

impl fmt::Display for InvoicePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PAYLOAD_PREFIX}:{}:{}:{}",
            self.pack.credits, self.pack.stars, self.nonce
        )
    }
}

/// An invoice payload that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a pack invoice payload ({len} bytes)")]
pub struct PayloadError {
    pub len: usize,
}

impl FromStr for InvoicePayload {
    type Err = PayloadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = || PayloadError { len: s.len() };
        if s.len() > MAX_PAYLOAD_BYTES {
            return Err(refuse());
        }
        let [prefix, credits, stars, nonce] = s.split(':').collect::<Vec<_>>()[..] else {
            return Err(refuse());
        };
        if prefix != PAYLOAD_PREFIX
            || nonce.is_empty()
            || !nonce.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(refuse());
        }
        // Only canonical numbers, so one payload has one spelling.
        let number = |n: &str| positive(n).filter(|v| v.to_string() == n);
        Ok(Self {
            pack: CreditPack {
                credits: number(credits).ok_or_else(refuse)?,
                stars: number(stars).ok_or_else(refuse)?,
            },
            nonce: nonce.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_parse_in_order_and_errors_name_the_variable() {
        let packs = CreditPacks::parse(" 10:50, 50:200,120:450 ").unwrap();
        let listed: Vec<String> = packs.iter().map(CreditPack::name).collect();
        assert_eq!(listed, ["10:50", "50:200", "120:450"]);
        assert!(packs.offers(CreditPack {
            credits: 50,
            stars: 200
        }));
        assert!(!packs.offers(CreditPack {
            credits: 50,
            stars: 1
        }));
        for wrong in ["10", "10:0", "0:5", "a:5", "10:50,10:50", "", " , "] {
            let error = CreditPacks::parse(wrong).unwrap_err();
            assert!(error.to_string().starts_with("CREDIT_PACKS: "), "{error}");
        }
    }

    #[test]
    fn prices_are_one_value_or_one_per_preset() {
        let flat = PriceList::<GenerationPreset>::parse("PRICE_IMAGE", "3").unwrap();
        assert_eq!(flat.of(Some(GenerationPreset::Ultra)), 3);
        assert_eq!(flat.of(None), 3);

        let training =
            PriceList::<TrainingPreset>::parse("PRICE_TRAINING", "fast:20,balanced:30,quality:40")
                .unwrap();
        assert_eq!(training.of(Some(TrainingPreset::Quality)), 40);
        assert_eq!(training.of(None), 40);

        let images =
            PriceList::<GenerationPreset>::parse("PRICE_IMAGE", "ultra:5,default:2").unwrap();
        assert_eq!(images.of(Some(GenerationPreset::Ultra)), 5);
        assert_eq!(images.of(Some(GenerationPreset::Fast)), 2);
        assert_eq!(images.of(None), 2);

        let prices = Prices::parse("25", "ultra:5,default:2").unwrap();
        assert_eq!(prices.generation(Some(GenerationPreset::Ultra), 4), 20);
        assert_eq!(prices.training(TrainingPreset::Fast), 25);
    }

    #[test]
    fn a_wrong_price_names_its_variable_and_entry() {
        let missing = PriceList::<TrainingPreset>::parse("PRICE_TRAINING", "fast:20").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "PRICE_TRAINING: no price for preset `balanced` (price every preset, or add `default:N`)"
        );
        let unknown = PriceList::<GenerationPreset>::parse("PRICE_IMAGE", "turbo:2").unwrap_err();
        assert!(unknown
            .to_string()
            .starts_with("PRICE_IMAGE: `turbo` is not a preset"));
        let twice =
            PriceList::<GenerationPreset>::parse("PRICE_IMAGE", "ultra:2,ultra:3,default:1")
                .unwrap_err();
        assert!(matches!(twice, PricingError::DuplicatePreset { .. }));
        let not_a_number = PriceList::<GenerationPreset>::parse("PRICE_IMAGE", "-1").unwrap_err();
        assert_eq!(
            not_a_number.to_string(),
            "PRICE_IMAGE: `-1` is not a whole number of credits"
        );
        assert!(PaymentsMode::parse("card")
            .unwrap_err()
            .to_string()
            .starts_with("PAYMENTS: "));
        assert!(parse_refund_window("two weeks")
            .unwrap_err()
            .to_string()
            .starts_with("REFUND_WINDOW_DAYS: "));
        assert_eq!(parse_refund_window("14").unwrap(), days(14));
    }

    #[test]
    fn an_invoice_payload_round_trips_and_nothing_else_parses() {
        let payload = InvoicePayload::new(CreditPack {
            credits: 50,
            stars: 200,
        });
        let text = payload.to_string();
        assert!(text.starts_with("pack:50:200:"), "{text}");
        assert!(text.len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(text.parse::<InvoicePayload>().unwrap(), payload);
        for wrong in [
            "",
            "pack:50:200",
            "pack:50:200:",
            "pack:050:200:abc",
            "pack:50:0:abc",
            "pack:50:200:a-b",
            "buy:50:200:abc",
            "pack:50:200:abc:more",
        ] {
            assert!(wrong.parse::<InvoicePayload>().is_err(), "{wrong}");
        }
    }
}
