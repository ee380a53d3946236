//! Where a webhook may send. Loopback, private, link-local, multicast, unspecified and other
//! special-purpose addresses are refused unless the operator allows private addresses; the
//! check runs when a webhook is configured and again, on the resolved addresses, at every
//! delivery (the connection goes to an address that passed, so DNS rebinding cannot slip one in).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24; benchmarking, 198.18.0.0/15.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Documentation 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // IPv4-compatible and NAT64 forms carry an IPv4 address that was checked as such.
        || (ip.segments()[..6] == [0, 0, 0, 0, 0, 0]))
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Parses a webhook URL: `http` or `https`, with a host, no credentials.
pub fn parse_url(text: &str) -> Result<Url, Refused> {
    let url = Url::parse(text.trim()).map_err(|err| Refused(format!("not a valid URL ({err})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused("must be an http or https URL".to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Refused("must name a host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused(
            "must not carry credentials (use headers for a receiver's token)".to_owned(),
        ));
    }
    if text.len() > 2048 {
        return Err(Refused("must be at most 2048 characters".to_owned()));
    }
    Ok(url)
}

/// The addresses `url` resolves to, every one of them allowed; refused if any is not (a name
/// with one private address among public ones is refused: it is a way in).
pub async fn resolve(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, Refused> {
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| Refused(format!("the host {name} does not resolve")))?
            .collect(),
        None => return Err(Refused("must name a host".to_owned())),
    };
    if addrs.is_empty() {
        return Err(Refused("the host has no address".to_owned()));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(Refused(format!(
            "resolves to {}, a loopback, private, link-local or multicast address (the operator \
             allows those with WUTS_WEBHOOK_ALLOW_PRIVATE=true)",
            bad.ip()
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("ftp://example.com/").is_err());
        assert!(parse_url("https://user:pw@example.com/").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("file:///etc/passwd").is_err());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]:9/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://localhost:9/",
        ] {
            let parsed = parse_url(url).expect("url");
            assert!(resolve(&parsed, false).await.is_err(), "{url}");
            assert!(resolve(&parsed, true).await.is_ok(), "{url} when allowed");
        }
    }
}
