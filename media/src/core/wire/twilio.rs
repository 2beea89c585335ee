//! Twilio Media Streams messages (protocols.md §1.2 inbound, §1.3 outbound).
//!
//! Inbound frames parse into [`Inbound`], tagged by their `event` field. Twilio sends
//! `sequenceNumber`, `chunk` and `timestamp` as JSON strings; they are parsed to integers
//! here so nothing downstream handles numeric strings. An event this module does not
//! know is [`Inbound::Unknown`], not an error: Twilio may add events and a call must go on.
//!
//! Outbound frames are written by hand into a caller-owned `String`
//! ([`Outbound::write_json`]) because the media path sends one every 20 ms and must not
//! allocate: a serde `Serialize` would need the payload's base64 as an owned string first.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::fmt::Write as _;

/// A message Twilio sends on the stream WebSocket.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound {
    /// Always the first frame; carries no stream sid.
    Connected {
        #[serde(default)]
        protocol: String,
        #[serde(default)]
        version: String,
    },
    Start {
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_num")]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid")]
        stream_sid: String,
        start: StartInfo,
    },
    Media {
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_num")]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default)]
        stream_sid: String,
        media: MediaInfo,
    },
    /// The echo of a mark we sent: its audio finished playing, or a `clear` dropped it.
    Mark {
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_num")]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default)]
        stream_sid: String,
        mark: MarkInfo,
    },
    Dtmf {
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_num")]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default)]
        stream_sid: String,
        dtmf: DtmfInfo,
    },
    Stop {
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_num")]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default)]
        stream_sid: String,
        #[serde(default)]
        stop: StopInfo,
    },
    /// Any other `event`: ignored and counted by the session.
    #[serde(other)]
    Unknown,
}

/// The `start` object: who the call is and the parameters our TwiML passed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StartInfo {
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
    pub tracks: Vec<String>,
    /// `<Parameter>`s from the TwiML, e.g. the one-time stream token.
    pub custom_parameters: HashMap<String, String>,
    pub media_format: MediaFormat,
}

/// Always µ-law 8 kHz mono on Twilio today (protocols.md §1.2), but read, not assumed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
}

impl Default for MediaFormat {
    fn default() -> Self {
        Self {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8_000,
            channels: 1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MediaInfo {
    pub track: String,
    #[serde(deserialize_with = "opt_num")]
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started.
    #[serde(deserialize_with = "opt_num")]
    pub timestamp: Option<u64>,
    /// Base64 of raw µ-law bytes.
    pub payload: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct MarkInfo {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DtmfInfo {
    #[serde(default)]
    pub track: String,
    pub digit: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StopInfo {
    pub account_sid: String,
    pub call_sid: String,
}

impl Inbound {
    /// Parses one text frame. Malformed JSON or a known event with missing fields is an
    /// error the caller counts; an unknown event is `Ok(Inbound::Unknown)`.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        // serde also reads a tagged enum from a JSON array (`["media", …]`, fields by
        // position); Twilio only sends objects, so anything else is not a message.
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return Err(serde::de::Error::custom(
                "a Twilio message is a JSON object",
            ));
        }
        serde_json::from_str(text)
    }
}

/// Twilio writes numbers as strings ("sequenceNumber":"3"); accept both forms so a
/// future switch to JSON numbers does not break calls.
fn opt_num<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        Num(u64),
        Str(String),
    }
    match Option::<NumOrString>::deserialize(deserializer)? {
        None => Ok(None),
        Some(NumOrString::Num(n)) => Ok(Some(n)),
        Some(NumOrString::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("not an integer: {s:?}"))),
    }
}

/// A message we send to Twilio. Borrowed so the session can hand one out per frame
/// without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outbound<'a> {
    /// Raw µ-law 8 kHz bytes, no header; base64-encoded on the wire.
    Media {
        stream_sid: &'a str,
        payload: &'a [u8],
    },
    /// Twilio echoes the mark back once the audio queued before it has played (or a
    /// `clear` dropped it).
    Mark { stream_sid: &'a str, name: &'a str },
    /// Empties Twilio's playback buffer (barge-in).
    Clear { stream_sid: &'a str },
}

impl Outbound<'_> {
    /// Appends this message's JSON text to `out`. Reusing `out` across frames makes this
    /// allocation-free once it has grown to a frame's size.
    pub fn write_json(&self, out: &mut String) {
        match *self {
            Outbound::Media {
                stream_sid,
                payload,
            } => {
                out.push_str(r#"{"event":"media","streamSid":"#);
                write_json_str(stream_sid, out);
                out.push_str(r#","media":{"payload":""#);
                // Base64's alphabet needs no JSON escaping.
                BASE64.encode_string(payload, out);
                out.push_str(r#""}}"#);
            }
            Outbound::Mark { stream_sid, name } => {
                out.push_str(r#"{"event":"mark","streamSid":"#);
                write_json_str(stream_sid, out);
                out.push_str(r#","mark":{"name":"#);
                write_json_str(name, out);
                out.push_str("}}");
            }
            Outbound::Clear { stream_sid } => {
                out.push_str(r#"{"event":"clear","streamSid":"#);
                write_json_str(stream_sid, out);
                out.push('}');
            }
        }
    }

    /// The JSON text as a new string (tests, logs; the media path uses `write_json`).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }
}

/// Writes `s` as a quoted JSON string. Mark names embed provider item ids, which we do
/// not control, so quotes and control characters must be escaped.
fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn start_parses_string_numbers_and_custom_parameters() {
        let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1",
            "start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],
            "customParameters":{"token":"t0k"},
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let Inbound::Start {
            sequence_number,
            stream_sid,
            start,
        } = Inbound::parse(text).unwrap()
        else {
            panic!("not a start");
        };
        assert_eq!(sequence_number, Some(1));
        assert_eq!(stream_sid, "MZ1");
        assert_eq!(start.call_sid, "CA1");
        assert_eq!(start.custom_parameters["token"], "t0k");
        assert_eq!(start.media_format.sample_rate, 8000);
    }

    #[test]
    fn media_numbers_are_parsed_from_strings() {
        let text = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1",
            "media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"/////w=="}}"#;
        let Inbound::Media {
            sequence_number,
            media,
            ..
        } = Inbound::parse(text).unwrap()
        else {
            panic!("not media");
        };
        assert_eq!(sequence_number, Some(3));
        assert_eq!(media.chunk, Some(2));
        assert_eq!(media.timestamp, Some(5));
        assert_eq!(media.payload, "/////w==");
    }

    #[test]
    fn a_non_numeric_sequence_number_is_an_error_not_a_panic() {
        let text = r#"{"event":"media","sequenceNumber":"three","streamSid":"MZ1","media":{"payload":""}}"#;
        assert!(Inbound::parse(text).is_err());
    }

    #[test]
    fn connected_mark_dtmf_stop_parse() {
        assert!(matches!(
            Inbound::parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
            Ok(Inbound::Connected { .. })
        ));
        let mark = Inbound::parse(
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"item_abc:17"}}"#,
        )
        .unwrap();
        assert!(matches!(mark, Inbound::Mark { mark, .. } if mark.name == "item_abc:17"));
        let dtmf = Inbound::parse(
            r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#,
        )
        .unwrap();
        assert!(matches!(dtmf, Inbound::Dtmf { dtmf, .. } if dtmf.digit == "1"));
        let stop = Inbound::parse(
            r#"{"event":"stop","sequenceNumber":"6","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
        )
        .unwrap();
        assert!(matches!(stop, Inbound::Stop { stop, .. } if stop.call_sid == "CA1"));
    }

    #[test]
    fn unknown_events_are_a_variant_not_an_error() {
        assert_eq!(
            Inbound::parse(r#"{"event":"transcription","streamSid":"MZ1","x":1}"#).unwrap(),
            Inbound::Unknown
        );
        assert!(Inbound::parse(r#"{"noevent":1}"#).is_err());
        assert!(Inbound::parse("not json").is_err());
    }

    #[test]
    fn outbound_media_is_the_documented_shape_with_base64_payload() {
        let json = Outbound::Media {
            stream_sid: "MZ1",
            payload: &[0xFF, 0xFF, 0xFF, 0xFF],
        }
        .to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["event"], "media");
        assert_eq!(v["streamSid"], "MZ1");
        assert_eq!(v["media"]["payload"], "/////w==");
    }

    #[test]
    fn outbound_mark_names_are_escaped() {
        let json = Outbound::Mark {
            stream_sid: "MZ1",
            name: "it\"em\\\n\u{1}:3",
        }
        .to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["event"], "mark");
        assert_eq!(v["mark"]["name"], "it\"em\\\n\u{1}:3");
    }

    #[test]
    fn outbound_clear() {
        let v: Value =
            serde_json::from_str(&Outbound::Clear { stream_sid: "MZ1" }.to_json()).unwrap();
        assert_eq!(v, serde_json::json!({"event":"clear","streamSid":"MZ1"}));
    }
}
