-- The transcription model OpenAI Realtime uses for caller turns when an agent has
-- transcription on (`audio.input.transcription.model`). Its usage arrives separately
-- from the response usage (tokens, or seconds of audio) and is priced from this row.
-- List prices as of writing; an admin should check them before billing anyone.
INSERT INTO realtime_models (id, provider, model_name, display_name, description, model_type,
    supports_audio, text_input_per_mtok_micros, text_output_per_mtok_micros,
    audio_input_per_mtok_micros, audio_output_per_mtok_micros,
    cached_text_input_per_mtok_micros, cached_audio_input_per_mtok_micros,
    audio_input_per_minute_micros, audio_output_per_minute_micros, session_per_minute_micros,
    is_active, created_at, updated_at) VALUES
('rm_openai_gpt_4o_mini_transcribe', 'openai', 'gpt-4o-mini-transcribe', 'OpenAI gpt-4o-mini-transcribe',
    'Caller-side transcription inside OpenAI Realtime sessions', 'call', 1,
    1250000, 5000000, 3000000, 0, 0, 0, 3000, 0, 0,
    1, 1764547200000, 1764547200000);
