//! Where result files may come from: the allowed hosts, and the refusal of private addresses
//! before and while connecting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::Url;

use super::error::{FalError, NonPublicAddress};

/// Hosts (and their subdomains) FAL serves result files from: `v3.fal.media` and `v3b.fal.media`
/// today (FAL's own clients and storage tests), `fal.media` on older answers.
pub const DEFAULT_MEDIA_HOSTS: &[&str] = &["fal.media"];

/// Where result files may come from.
///
/// A URL passes when its host is one of `host_suffixes` or a subdomain of one (`fal.media`
/// admits `v3.fal.media`, not `evilfal.media`), or when it is on the very origin (scheme, host,
/// port) of an API we were configured to call. Unless `allow_private` (simulated mode and
/// tests), suffix-listed URLs must be `https` and their host must not be, or resolve to, a
/// loopback, private, link-local, shared, multicast or otherwise non-public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPolicy {
    host_suffixes: Vec<String>,
    trusted_origins: Vec<(String, String, u16)>,
    pub(super) allow_private: bool,
}

impl Default for MediaPolicy {
    /// FAL's media hosts, live rules.
    fn default() -> Self {
        Self::new(DEFAULT_MEDIA_HOSTS.iter().copied(), false)
    }
}

impl MediaPolicy {
    /// A policy admitting `host_suffixes` (normalised: lowercase, no leading `*.` or `.`, no
    /// trailing dot; empty entries dropped). `allow_private` lifts the address and `https`
    /// rules, for simulated mode.
    pub fn new<S: AsRef<str>>(
        host_suffixes: impl IntoIterator<Item = S>,
        allow_private: bool,
    ) -> Self {
        let host_suffixes = host_suffixes
            .into_iter()
            .filter_map(|h| normalise_host(h.as_ref()))
            .collect();
        Self {
            host_suffixes,
            trusted_origins: Vec::new(),
            allow_private,
        }
    }

    /// Live rules for `hosts`, or FAL's media hosts when `hosts` is empty.
    pub fn live(hosts: &[String]) -> Self {
        if hosts.is_empty() {
            Self::default()
        } else {
            Self::new(hosts, false)
        }
    }

    /// Simulated-mode rules: `hosts` (or FAL's) at any address, plus the origins trusted later.
    pub fn simulated(hosts: &[String]) -> Self {
        let mut policy = Self::live(hosts);
        policy.allow_private = true;
        policy
    }

    /// Also admits everything on `base_url`'s exact origin (an API we call anyway).
    pub fn trusting(mut self, base_url: &str) -> Self {
        if let Some(origin) = Url::parse(base_url).ok().as_ref().and_then(origin_of) {
            if !self.trusted_origins.contains(&origin) {
                self.trusted_origins.push(origin);
            }
        }
        self
    }

    pub fn host_suffixes(&self) -> &[String] {
        &self.host_suffixes
    }

    pub fn allows_private_addresses(&self) -> bool {
        self.allow_private
    }

    /// Trusted origins' host names (not literal addresses), which the resolver lets through.
    pub(super) fn trusted_hostnames(&self) -> Vec<String> {
        self.trusted_origins
            .iter()
            .map(|(_, host, _)| host.clone())
            .filter(|host| host.parse::<IpAddr>().is_err())
            .collect()
    }

    fn is_trusted_origin(&self, url: &Url) -> bool {
        origin_of(url).is_some_and(|origin| self.trusted_origins.contains(&origin))
    }

    /// The checks that need no network: scheme, credentials, host on the list, and a literal
    /// address's kind. Returns the parsed URL to fetch.
    pub fn check(&self, url: &str) -> Result<Url, FalError> {
        let refuse = |reason: String| FalError::UnexpectedMediaUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|_| refuse("not a URL".to_owned()))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(refuse(format!("scheme {:?}", parsed.scheme())));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse("the URL carries credentials".to_owned()));
        }
        if self.is_trusted_origin(&parsed) {
            return Ok(parsed);
        }
        let Some(host) = host_of(&parsed) else {
            return Err(refuse("no host".to_owned()));
        };
        let listed = self.host_suffixes.iter().any(|suffix| {
            host == *suffix
                || (host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
        });
        if !listed {
            return Err(refuse(format!("host {host} is not a FAL media host")));
        }
        if !self.allow_private {
            if parsed.scheme() != "https" {
                return Err(refuse("not https".to_owned()));
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                if !is_public_ip(ip) {
                    return Err(refuse(format!("{ip} is not a public address")));
                }
            }
        }
        Ok(parsed)
    }

    /// In live mode, resolves `url`'s host and refuses it if any address is not public. A
    /// failed lookup passes: the fetch resolves again (through a resolver with the same rule).
    pub async fn check_resolved(&self, url: &Url) -> Result<(), FalError> {
        if self.allow_private || self.is_trusted_origin(url) {
            return Ok(());
        }
        let Some(host) = host_of(url).filter(|h| h.parse::<IpAddr>().is_err()) else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => return Ok(()),
        };
        match addrs.into_iter().find(|ip| !is_public_ip(*ip)) {
            Some(ip) => Err(FalError::UnexpectedMediaUrl {
                url: url.to_string(),
                reason: format!("{host} resolves to {ip}, not a public address"),
            }),
            None => Ok(()),
        }
    }
}

fn normalise_host(host: &str) -> Option<String> {
    let host = host
        .trim()
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The URL's host, lowercase, without a trailing dot or an IPv6 address's brackets.
fn host_of(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    normalise_host(host)
}

fn origin_of(url: &Url) -> Option<(String, String, u16)> {
    Some((
        url.scheme().to_owned(),
        host_of(url)?,
        url.port_or_known_default()?,
    ))
}

/// Where a redirect answer points, resolved against the URL that answered.
pub(super) fn redirect_target(from: &Url, headers: &HeaderMap) -> Option<Url> {
    let location = headers.get(LOCATION)?.to_str().ok()?;
    from.join(location.trim()).ok()
}

/// Whether `ip` is an ordinary public unicast address: not loopback, private (10/8,
/// 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), shared (100.64/10),
/// unspecified, broadcast, multicast, documentation, benchmarking or reserved; IPv4 addresses
/// carried in IPv6 (mapped, compatible, NAT64, 6to4) are judged as IPv4.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    match segments {
        // Unspecified, loopback and the deprecated IPv4-compatible block.
        [0, 0, 0, 0, 0, 0, hi, lo] => hi != 0 && is_public_v4(embedded_v4(hi, lo)),
        // NAT64 (64:ff9b::/96) carries an IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded_v4(hi, lo)),
        // 6to4 (2002::/16) carries one in its next 32 bits.
        [0x2002, hi, lo, ..] => is_public_v4(embedded_v4(hi, lo)),
        // Teredo (2001::/32), documentation (2001:db8::/32), discard-only (100::/64).
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] | [0x100, 0, 0, 0, ..] => false,
        [first, ..] => {
            !((first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (first & 0xff00) == 0xff00) // multicast
        }
    }
}

/// Resolves names for result-file fetches in live mode, refusing any name with a non-public
/// address: the connection is made only to what was checked (no re-resolution in between).
pub(super) struct PublicOnlyResolver {
    pub(super) exempt: Vec<String>,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let exempt = self.exempt.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !exempt {
                if let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip())) {
                    let refused: Box<dyn std::error::Error + Send + Sync> =
                        Box::new(NonPublicAddress {
                            host: host.clone(),
                            ip: bad.ip(),
                        });
                    return Err(refused);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[test]
    fn media_hosts_match_on_a_dot_boundary() {
        let live = MediaPolicy::default();
        for ok in [
            "https://v3.fal.media/files/a/b.png",
            "https://v3b.fal.media/files/b/x.png",
            "https://fal.media/files/x.jpg",
            "https://V3.FAL.MEDIA./files/x.jpg",
        ] {
            live.check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://evilfal.media/x.png",
            "https://fal.media.evil.example/x.png",
            "http://v3.fal.media/x.png",
            "https://user:pw@v3.fal.media/x.png",
            "ftp://v3.fal.media/x.png",
            "https://127.0.0.1/x.png",
            "not a url",
        ] {
            assert!(
                matches!(live.check(bad), Err(FalError::UnexpectedMediaUrl { .. })),
                "{bad} passed"
            );
        }
        // Listed literal addresses are still refused in live mode, and admitted in simulated.
        let listed = ["10.0.0.7".to_owned(), "*.Example.org".to_owned()];
        assert!(MediaPolicy::live(&listed)
            .check("https://10.0.0.7/x")
            .is_err());
        MediaPolicy::live(&listed)
            .check("https://cdn.example.org/x")
            .unwrap();
        MediaPolicy::simulated(&listed)
            .check("http://10.0.0.7/x")
            .unwrap();
        // A configured API's exact origin is trusted; another port on that host is not.
        let trusted = MediaPolicy::default().trusting("http://127.0.0.1:8090/queue");
        trusted.check("http://127.0.0.1:8090/files/x.png").unwrap();
        assert!(trusted.check("http://127.0.0.1:8091/files/x.png").is_err());
    }
}
