//! Server messages in the exact shapes of protocols.md §3.4, and the checks the real
//! server makes on a `setup` (§3.2). Builders and checks only: the session decides when.

use serde_json::{Map, Value, json};

use super::Usage;

pub const OUTPUT_MIME: &str = "audio/pcm;rate=24000";

pub fn setup_complete(session_id: &str) -> Value {
    json!({"setupComplete": {"sessionId": session_id}})
}

pub fn audio(b64: &str) -> Value {
    json!({"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": OUTPUT_MIME, "data": b64}}]}}})
}

pub fn output_transcription(text: &str) -> Value {
    json!({"serverContent": {"outputTranscription": {"text": text}}})
}

pub fn input_transcription(text: &str) -> Value {
    json!({"serverContent": {"inputTranscription": {"text": text}}})
}

pub fn interrupted() -> Value {
    json!({"serverContent": {"interrupted": true}})
}

pub fn generation_complete() -> Value {
    json!({"serverContent": {"generationComplete": true}})
}

/// The end of a turn, with the turn's usage in the same message.
pub fn turn_complete(u: &Usage) -> Value {
    let prompt = u.prompt_audio_tokens + u.prompt_text_tokens;
    json!({
        "serverContent": {"turnComplete": true},
        "usageMetadata": {
            "promptTokenCount": prompt,
            "responseTokenCount": u.response_audio_tokens,
            "totalTokenCount": prompt + u.response_audio_tokens,
            "promptTokensDetails": [
                {"modality": "AUDIO", "tokenCount": u.prompt_audio_tokens},
                {"modality": "TEXT", "tokenCount": u.prompt_text_tokens}],
            "responseTokensDetails": [
                {"modality": "AUDIO", "tokenCount": u.response_audio_tokens}],
        },
    })
}

pub fn tool_call(id: &str, name: &str, args: &Value) -> Value {
    json!({"toolCall": {"functionCalls": [{"id": id, "name": name, "args": args}]}})
}

/// `timeLeft` as a protobuf Duration string (`"9s"`, `"2.500s"`).
pub fn go_away(time_left_ms: u64) -> Value {
    let time_left = if time_left_ms.is_multiple_of(1000) {
        format!("{}s", time_left_ms / 1000)
    } else {
        format!("{}.{:03}s", time_left_ms / 1000, time_left_ms % 1000)
    };
    json!({"goAway": {"timeLeft": time_left}})
}

/// While the model generates or calls a tool the handle is empty and not resumable.
pub fn resumption_update(handle: &str, resumable: bool) -> Value {
    json!({"sessionResumptionUpdate": {"newHandle": handle, "resumable": resumable}})
}

const SETUP_FIELDS: &[&str] = &[
    "model",
    "generationConfig",
    "systemInstruction",
    "tools",
    "realtimeInputConfig",
    "inputAudioTranscription",
    "outputAudioTranscription",
    "sessionResumption",
    "contextWindowCompression",
    "proactivity",
    "historyConfig",
    "safetySettings",
];
const GENERATION_FIELDS: &[&str] = &[
    "responseModalities",
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "candidateCount",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "speechConfig",
    "thinkingConfig",
    "enableAffectiveDialog",
    "mediaResolution",
    "translationConfig",
];
const SPEECH_FIELDS: &[&str] = &["voiceConfig", "languageCode", "multiSpeakerVoiceConfig"];
const REALTIME_INPUT_FIELDS: &[&str] = &[
    "automaticActivityDetection",
    "activityHandling",
    "turnCoverage",
];
const ACTIVITY_DETECTION_FIELDS: &[&str] = &[
    "disabled",
    "startOfSpeechSensitivity",
    "endOfSpeechSensitivity",
    "prefixPaddingMs",
    "silenceDurationMs",
];
const TOOL_FIELDS: &[&str] = &[
    "functionDeclarations",
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
];
const DECLARATION_FIELDS: &[&str] = &[
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "behavior",
];

/// Like the real server's 1007 reason: the path of the first unknown field.
fn known_fields(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at '{at}': Cannot find field."
        )),
        None => Ok(()),
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("Invalid value at '{at}': expected an object."))
}

fn one_of(value: Option<&Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match value {
        None => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(other) => Err(format!("Invalid value at '{at}' ({other}).")),
    }
}

/// The checks that make the real server close a session with 1007 before `setupComplete`.
pub fn check_setup(setup: &Value) -> Result<(), String> {
    let s = object(setup, "setup")?;
    known_fields(s, SETUP_FIELDS, "setup")?;
    match s.get("model").and_then(Value::as_str) {
        Some(m) if m.starts_with("models/") && m.len() > "models/".len() => {}
        _ => return Err("setup.model must name a model as models/{model}.".into()),
    }
    if let Some(g) = s.get("generationConfig") {
        let g = object(g, "setup.generation_config")?;
        known_fields(g, GENERATION_FIELDS, "setup.generation_config")?;
        if let Some(modalities) = g.get("responseModalities") {
            let modalities = modalities
                .as_array()
                .ok_or("setup.generation_config.response_modalities must be a list.")?;
            if modalities.len() > 1 {
                return Err("Live sessions take exactly one response modality.".into());
            }
            for m in modalities {
                one_of(
                    Some(m),
                    &["AUDIO", "TEXT"],
                    "setup.generation_config.response_modalities",
                )?;
            }
        }
        if let Some(speech) = g.get("speechConfig") {
            let speech = object(speech, "setup.generation_config.speech_config")?;
            known_fields(
                speech,
                SPEECH_FIELDS,
                "setup.generation_config.speech_config",
            )?;
        }
    }
    if let Some(r) = s.get("realtimeInputConfig") {
        let r = object(r, "setup.realtime_input_config")?;
        known_fields(r, REALTIME_INPUT_FIELDS, "setup.realtime_input_config")?;
        one_of(
            r.get("activityHandling"),
            &["START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"],
            "setup.realtime_input_config.activity_handling",
        )?;
        one_of(
            r.get("turnCoverage"),
            &[
                "TURN_INCLUDES_ONLY_ACTIVITY",
                "TURN_INCLUDES_ALL_INPUT",
                "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
            ],
            "setup.realtime_input_config.turn_coverage",
        )?;
        if let Some(a) = r.get("automaticActivityDetection") {
            let at = "setup.realtime_input_config.automatic_activity_detection";
            let a = object(a, at)?;
            known_fields(a, ACTIVITY_DETECTION_FIELDS, at)?;
            one_of(
                a.get("startOfSpeechSensitivity"),
                &["START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"],
                at,
            )?;
            one_of(
                a.get("endOfSpeechSensitivity"),
                &["END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"],
                at,
            )?;
        }
    }
    if let Some(tools) = s.get("tools") {
        let tools = tools.as_array().ok_or("setup.tools must be a list.")?;
        for tool in tools {
            let tool = object(tool, "setup.tools")?;
            known_fields(tool, TOOL_FIELDS, "setup.tools")?;
            for d in tool
                .get("functionDeclarations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                check_declaration(d)?;
            }
        }
    }
    for key in ["inputAudioTranscription", "outputAudioTranscription"] {
        if let Some(v) = s.get(key) {
            object(v, key)?;
        }
    }
    if let Some(c) = s.get("contextWindowCompression") {
        let c = object(c, "setup.context_window_compression")?;
        known_fields(
            c,
            &["triggerTokens", "slidingWindow"],
            "setup.context_window_compression",
        )?;
    }
    if let Some(r) = s.get("sessionResumption") {
        let r = object(r, "setup.session_resumption")?;
        known_fields(r, &["handle", "transparent"], "setup.session_resumption")?;
    }
    if let Some(i) = s.get("systemInstruction") {
        let i = object(i, "setup.system_instruction")?;
        if !i.get("parts").is_some_and(Value::is_array) {
            return Err("setup.system_instruction needs parts.".into());
        }
    }
    Ok(())
}

fn check_declaration(d: &Value) -> Result<(), String> {
    let at = "setup.tools[0].function_declarations";
    let d = object(d, at)?;
    known_fields(d, DECLARATION_FIELDS, at)?;
    let name = d.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err(format!("{at}.name: must not be empty."));
    }
    if let Some(p) = d.get("parameters") {
        check_schema(p, &format!("{at}[{name}].parameters"))?;
    }
    Ok(())
}

/// Gemini's `Schema`: types are the proto enum names, and an `OBJECT` needs properties.
fn check_schema(schema: &Value, at: &str) -> Result<(), String> {
    let s = object(schema, at)?;
    one_of(
        s.get("type"),
        &[
            "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL",
        ],
        &format!("{at}.type"),
    )?;
    if s.get("type").and_then(Value::as_str) == Some("OBJECT")
        && s.get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
    {
        return Err(format!(
            "{at}.properties: should be non-empty for OBJECT type"
        ));
    }
    if let Some(extra) = s.get("additionalProperties") {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"additionalProperties\" at '{at}': Cannot find field. ({extra})"
        ));
    }
    for (name, property) in s
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        check_schema(property, &format!("{at}.properties[{name}]"))?;
    }
    if let Some(items) = s.get("items") {
        check_schema(items, &format!("{at}.items"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({"model": "models/gemini-live-2.5-flash-preview"})
    }

    #[test]
    fn the_example_setup_of_protocols_3_2_passes() {
        let setup = json!({
            "model": "models/gemini-live-2.5-flash-preview",
            "generationConfig": {"responseModalities": ["AUDIO"], "temperature": 0.7,
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Aoede"}},
                                 "languageCode": "en-US"}},
            "systemInstruction": {"parts": [{"text": "You are a concise phone agent."}]},
            "tools": [{"functionDeclarations": [{"name": "lookup_order", "description": "…",
                "parameters": {"type": "OBJECT", "properties": {"id": {"type": "STRING"}}}}]}],
            "realtimeInputConfig": {
                "automaticActivityDetection": {"disabled": false,
                    "startOfSpeechSensitivity": "START_SENSITIVITY_HIGH",
                    "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
                    "prefixPaddingMs": 20, "silenceDurationMs": 500},
                "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
                "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY"},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": {"handle": "h"},
            "contextWindowCompression": {"triggerTokens": 25600,
                                         "slidingWindow": {"targetTokens": 12800}}
        });
        assert_eq!(check_setup(&setup), Ok(()));
        assert_eq!(check_setup(&minimal()), Ok(()));
    }

    #[test]
    fn mistakes_are_refused_with_the_path() {
        let cases = [
            ("model", json!("gemini-live")),
            ("voice", json!("Aoede")),
            (
                "generationConfig",
                json!({"responseModalities": ["AUDIO", "TEXT"]}),
            ),
            (
                "generationConfig",
                json!({"response_modalities": ["AUDIO"]}),
            ),
            (
                "realtimeInputConfig",
                json!({"activityHandling": "INTERRUPT"}),
            ),
            (
                "realtimeInputConfig",
                json!({"automaticActivityDetection": {"threshold": 0.5}}),
            ),
            (
                "tools",
                json!([{"functionDeclarations": [{"name": "end_call",
                        "parameters": {"type": "OBJECT", "properties": {}}}]}]),
            ),
            (
                "tools",
                json!([{"functionDeclarations": [{"name": "f",
                        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]}]),
            ),
            ("systemInstruction", json!("Be brief.")),
            ("sessionResumption", json!({"token": "x"})),
        ];
        for (key, value) in cases {
            let mut setup = minimal();
            setup[key] = value.clone();
            assert!(check_setup(&setup).is_err(), "{key}: {value}");
        }
        let unknown = check_setup(&json!({"model": "models/m", "voice": "x"})).unwrap_err();
        assert!(unknown.contains("Unknown name \"voice\""), "{unknown}");
    }

    #[test]
    fn go_away_time_left_is_a_duration_string() {
        assert_eq!(go_away(9000)["goAway"]["timeLeft"], "9s");
        assert_eq!(go_away(2500)["goAway"]["timeLeft"], "2.500s");
        assert_eq!(go_away(50)["goAway"]["timeLeft"], "0.050s");
    }
}
