//! The SSRF guard: outbound calls go to public addresses only, unless the configuration allows
//! private ones (a data service on the controller's own network; the tests' loopback receivers).
//!
//! A URL is checked when it is stored (syntax, scheme, IP literals, `localhost`) and again for
//! every address its host resolves to at the moment of the call, through the HTTP client's
//! resolver — so that a name that later resolves to an internal address is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::Args;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which outbound targets are allowed.
#[derive(Debug, Clone, Default, Args)]
pub struct GuardSettings {
    /// Allow outbound calls (HTTP data services, notifications) to private, loopback and
    /// link-local addresses. Off by default: a client-supplied callback URL must not reach the
    /// internal network.
    #[arg(long, env = "GDPRD_OUTBOUND_ALLOW_PRIVATE")]
    pub outbound_allow_private: bool,

    /// Allow plain `http://` outbound URLs (otherwise `https://` only).
    #[arg(long, env = "GDPRD_OUTBOUND_ALLOW_HTTP")]
    pub outbound_allow_http: bool,
}

/// Why a URL is refused. Never carries more of the URL than its host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid absolute URL: {0}")]
    Syntax(String),
    #[error("the scheme must be https{}", if *.allow_http { " or http" } else { "" })]
    Scheme { allow_http: bool },
    #[error("URLs with a user name or password are not accepted; put credentials in the secret")]
    Credentials,
    #[error(
        "{host} is a {kind} address; outbound calls go to public addresses only \
         (GDPRD_OUTBOUND_ALLOW_PRIVATE allows others)"
    )]
    Forbidden { host: String, kind: &'static str },
    #[error("{0} resolves to no address")]
    Unresolved(String),
}

impl GuardSettings {
    pub fn check(&self, url: &str) -> Result<Url, UrlError> {
        let parsed = Url::parse(url.trim()).map_err(|e| UrlError::Syntax(e.to_string()))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.outbound_allow_http => {}
            _ => {
                return Err(UrlError::Scheme {
                    allow_http: self.outbound_allow_http,
                });
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let host = match parsed.host() {
            Some(host) => host,
            None => return Err(UrlError::Syntax("the URL names no host".into())),
        };
        if !self.outbound_allow_private {
            let refused = |kind| UrlError::Forbidden {
                host: host.to_string(),
                kind,
            };
            match host {
                url::Host::Ipv4(ip) => {
                    if let Some(kind) = forbidden(IpAddr::V4(ip)) {
                        return Err(refused(kind));
                    }
                }
                url::Host::Ipv6(ip) => {
                    if let Some(kind) = forbidden(IpAddr::V6(ip)) {
                        return Err(refused(kind));
                    }
                }
                url::Host::Domain(name) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    if name == "localhost" || name.ends_with(".localhost") {
                        return Err(refused("loopback"));
                    }
                }
            }
        }
        Ok(parsed)
    }
}

/// The kind of a non-public address, or `None` for a public one.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(ip),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_unicast_link_local() {
        Some("link-local")
    } else if ip.is_unique_local() {
        Some("private")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first == 0x64 && ip.segments()[1] == 0xff9b {
        // NAT64 embeds an IPv4 address, which could be an internal one.
        Some("NAT64")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

/// Resolves host names with the system resolver, then drops what the guard forbids; a name
/// with only forbidden addresses fails to resolve with the guard's reason.
pub struct GuardedResolver {
    settings: GuardSettings,
}

impl GuardedResolver {
    pub fn new(settings: GuardSettings) -> GuardedResolver {
        GuardedResolver { settings }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.settings.outbound_allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if found.is_empty() {
                return Err(Box::new(UrlError::Unresolved(host)) as _);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| {
                    if allow_private {
                        return true;
                    }
                    match forbidden(addr.ip()) {
                        Some(kind) => {
                            refused.get_or_insert(kind);
                            false
                        }
                        None => true,
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(kind)) => Err(Box::new(UrlError::Forbidden { host, kind }) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> GuardSettings {
        GuardSettings::default()
    }

    #[test]
    fn internal_literals_are_refused() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://localhost:8080/",
            "https://api.localhost/",
        ] {
            assert!(
                matches!(strict().check(url), Err(UrlError::Forbidden { .. })),
                "{url} should be refused"
            );
        }
    }

    #[test]
    fn public_https_is_accepted_and_http_only_when_allowed() {
        assert!(strict().check("https://93.184.215.14/hook").is_ok());
        assert!(strict().check("https://hooks.example.com/gdpr").is_ok());
        assert_eq!(
            strict().check("http://hooks.example.com/gdpr"),
            Err(UrlError::Scheme { allow_http: false })
        );
        let lax = GuardSettings {
            outbound_allow_private: true,
            outbound_allow_http: true,
        };
        assert!(lax.check("http://127.0.0.1:9/hook").is_ok());
        assert!(matches!(
            lax.check("ftp://example.com/"),
            Err(UrlError::Scheme { .. })
        ));
    }

    #[test]
    fn malformed_and_credentialed_urls_are_refused() {
        assert!(matches!(
            strict().check("not a url"),
            Err(UrlError::Syntax(_))
        ));
        assert!(matches!(
            strict().check("/relative"),
            Err(UrlError::Syntax(_))
        ));
        assert_eq!(
            strict().check("https://user:pw@example.com/"),
            Err(UrlError::Credentials)
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_at_call_time() {
        let resolver = GuardedResolver::new(strict());
        let name: Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("localhost resolved through the guard"),
        };
        assert!(err.contains("loopback"), "{err}");
    }
}
