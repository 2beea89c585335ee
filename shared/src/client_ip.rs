//! The client's address behind a reverse proxy, for per-address limits and audit logs.
//!
//! Proxies (nginx's `$proxy_add_x_forwarded_for`, cloud load balancers) *append* the
//! address they saw to `X-Forwarded-For`, so everything left of the last entry came from
//! the client and can be anything. Only the right-most entry, written by the proxy we
//! trust, is evidence; a missing or malformed one falls back to the socket's peer.

use std::net::{IpAddr, SocketAddr};

/// The address the trusted proxy appended: the right-most `X-Forwarded-For` entry, as a
/// bare IP or `ip:port` / `[v6]:port`. `None` if it is empty or not an address.
pub fn forwarded_client(header: &str) -> Option<IpAddr> {
    let last = header.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The address to key limits on: the proxy-appended one when `trust_forwarded_for` (only
/// behind a proxy you run) and usable, else the TCP peer, else `"unknown"`.
/// `forwarded_for` is the last `X-Forwarded-For` header line (proxies append lines too).
pub fn client_ip(
    forwarded_for: Option<&str>,
    trust_forwarded_for: bool,
    peer: Option<IpAddr>,
) -> String {
    let forwarded = forwarded_for
        .filter(|_| trust_forwarded_for)
        .and_then(forwarded_client);
    forwarded
        .or(peer)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)));

    #[test]
    fn the_right_most_entry_is_the_client_the_proxy_saw() {
        assert_eq!(
            client_ip(Some("1.1.1.1, 203.0.113.9"), true, PEER),
            "203.0.113.9"
        );
        assert_eq!(client_ip(Some("203.0.113.9"), true, PEER), "203.0.113.9");
        assert_eq!(
            client_ip(Some("spoofed, 2001:db8::1"), true, PEER),
            "2001:db8::1"
        );
        assert_eq!(
            client_ip(Some("1.1.1.1,[2001:db8::1]:443"), true, PEER),
            "2001:db8::1"
        );
        assert_eq!(
            client_ip(Some("1.1.1.1, 203.0.113.9:5060"), true, PEER),
            "203.0.113.9"
        );
    }

    #[test]
    fn garbage_falls_back_to_the_socket_address() {
        for header in [
            "",
            " ",
            "garbage",
            "1.1.1.1, not-an-ip",
            "203.0.113.9,",
            "unknown",
        ] {
            assert_eq!(
                client_ip(Some(header), true, PEER),
                "10.0.0.7",
                "{header:?}"
            );
        }
        assert_eq!(client_ip(None, true, PEER), "10.0.0.7");
        assert_eq!(client_ip(Some("garbage"), true, None), "unknown");
    }

    #[test]
    fn the_header_is_ignored_unless_trusted() {
        assert_eq!(client_ip(Some("203.0.113.9"), false, PEER), "10.0.0.7");
    }
}
