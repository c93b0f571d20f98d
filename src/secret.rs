//! Values that must never reach a log: a [`Secret`] prints as `***` and a [`SecretUrl`] with its
//! credentials masked, through `{}` and `{:?}` alike; the whole value only via `expose`.

use std::fmt;

/// A token, key or password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// A URL that may carry credentials (userinfo, secret query parameters): shown masked by
/// [`redact_url`], used whole.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The URL itself, credentials included, for the client that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// A URL with its password (or lone token) and secret-looking query parameters replaced, fit for
/// logs.
pub fn redact_url(url: &str) -> String {
    // Userinfo: keep the user name, hide the password (or a lone token).
    let masked = match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at))
            if at > scheme_end && !url[scheme_end + 3..at].contains('/') =>
        {
            let userinfo = &url[scheme_end + 3..at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}://{shown}@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    // Query parameters whose names say they are secret.
    let Some((base, query)) = masked.split_once('?') else {
        return masked;
    };
    let secret_name = |name: &str| {
        let name = name.to_ascii_lowercase();
        [
            "pass",
            "secret",
            "token",
            "key",
            "sig",
            "credential",
            "auth",
        ]
        .iter()
        .any(|s| name.contains(s))
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret_name(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_a_mask_both_ways() {
        let token = Secret::new("123456:AAH-very-secret");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{token:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(token.clone())), "Some(Secret(***))");
        assert_eq!(token.expose(), "123456:AAH-very-secret");
    }

    #[test]
    fn urls_print_with_their_credentials_masked_both_ways() {
        let url = SecretUrl::new("postgres://aisha:s3cret@db/aisha?password=p4ss&sslmode=require");
        let shown = "postgres://aisha:***@db/aisha?password=***&sslmode=require";
        assert_eq!(format!("{url}"), shown);
        assert_eq!(format!("{url:?}"), format!("{shown:?}"));
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://aisha:s3cret@db:5432/aisha"),
            "postgres://aisha:***@db:5432/aisha"
        );
        assert_eq!(redact_url("sqlite://aisha.db"), "sqlite://aisha.db");
        assert_eq!(
            redact_url("postgres://db/aisha?user=a&password=s3cret&sslmode=require"),
            "postgres://db/aisha?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("s3://AKIA:wJalr@bucket/prefix?x-amz-security-token=t0k"),
            "s3://AKIA:***@bucket/prefix?x-amz-security-token=***"
        );
        assert_eq!(
            redact_url("https://bot123:abc@api.telegram.org"),
            "https://bot123:***@api.telegram.org"
        );
        assert_eq!(
            redact_url("https://ghp_tok3n@aisha.example.com/base"),
            "https://***@aisha.example.com/base"
        );
        assert_eq!(
            redact_url("https://example.com/a@b?api_key=k&q=1"),
            "https://example.com/a@b?api_key=***&q=1"
        );
    }
}
