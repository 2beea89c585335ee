//! The TwiML the gateway answers with: connect the call to our Media Streams socket, or
//! say why not and hang up. Every value is XML-escaped.

const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// `<Connect><Stream>` (bidirectional) to `stream_url` with one-time `token` as a
/// `<Parameter>` (the URL must not carry a query string).
pub fn connect_stream(stream_url: &str, token: &str) -> String {
    format!(
        "{HEAD}<Response><Connect><Stream url=\"{}\"><Parameter name=\"token\" value=\"{}\"/></Stream></Connect></Response>",
        escape(stream_url),
        escape(token)
    )
}

/// Says `message` and hangs up: the polite refusal.
pub fn say_and_hang_up(message: &str) -> String {
    format!(
        "{HEAD}<Response><Say>{}</Say><Hangup/></Response>",
        escape(message)
    )
}

/// Says `message` and hangs up, naming the refusal's `error_code` in an XML comment, for
/// refusals that leave no call row to record it (Twilio's request inspector shows it).
pub fn say_and_hang_up_coded(message: &str, error_code: &'static str) -> String {
    debug_assert!(!error_code.contains("--"), "an XML comment cannot hold --");
    format!(
        "{HEAD}<Response><!-- error_code={error_code} --><Say>{}</Say><Hangup/></Response>",
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_carries_the_token_as_a_parameter_and_escapes() {
        let x = connect_stream("wss://gw.example.com/media/twilio", "a&b\"c");
        assert!(x.contains(r#"<Stream url="wss://gw.example.com/media/twilio">"#));
        assert!(x.contains(r#"<Parameter name="token" value="a&amp;b&quot;c"/>"#));
        assert!(x.starts_with(HEAD));
    }

    #[test]
    fn refusal_says_then_hangs_up() {
        assert_eq!(
            say_and_hang_up("Sorry <now>"),
            format!("{HEAD}<Response><Say>Sorry &lt;now&gt;</Say><Hangup/></Response>")
        );
    }
}
