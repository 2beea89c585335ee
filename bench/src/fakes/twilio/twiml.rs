//! Just enough TwiML reading for a fake Twilio: the `<Stream url>`, its `<Parameter>`s, and
//! whether the gateway said something and hung up instead (protocols.md §1.1).

/// What a voice webhook answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Twiml {
    /// `<Connect><Stream url="…">`, unescaped.
    pub stream_url: Option<String>,
    /// `<Connect>` (bidirectional) rather than `<Start>` (fork only).
    pub bidirectional: bool,
    /// `<Parameter name value>` pairs inside the stream, in order.
    pub parameters: Vec<(String, String)>,
    /// Text of every `<Say>`.
    pub says: Vec<String>,
    pub hangup: bool,
}

impl Twiml {
    /// The value of `<Parameter name="{name}">`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads the tags it knows and ignores the rest; malformed input gives an empty result
    /// rather than an error, and the caller's assertions decide.
    pub fn parse(xml: &str) -> Self {
        let mut out = Twiml::default();
        let mut rest = xml;
        let mut in_connect = false;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let tag = &rest[open + 1..open + close];
            let after = &rest[open + close + 1..];
            // `</Connect>` is "/Connect"; `<Hangup/>` is "Hangup".
            let closing = tag.starts_with('/');
            let word: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let name = if closing { format!("/{word}") } else { word };
            match name.as_str() {
                "Connect" => in_connect = true,
                "/Connect" => in_connect = false,
                "Stream" => {
                    out.stream_url = attribute(tag, "url");
                    out.bidirectional = in_connect;
                }
                "Parameter" => {
                    if let (Some(n), Some(v)) = (attribute(tag, "name"), attribute(tag, "value")) {
                        out.parameters.push((n, v));
                    }
                }
                "Say" => {
                    let end = after.find("</Say>").unwrap_or(after.len());
                    out.says.push(unescape(after[..end].trim()));
                }
                "Hangup" => out.hangup = true,
                _ => {}
            }
            rest = after;
        }
        out
    }
}

/// `name="value"` or `name='value'` inside a start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut search = tag;
    while let Some(at) = search.find(name) {
        let preceded_by_space = at > 0 && search.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = search[at + name.len()..].trim_start();
        if preceded_by_space && let Some(rest) = rest.strip_prefix('=') {
            let rest = rest.trim_start();
            let quote = rest.chars().next()?;
            if quote == '"' || quote == '\'' {
                let value = &rest[1..];
                let end = value.find(quote)?;
                return Some(unescape(&value[..end]));
            }
        }
        search = &search[at + name.len()..];
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stream_and_its_parameters() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Connect>
    <Stream url="wss://gw.example.com/media/twilio" statusCallback="https://gw.example.com/s">
      <Parameter name="token" value="a&amp;b&quot;c"/>
      <Parameter name='tenant' value='acme' />
    </Stream>
  </Connect>
</Response>"#;
        let t = Twiml::parse(xml);
        assert_eq!(
            t.stream_url.as_deref(),
            Some("wss://gw.example.com/media/twilio")
        );
        assert!(t.bidirectional);
        assert_eq!(t.parameter("token"), Some("a&b\"c"));
        assert_eq!(t.parameter("tenant"), Some("acme"));
        assert!(!t.hangup);
    }

    #[test]
    fn reads_a_refusal_and_survives_garbage() {
        let t = Twiml::parse("<Response><Say>Sorry &lt;now&gt;</Say><Hangup/></Response>");
        assert_eq!(t.says, vec!["Sorry <now>".to_string()]);
        assert!(t.hangup);
        assert_eq!(t.stream_url, None);
        assert_eq!(Twiml::parse("<<<>>>< Stream url=").stream_url, None);
        assert_eq!(Twiml::parse(""), Twiml::default());
        // statusCallback's "url" substring must not be mistaken for the url attribute.
        let t = Twiml::parse(r#"<Start><Stream statusCallbackurl="x" url="wss://a/b"/></Start>"#);
        assert_eq!(t.stream_url.as_deref(), Some("wss://a/b"));
        assert!(!t.bidirectional);
    }
}
