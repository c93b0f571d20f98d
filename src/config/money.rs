//! The settings of the money views: what FAL charges per endpoint and what a Telegram Star is
//! worth, stored at every start so the views can price work and revenue.

use clap::Args;

/// What the money views price work and revenue with.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Money views")]
pub struct MoneySettings {
    /// What FAL charges, for the money views: `endpoint:usd` comma-separated, USD per completed
    /// request of a trainer and per image of a generator (`fal-ai/flux-lora:0.035,…`).
    #[arg(long = "fal-prices", env = "FAL_PRICES", default_value = "", hide_default_value = true,
          value_parser = FalPrices::parse)]
    pub fal_prices: FalPrices,

    /// USD one Telegram Star is worth to us, for the money views.
    #[arg(long = "stars-usd", env = "STARS_USD", default_value_t = DEFAULT_STARS_USD,
          value_parser = parse_stars_usd)]
    pub stars_usd: f64,
}

impl Default for MoneySettings {
    fn default() -> Self {
        Self {
            fal_prices: FalPrices::default(),
            stars_usd: DEFAULT_STARS_USD,
        }
    }
}

/// Telegram's reward rate for a Star (what a developer's Stars are valued at when withdrawn).
pub const DEFAULT_STARS_USD: f64 = 0.013;

/// A money setting that cannot be read; it names its variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoneySettingError {
    #[error("{variable}: `{entry}` is not `endpoint:usd` with a FAL endpoint and a price of zero or more")]
    Price {
        variable: &'static str,
        entry: String,
    },
    #[error("{variable}: the endpoint `{endpoint}` is priced twice")]
    DuplicateEndpoint {
        variable: &'static str,
        endpoint: String,
    },
    #[error("{variable}: `{value}` is not a USD amount of zero or more")]
    Amount {
        variable: &'static str,
        value: String,
    },
}

/// What FAL charges per endpoint, in USD: per completed request of a trainer, per image of a
/// generator or upscaler (FAL bills those by the megapixel; one image of ours is about one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FalPrices(Vec<(String, f64)>);

impl FalPrices {
    /// `FAL_PRICES`: `endpoint:usd` comma-separated; empty is no prices.
    pub fn parse(value: &str) -> Result<Self, MoneySettingError> {
        const VARIABLE: &str = "FAL_PRICES";
        let mut prices: Vec<(String, f64)> = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || MoneySettingError::Price {
                variable: VARIABLE,
                entry: entry.to_owned(),
            };
            // Endpoints hold slashes, never colons: the price follows the last colon.
            let (endpoint, usd) = entry.rsplit_once(':').ok_or_else(invalid)?;
            let endpoint = endpoint.trim();
            let usd: f64 = usd.trim().parse().map_err(|_| invalid())?;
            if endpoint.is_empty()
                || endpoint.contains(char::is_whitespace)
                || !usd.is_finite()
                || usd < 0.0
            {
                return Err(invalid());
            }
            if prices.iter().any(|(known, _)| known == endpoint) {
                return Err(MoneySettingError::DuplicateEndpoint {
                    variable: VARIABLE,
                    endpoint: endpoint.to_owned(),
                });
            }
            prices.push((endpoint.to_owned(), usd));
        }
        Ok(Self(prices))
    }

    /// Each endpoint and its price, in the configured order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0
            .iter()
            .map(|(endpoint, usd)| (endpoint.as_str(), *usd))
    }

    pub fn get(&self, endpoint: &str) -> Option<f64> {
        self.iter()
            .find(|(e, _)| *e == endpoint)
            .map(|(_, usd)| usd)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_stars_usd(s: &str) -> Result<f64, MoneySettingError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|usd| usd.is_finite() && *usd >= 0.0)
        .ok_or_else(|| MoneySettingError::Amount {
            variable: "STARS_USD",
            value: s.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fal_prices_read_endpoints_with_slashes_and_name_the_variable_when_wrong() {
        let prices =
            FalPrices::parse("fal-ai/flux-lora:0.035, fal-ai/flux-lora-fast-training:2").unwrap();
        assert_eq!(prices.get("fal-ai/flux-lora"), Some(0.035));
        assert_eq!(prices.get("fal-ai/flux-lora-fast-training"), Some(2.0));
        assert_eq!(prices.get("fal-ai/flux-pro"), None);
        assert!(FalPrices::parse("").unwrap().is_empty());
        for wrong in [
            "fal-ai/flux-lora",
            "fal-ai/flux-lora:-1",
            ":0.5",
            "fal-ai/x:abc",
        ] {
            let err = FalPrices::parse(wrong).unwrap_err();
            assert!(err.to_string().starts_with("FAL_PRICES: "), "{err}");
        }
        let twice = FalPrices::parse("a/b:1,a/b:2").unwrap_err();
        assert!(twice.to_string().contains("priced twice"), "{twice}");
    }

    #[test]
    fn stars_usd_is_a_non_negative_amount() {
        assert_eq!(parse_stars_usd("0.013"), Ok(0.013));
        let err = parse_stars_usd("-0.1").unwrap_err();
        assert!(err.to_string().starts_with("STARS_USD: "), "{err}");
    }
}
