//! An agent's call settings: seed `call-feature-schema-changes.md` §9 ("settings.call").
//!
//! Stored as JSON inside the agent's config; the control plane validates them with
//! [`CallSettings::validate`], the media plane reads the limits at call start.

use serde::{Deserialize, Serialize};

/// Voice modulation (§9 "voiceSettings").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VoiceSettings {
    /// -1.0 ..= 1.0
    pub pitch: f64,
    /// 0.5 ..= 2.0
    pub speed: f64,
    /// 0.0 ..= 1.0 (ElevenLabs only)
    pub stability: f64,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        Self {
            pitch: 0.0,
            speed: 1.0,
            stability: 0.5,
        }
    }
}

/// Where the widget's call button sits on the host page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ButtonPosition {
    BottomRight,
    BottomLeft,
    TopRight,
    TopLeft,
}

/// The call settings of one agent, with the seed's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CallSettings {
    pub voice_id: String,
    pub voice_provider: String,
    pub voice_settings: VoiceSettings,
    pub call_greeting: String,
    /// Comma-separated phrases; matched case-insensitively in the caller's transcript.
    pub end_call_phrase: String,
    /// Seconds of caller silence before "are you still there?" (30..=300).
    pub silence_timeout: u32,
    /// Hard cap on call length in seconds (60..=3600).
    pub max_call_duration: u32,
    pub recording_enabled: bool,
    pub transcription_enabled: bool,
    pub interruption_enabled: bool,
    pub call_button_text: String,
    pub call_button_color: String,
    pub call_button_position: ButtonPosition,
    /// 0.0 ..= 1.0
    pub vad_threshold: f64,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            voice_id: "alloy".into(),
            voice_provider: "openai".into(),
            voice_settings: VoiceSettings::default(),
            call_greeting: "Hi, I'm your AI assistant. How can I help you today?".into(),
            end_call_phrase: "goodbye".into(),
            silence_timeout: 180,
            max_call_duration: 600,
            recording_enabled: false,
            transcription_enabled: true,
            interruption_enabled: true,
            call_button_text: "Call Us".into(),
            call_button_color: "#22C55E".into(),
            call_button_position: ButtonPosition::BottomRight,
            vad_threshold: 0.5,
            echo_cancellation: true,
            noise_suppression: true,
        }
    }
}

/// One field that failed validation, named by its JSON path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub const VOICE_PROVIDERS: &[&str] = &["openai", "google", "elevenlabs", "deepgram", "echo"];

impl CallSettings {
    /// The seed's validation rules (§9 "Validation Rules"). Returns every failure, not the first.
    /// `prefix` names the JSON path the settings live under (e.g. `config.call`).
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                errors.push(FieldError::new(format!("{prefix}.{field}"), message));
            }
        };
        check(
            !self.voice_id.trim().is_empty(),
            "voiceId",
            "must not be empty",
        );
        check(
            VOICE_PROVIDERS.contains(&self.voice_provider.as_str()),
            "voiceProvider",
            "must be one of openai, google, elevenlabs, deepgram, echo",
        );
        check(
            self.call_greeting.chars().count() <= 500,
            "callGreeting",
            "must be at most 500 characters",
        );
        check(
            (30..=300).contains(&self.silence_timeout),
            "silenceTimeout",
            "must be between 30 and 300 seconds",
        );
        check(
            (60..=3600).contains(&self.max_call_duration),
            "maxCallDuration",
            "must be between 60 and 3600 seconds",
        );
        check(
            self.call_button_text.chars().count() <= 50,
            "callButtonText",
            "must be at most 50 characters",
        );
        check(
            is_hex_colour(&self.call_button_color),
            "callButtonColor",
            "must be a hex colour like #22C55E",
        );
        check(
            (0.0..=1.0).contains(&self.vad_threshold),
            "vadThreshold",
            "must be between 0.0 and 1.0",
        );
        check(
            (-1.0..=1.0).contains(&self.voice_settings.pitch),
            "voiceSettings.pitch",
            "must be between -1.0 and 1.0",
        );
        check(
            (0.5..=2.0).contains(&self.voice_settings.speed),
            "voiceSettings.speed",
            "must be between 0.5 and 2.0",
        );
        check(
            (0.0..=1.0).contains(&self.voice_settings.stability),
            "voiceSettings.stability",
            "must be between 0.0 and 1.0",
        );
        errors
    }

    /// The end-call phrases, lower-cased and trimmed, empty ones dropped.
    pub fn end_call_phrases(&self) -> Vec<String> {
        self.end_call_phrase
            .split(',')
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .collect()
    }
}

fn is_hex_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_and_valid() {
        let s = CallSettings::default();
        assert_eq!(s.silence_timeout, 180);
        assert_eq!(s.max_call_duration, 600);
        assert!(s.validate("call").is_empty());
    }

    #[test]
    fn missing_fields_take_defaults_and_camel_case_is_the_wire_shape() {
        let s: CallSettings =
            serde_json::from_str(r#"{"silenceTimeout":45,"callButtonPosition":"top-left"}"#)
                .unwrap();
        assert_eq!(s.silence_timeout, 45);
        assert_eq!(s.call_button_position, ButtonPosition::TopLeft);
        assert_eq!(s.max_call_duration, 600);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["vadThreshold"], 0.5);
    }

    #[test]
    fn every_out_of_range_field_is_reported() {
        let s = CallSettings {
            silence_timeout: 10,
            max_call_duration: 4000,
            call_button_color: "green".into(),
            vad_threshold: 1.5,
            call_greeting: "x".repeat(501),
            voice_settings: VoiceSettings {
                pitch: 2.0,
                speed: 0.1,
                stability: -0.1,
            },
            ..CallSettings::default()
        };
        let fields: Vec<String> = s.validate("call").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "call.callGreeting",
                "call.silenceTimeout",
                "call.maxCallDuration",
                "call.callButtonColor",
                "call.vadThreshold",
                "call.voiceSettings.pitch",
                "call.voiceSettings.speed",
                "call.voiceSettings.stability",
            ]
        );
    }

    #[test]
    fn end_call_phrases_split_on_commas() {
        let s = CallSettings {
            end_call_phrase: "Goodbye, bye ,,end call".into(),
            ..CallSettings::default()
        };
        assert_eq!(s.end_call_phrases(), ["goodbye", "bye", "end call"]);
    }
}
