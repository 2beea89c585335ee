//! STUN and TURN servers for browser calls, in the shape of WebRTC's `RTCIceServer`: the
//! widget configuration hands them to the browser and the media plane's peer uses the
//! same list (`VOCALIZED_ICE_SERVERS`).

use serde::{Deserialize, Serialize};

/// One STUN or TURN server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Parses `VOCALIZED_ICE_SERVERS`: a JSON array of `RTCIceServer`s, each with `urls` as a
/// string or a list, and only `stun:`, `stuns:`, `turn:` or `turns:` URLs.
pub fn parse_ice_servers(text: &str) -> Result<Vec<IceServer>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    #[derive(Deserialize)]
    struct Raw {
        urls: Urls,
        username: Option<String>,
        credential: Option<String>,
    }
    let raw: Vec<Raw> = serde_json::from_str(text)
        .map_err(|e| format!("must be a JSON array of {{\"urls\": ...}} objects: {e}"))?;
    raw.into_iter()
        .map(|r| {
            let urls = match r.urls {
                Urls::One(u) => vec![u],
                Urls::Many(u) => u,
            };
            if urls.is_empty() {
                return Err("an ICE server needs at least one URL".to_owned());
            }
            if let Some(bad) = urls.iter().find(|u| {
                !["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|scheme| u.starts_with(scheme))
            }) {
                return Err(format!(
                    "{bad:?} is not a stun:, stuns:, turn: or turns: URL"
                ));
            }
            Ok(IceServer {
                urls,
                username: r.username,
                credential: r.credential,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_parse_from_the_browser_shape() {
        let got = parse_ice_servers(
            r#"[{"urls":"stun:stun.example.com:3478"},
                {"urls":["turn:t.example.com:3478?transport=udp","turns:t.example.com:5349"],
                 "username":"u","credential":"c"}]"#,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].urls, ["stun:stun.example.com:3478"]);
        assert_eq!(got[1].username.as_deref(), Some("u"));
        assert_eq!(parse_ice_servers("[]").unwrap(), vec![]);
        for bad in [
            "",
            "{}",
            r#"[{"urls":[]}]"#,
            r#"[{"urls":"http://x"}]"#,
            r#"[{"username":"u"}]"#,
        ] {
            assert!(parse_ice_servers(bad).is_err(), "{bad}");
        }
    }
}
