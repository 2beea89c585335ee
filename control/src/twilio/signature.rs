//! `X-Twilio-Signature` validation (protocols.md §1.7): base64(HMAC-SHA1(auth token,
//! URL + every POST parameter name and value, sorted by name)), compared in constant
//! time. Like Twilio's own libraries, the URL is tried with and without the scheme's
//! default port, because proxies add or strip it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

fn sign(url: &str, params: &[(String, String)], auth_token: &str) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Twilio sorts by name (JS `.sort()`, UTF-16 code units); for the ASCII names Twilio
    // sends, byte order is the same. Repeated names keep their values sorted too.
    sorted.sort();
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

/// The signature Twilio would send for `url` and `params`.
pub fn compute(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    B64.encode(sign(url, params, auth_token))
}

/// `url` with the default port added if absent, and without it if present.
fn port_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    if let Ok(mut parsed) = url::Url::parse(url) {
        let default = match parsed.scheme() {
            "https" | "wss" => 443,
            "http" | "ws" => 80,
            _ => return out,
        };
        // `url` normalises an explicit default port away, so build the ported form by hand.
        let host = parsed.host_str().unwrap_or_default().to_owned();
        if parsed.port().is_none() {
            let with_port = url.replacen(&format!("://{host}"), &format!("://{host}:{default}"), 1);
            if with_port != url {
                out.push(with_port);
            }
        } else {
            let _ = parsed.set_port(None);
            out.push(parsed.to_string());
        }
        let stripped = url.replacen(&format!("://{host}:{default}"), &format!("://{host}"), 1);
        if !out.contains(&stripped) {
            out.push(stripped);
        }
    }
    out
}

/// True if `header` is a valid signature of this request under `auth_token`.
pub fn is_valid(url: &str, params: &[(String, String)], auth_token: &str, header: &str) -> bool {
    let Ok(given) = B64.decode(header.trim()) else {
        return false;
    };
    port_variants(url)
        .iter()
        .any(|u| bool::from(sign(u, params, auth_token).ct_eq(&given)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
    }

    #[test]
    fn matches_the_published_test_vector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(url, &params(), "12345"),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(is_valid(
            url,
            &params(),
            "12345",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn order_of_parameters_does_not_matter_but_every_byte_does() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let mut reversed = params();
        reversed.reverse();
        assert!(is_valid(
            url,
            &reversed,
            "12345",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let mut tampered = params();
        tampered[4].1 = "+18005551213".into();
        assert!(!is_valid(
            url,
            &tampered,
            "12345",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!is_valid(
            url,
            &params(),
            "54321",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!is_valid(url, &params(), "12345", "not base64 !!"));
        assert!(!is_valid(url, &params(), "12345", ""));
    }

    #[test]
    fn default_ports_are_accepted_either_way() {
        let p = params();
        let signed_with_port = compute(
            "https://gw.example.com:443/webhooks/calls/inbound",
            &p,
            "tok",
        );
        assert!(is_valid(
            "https://gw.example.com/webhooks/calls/inbound",
            &p,
            "tok",
            &signed_with_port
        ));
        let signed_without = compute("https://gw.example.com/webhooks/calls/inbound", &p, "tok");
        assert!(is_valid(
            "https://gw.example.com:443/webhooks/calls/inbound",
            &p,
            "tok",
            &signed_without
        ));
        // A non-default port is part of the URL and must match.
        let other_port = compute(
            "https://gw.example.com:8443/webhooks/calls/inbound",
            &p,
            "tok",
        );
        assert!(!is_valid(
            "https://gw.example.com/webhooks/calls/inbound",
            &p,
            "tok",
            &other_port
        ));
    }
}
