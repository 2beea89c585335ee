//! Seed corpora and dictionaries: real messages from protocols.md (§1.2, §2.4, §3.4,
//! §4.3, §5.4) and the shapes the bench fakes send, plus generators of well-formed
//! inputs with arbitrary field values.

use super::engine::{Corpus, Rng};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

pub const TWILIO: &[&str] = &[
    r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","start":{"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"customParameters":{"session_token":"t0k","tenant":"acme"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
    r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/////w=="}}"#,
    r#"{"event":"media","sequenceNumber":"4","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"25","payload":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/"}}"#,
    r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#,
    r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"item_abc:17"}}"#,
    r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
    r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/////w=="}}"#,
    r#"{"event":"clear","streamSid":"MZ1"}"#,
];

pub const TWILIO_DICT: &[&str] = &[
    "event",
    "connected",
    "start",
    "media",
    "mark",
    "dtmf",
    "stop",
    "clear",
    "sequenceNumber",
    "streamSid",
    "accountSid",
    "callSid",
    "tracks",
    "customParameters",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "channels",
    "track",
    "chunk",
    "timestamp",
    "payload",
    "name",
    "digit",
    "\"1\"",
    "\"x\"",
    "null",
];

pub const OPENAI: &[&str] = &[
    r#"{"type":"session.created","event_id":"event_1","session":{}}"#,
    r#"{"type":"session.updated","event_id":"event_2","session":{}}"#,
    r#"{"type":"response.output_audio.delta","event_id":"event_3","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"/////w=="}"#,
    r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1000,"item_id":"item_2"}"#,
    r#"{"type":"conversation.item.input_audio_transcription.delta","item_id":"item_2","delta":"where is"}"#,
    r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_2","content_index":0,"transcript":"where is my order","usage":{"type":"tokens","input_tokens":12,"output_tokens":5,"total_tokens":17,"input_token_details":{"audio_tokens":12,"text_tokens":0}}}"#,
    r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_2","transcript":"hi","usage":{"type":"duration","seconds":1.5}}"#,
    r#"{"type":"response.output_audio_transcript.delta","item_id":"item_1","delta":"Sure"}"#,
    r#"{"type":"response.output_audio_transcript.done","item_id":"item_1","transcript":"Sure, one moment."}"#,
    r#"{"type":"response.function_call_arguments.done","call_id":"call_1","name":"end_call","arguments":"{}","item_id":"item_3","response_id":"resp_1","output_index":0}"#,
    r#"{"type":"response.done","event_id":"event_9","response":{"id":"resp_1","object":"realtime.response","status":"completed","status_details":null,"output":[],"usage":{"total_tokens":1520,"input_tokens":1320,"output_tokens":200,"input_token_details":{"text_tokens":420,"audio_tokens":900,"image_tokens":0,"cached_tokens":640},"output_token_details":{"text_tokens":40,"audio_tokens":160}}}}"#,
    r#"{"type":"response.done","response":{"status":"failed","status_details":{"error":{"type":"server_error","code":"rate_limited","message":"slow down"}}}}"#,
    r#"{"type":"error","event_id":"event_10","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"bad key","param":null,"event_id":null}}"#,
    r#"{"type":"rate_limits.updated","rate_limits":[{"name":"requests","limit":1000,"remaining":999,"reset_seconds":60}]}"#,
];

pub const OPENAI_DICT: &[&str] = &[
    "type",
    "item_id",
    "delta",
    "transcript",
    "usage",
    "tokens",
    "duration",
    "seconds",
    "input_tokens",
    "output_tokens",
    "input_token_details",
    "output_token_details",
    "audio_tokens",
    "text_tokens",
    "cached_tokens",
    "response",
    "status",
    "failed",
    "status_details",
    "error",
    "code",
    "message",
    "call_id",
    "arguments",
    "end_call",
];

pub const GEMINI: &[&str] = &[
    r#"{"setupComplete":{"sessionId":"s1"}}"#,
    r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AAAAAAAAAAA="}}]}}}"#,
    r#"{"serverContent":{"outputTranscription":{"text":"Sure, let me"}}}"#,
    r#"{"serverContent":{"inputTranscription":{"text":"where is my order","finished":true}}}"#,
    r#"{"serverContent":{"interrupted":true}}"#,
    r#"{"serverContent":{"generationComplete":true}}"#,
    r#"{"serverContent":{"turnComplete":true}}"#,
    r#"{"toolCall":{"functionCalls":[{"id":"fc_1","name":"lookup_order","args":{"id":"42"}}]}}"#,
    r#"{"toolCallCancellation":{"ids":["fc_1"]}}"#,
    r#"{"usageMetadata":{"promptTokenCount":1830,"responseTokenCount":210,"totalTokenCount":2040,"promptTokensDetails":[{"modality":"AUDIO","tokenCount":1500},{"modality":"TEXT","tokenCount":330}],"responseTokensDetails":[{"modality":"AUDIO","tokenCount":210}]}}"#,
    r#"{"goAway":{"timeLeft":"9s"}}"#,
    r#"{"goAway":{"timeLeft":{"seconds":9,"nanos":500}}}"#,
    r#"{"sessionResumptionUpdate":{"newHandle":"CiQ1","resumable":true}}"#,
    r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#,
];

pub const GEMINI_DICT: &[&str] = &[
    "setupComplete",
    "serverContent",
    "modelTurn",
    "parts",
    "inlineData",
    "mimeType",
    "data",
    "turnComplete",
    "interrupted",
    "inputTranscription",
    "outputTranscription",
    "text",
    "finished",
    "toolCall",
    "functionCalls",
    "args",
    "usageMetadata",
    "promptTokensDetails",
    "modality",
    "tokenCount",
    "goAway",
    "timeLeft",
    "seconds",
    "nanos",
    "sessionResumptionUpdate",
    "newHandle",
    "resumable",
    "error",
    "status",
];

pub const ELEVENLABS: &[&str] = &[
    r#"{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{"conversation_id":"conv_1","agent_output_audio_format":"ulaw_8000","user_input_audio_format":"ulaw_8000"}}"#,
    r#"{"type":"audio","audio_event":{"audio_base_64":"/////w==","event_id":7}}"#,
    r#"{"type":"agent_response","agent_response_event":{"agent_response":"Sure, one moment."}}"#,
    r#"{"type":"agent_response_correction","agent_response_correction_event":{"original_agent_response":"a","corrected_agent_response":"b"}}"#,
    r#"{"type":"user_transcript","user_transcription_event":{"user_transcript":"where is my order"}}"#,
    r#"{"type":"interruption","interruption_event":{"event_id":8}}"#,
    r#"{"type":"ping","ping_event":{"event_id":9,"ping_ms":45}}"#,
    r#"{"type":"client_tool_call","client_tool_call":{"tool_name":"lookup_order","tool_call_id":"t1","parameters":{"id":"42"}}}"#,
    r#"{"type":"vad_score","vad_score_event":{"vad_score":0.93}}"#,
];

pub const ELEVENLABS_DICT: &[&str] = &[
    "type",
    "audio_event",
    "audio_base_64",
    "event_id",
    "interruption_event",
    "ping_event",
    "ulaw_8000",
    "pcm_16000",
    "pcm_44100",
    "agent_output_audio_format",
    "user_input_audio_format",
    "tool_name",
    "tool_call_id",
    "parameters",
    "end_call",
];

pub const DEEPGRAM: &[&str] = &[
    r#"{"type":"Welcome","request_id":"r1"}"#,
    r#"{"type":"SettingsApplied"}"#,
    r#"{"type":"ConversationText","role":"user","content":"where is my order"}"#,
    r#"{"type":"ConversationText","role":"assistant","content":"One moment."}"#,
    r#"{"type":"UserStartedSpeaking"}"#,
    r#"{"type":"AgentThinking","content":"hmm"}"#,
    r#"{"type":"AgentStartedSpeaking","total_latency":0.81,"tts_latency":0.22,"ttt_latency":0.59}"#,
    r#"{"type":"AgentAudioDone"}"#,
    r#"{"type":"FunctionCallRequest","functions":[{"id":"f1","name":"lookup_order","arguments":"{\"id\":\"42\"}","client_side":true}]}"#,
    r#"{"type":"Error","description":"bad","code":"E1"}"#,
    r#"{"type":"Warning","description":"meh","code":"W1"}"#,
];

pub const DEEPGRAM_DICT: &[&str] = &[
    "type",
    "Welcome",
    "SettingsApplied",
    "ConversationText",
    "role",
    "user",
    "assistant",
    "content",
    "UserStartedSpeaking",
    "AgentStartedSpeaking",
    "AgentAudioDone",
    "FunctionCallRequest",
    "functions",
    "client_side",
    "arguments",
];

pub const SDP: &[&str] = &[
    "application/sdp\nv=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n",
    "application/sdp; charset=utf-8\nv=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\na=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=msid:- 1f7d\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1 cname:x\r\na=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0\r\n",
    "application/json\nv=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\n",
];

pub const SDP_DICT: &[&str] = &[
    "\r\n",
    "v=0",
    "m=audio ",
    "m=video ",
    "m=application ",
    "a=rtpmap:",
    "opus/48000/2",
    "OPUS/48000",
    "a=fmtp:",
    "a=mid:",
    "a=group:BUNDLE ",
    "c=IN IP4 ",
    "c=IN IP6 ::1",
    "a=candidate:",
    "a=ssrc:",
    "a=fingerprint:sha-256 ",
    "a=setup:",
    "a=ice-ufrag:",
    "o=- ",
    "s=-",
    "t=0 0",
    "b=AS:",
    "k=",
    "r=",
    "z=",
    "e=",
    "u=",
    "i=",
    "UDP/TLS/RTP/SAVPF",
    "a=rtcp-fb:",
    "a=extmap:",
    "a=msid:",
    "a=sendrecv",
    "a=inactive",
    "256",
    "18446744073709551616",
];

/// The corpus of a target, by name.
pub fn corpus(target: &str) -> Corpus {
    let text = |seeds: &[&'static str], dict: &[&str]| {
        let mut seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
        // And the whole set as one multi-frame input.
        seeds.push(seeds.join(&0xFF));
        let refs: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        Corpus::new(&refs, dict)
    };
    match target {
        "twilio_messages" => text(TWILIO, TWILIO_DICT),
        "openai_events" => text(OPENAI, OPENAI_DICT),
        "gemini_messages" => text(GEMINI, GEMINI_DICT),
        "elevenlabs_messages" => text(ELEVENLABS, ELEVENLABS_DICT),
        "deepgram_messages" => text(DEEPGRAM, DEEPGRAM_DICT),
        "sdp_offer" => text(SDP, SDP_DICT),
        "opus_decode" => {
            // Length-prefixed packets: TOC bytes of every config and code.
            let packets: Vec<Vec<u8>> = (0u8..=255)
                .step_by(5)
                .map(|toc| {
                    let mut p = vec![20, toc];
                    p.extend((0..19u8).map(|i| i.wrapping_mul(37) ^ toc));
                    p
                })
                .collect();
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            Corpus::new(&refs, &[]).with_max_len(2_048)
        }
        "resample_chunks" => {
            let mut seeds = Vec::new();
            for pair in 0u8..16 {
                let mut s = vec![pair, 1, 2, 3, 40, 5, 255, 7, 0];
                s.extend((0..480i16).flat_map(|i| (i.wrapping_mul(331)).to_le_bytes()));
                seeds.push(s);
            }
            let refs: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
            Corpus::new(&refs, &[]).with_max_len(4_096)
        }
        _ => Corpus::new(&[b"".as_slice(), b"\x00\x01\xff\x7f\x80"], &[]).with_max_len(1_024),
    }
}

/// A generator of well-formed messages with arbitrary values, for targets that have one.
pub fn generator(target: &str) -> Option<fn(&mut Rng, &mut Vec<u8>)> {
    match target {
        "twilio_messages" => Some(twilio_call),
        "openai_events" | "gemini_messages" | "elevenlabs_messages" | "deepgram_messages" => {
            Some(provider_session)
        }
        _ => None,
    }
}

fn any_text(rng: &mut Rng) -> String {
    let n = rng.len(40);
    let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
    String::from_utf8_lossy(&bytes).into()
}

/// A whole Twilio stream: connected, start, then media, marks, dtmf, in any order, with
/// arbitrary sids, mark names and payloads, frames separated by `0xFF`.
fn twilio_call(rng: &mut Rng, out: &mut Vec<u8>) {
    let sid = if rng.one_in(4) {
        any_text(rng)
    } else {
        "MZ1".into()
    };
    let mut messages = vec![json!({"event":"connected","protocol":"Call","version":"1.0.0"})];
    if !rng.one_in(8) {
        messages.push(json!({"event":"start","sequenceNumber":"1","streamSid":sid,
            "start":{"streamSid":sid,"callSid":any_text(rng),"customParameters":{"token":any_text(rng)}}}));
    }
    for seq in 2..2 + rng.below(12) as u64 {
        let seq_value = if rng.one_in(8) {
            json!(seq)
        } else {
            json!(seq.to_string())
        };
        messages.push(match rng.below(5) {
            0 | 1 => {
                let n = rng.len(400);
                let payload: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                json!({"event":"media","sequenceNumber":seq_value,"streamSid":sid,
                    "media":{"track":"inbound","chunk":seq.to_string(),"timestamp":(seq * 20).to_string(),
                    "payload":BASE64.encode(payload)}})
            }
            2 => {
                let name = if rng.one_in(2) { format!("item{}:{}", rng.below(3), rng.below(20)) } else { any_text(rng) };
                json!({"event":"mark","sequenceNumber":seq_value,"streamSid":sid,"mark":{"name":name}})
            }
            3 => json!({"event":"dtmf","sequenceNumber":seq_value,"streamSid":sid,
                "dtmf":{"track":"inbound_track","digit":any_text(rng)}}),
            _ => json!({"event":"stop","sequenceNumber":seq_value,"streamSid":sid,"stop":{"callSid":"CA1"}}),
        });
    }
    join_frames(&messages, out);
}

/// A sequence of provider-shaped messages of all four providers (each decoder ignores
/// the others' as unknown), with arbitrary ids, texts, numbers and audio.
fn provider_session(rng: &mut Rng, out: &mut Vec<u8>) {
    let mut messages = Vec::new();
    for _ in 0..1 + rng.below(10) {
        let audio = {
            let n = rng.len(600);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            BASE64.encode(bytes)
        };
        let item = format!("item{}", rng.below(3));
        let number = json!(rng.next_u64() >> rng.below(64));
        messages.push(match rng.below(14) {
            0 => json!({"type":"response.output_audio.delta","item_id":item,"delta":audio}),
            1 => json!({"type":"input_audio_buffer.speech_started"}),
            2 => json!({"type":"response.output_audio_transcript.done","item_id":item,"transcript":any_text(rng)}),
            3 => json!({"type":"response.function_call_arguments.done","call_id":any_text(rng),
                "name":if rng.one_in(3) {"end_call".into()} else {any_text(rng)},"arguments":any_text(rng)}),
            4 => json!({"type":"response.done","response":{"status":"completed","usage":{
                "input_token_details":{"audio_tokens":number,"text_tokens":number},
                "output_token_details":{"audio_tokens":number}}}}),
            5 => json!({"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":audio}}]},
                "turnComplete":rng.one_in(2),"interrupted":rng.one_in(4)}}),
            6 => json!({"serverContent":{"inputTranscription":{"text":any_text(rng),"finished":rng.one_in(2)},
                "outputTranscription":{"text":any_text(rng),"finished":rng.one_in(2)}}}),
            7 => json!({"usageMetadata":{"promptTokenCount":number,"responseTokenCount":number,
                "promptTokensDetails":[{"modality":"AUDIO","tokenCount":number}]}}),
            8 => json!({"goAway":{"timeLeft":format!("{}s", any_text(rng))}}),
            9 => json!({"type":"audio","audio_event":{"audio_base_64":audio,"event_id":number}}),
            10 => json!({"type":"interruption","interruption_event":{"event_id":number}}),
            11 => json!({"type":"ConversationText","role":if rng.one_in(2) {"user"} else {"assistant"},"content":any_text(rng)}),
            12 => json!({"type":"UserStartedSpeaking"}),
            _ => json!({"type":"AgentAudioDone"}),
        });
    }
    join_frames(&messages, out);
    if rng.one_in(3) {
        // A binary frame of audio (Deepgram) or JSON bytes (Gemini).
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend((0..rng.len(400)).map(|_| rng.byte()));
    }
}

fn join_frames(messages: &[Value], out: &mut Vec<u8>) {
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(m.to_string().as_bytes());
    }
}
