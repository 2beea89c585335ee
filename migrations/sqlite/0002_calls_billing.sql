-- Vocalized schema, part 2: providers, integrations, calls, billing, scheduling, webhooks.
-- One schema, two dialects (this file and migrations/postgres/0002_calls_billing.sql say the
-- same thing; the Postgres file adds only a full-text index). Conventions (ARCHITECTURE.md
-- §6): TEXT ids, BIGINT epoch milliseconds (UTC), BIGINT micro-dollars (`*_micros`),
-- INTEGER basis points (`*_bps`), INTEGER 0/1 booleans, DOUBLE PRECISION for other
-- fractions, TEXT JSON, named CHECK constraints, workspace_id on every tenant-owned row.
--
-- Child rows that die with their parent (call events, transcripts, invoice items, ...)
-- reference the parent through (workspace_id, id), so a child can never carry a different
-- workspace_id than its parent and a query filtered by workspace_id alone is always right.
--
-- Provider names, event types and resource types are deliberately not CHECKed: they are
-- open lists validated in Rust (shared ProviderKind, CallEventKind), and SQLite cannot
-- alter a CHECK without rebuilding the table. Statuses and other closed sets are CHECKed.

-- ---------------------------------------------------------------------------------------
-- Voice AI providers (seed §1.7)
-- ---------------------------------------------------------------------------------------

-- The platform's own provider accounts. api_key_encrypted is sealed by the app
-- (crypto.rs, AES-256-GCM under the master key); NULL for providers that need no key
-- (echo) or whose key an admin has not entered yet.
CREATE TABLE platform_provider_configs (
    provider TEXT PRIMARY KEY,
    api_key_encrypted TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    priority INTEGER NOT NULL DEFAULT 0,
    is_enabled INTEGER NOT NULL DEFAULT 1,
    -- What one minute of a call costs us when no model price applies (fallback estimate).
    cost_per_minute_micros BIGINT NOT NULL DEFAULT 0,
    region TEXT NOT NULL DEFAULT 'global',
    -- Overrides the provider's default WebSocket URL (regional endpoints, test fakes).
    base_url TEXT,
    updated_by_admin_id TEXT REFERENCES platform_admins(id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT platform_provider_configs_is_enabled_check CHECK (is_enabled IN (0, 1)),
    CONSTRAINT platform_provider_configs_cost_check CHECK (cost_per_minute_micros >= 0)
);

-- A workspace's own settings per provider, optionally with its own key (bring your own).
CREATE TABLE workspace_provider_configs (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    uses_platform_key INTEGER NOT NULL DEFAULT 1,
    api_key_encrypted TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    priority INTEGER NOT NULL DEFAULT 0,
    is_enabled INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT workspace_provider_configs_workspace_provider_key UNIQUE (workspace_id, provider),
    CONSTRAINT workspace_provider_configs_uses_platform_key_check CHECK (uses_platform_key IN (0, 1)),
    CONSTRAINT workspace_provider_configs_is_enabled_check CHECK (is_enabled IN (0, 1)),
    -- A workspace that brings its own key must actually store one.
    CONSTRAINT workspace_provider_configs_own_key_check
        CHECK (uses_platform_key = 1 OR api_key_encrypted IS NOT NULL)
);

-- How a workspace's calls choose among providers.
CREATE TABLE workspace_provider_strategies (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    strategy TEXT NOT NULL DEFAULT 'auto',
    -- The provider used by the 'specific' strategy.
    preferred_provider TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    fallback_enabled INTEGER NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL,
    CONSTRAINT workspace_provider_strategies_strategy_check
        CHECK (strategy IN ('auto', 'cost_optimized', 'quality_first', 'specific', 'custom')),
    CONSTRAINT workspace_provider_strategies_specific_check
        CHECK (strategy <> 'specific' OR preferred_provider IS NOT NULL),
    CONSTRAINT workspace_provider_strategies_fallback_enabled_check CHECK (fallback_enabled IN (0, 1))
);

-- Platform-wide provider health, written by the media plane's probes and call outcomes;
-- read by provider selection and the admin dashboard.
CREATE TABLE provider_health_status (
    provider TEXT NOT NULL,
    region TEXT NOT NULL,
    status TEXT NOT NULL,
    last_check_at BIGINT NOT NULL,
    error_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_latency_ms INTEGER,
    -- WebSocket connect time and time to first agent audio, the two numbers callers feel.
    connect_ms INTEGER,
    ttfa_ms INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    details TEXT,
    PRIMARY KEY (provider, region),
    CONSTRAINT provider_health_status_status_check CHECK (status IN ('healthy', 'degraded', 'down')),
    CONSTRAINT provider_health_status_error_rate_check CHECK (error_rate >= 0 AND error_rate <= 1),
    CONSTRAINT provider_health_status_consecutive_failures_check CHECK (consecutive_failures >= 0)
);

-- The model catalogue (call-feature §4). Token prices are micro-dollars per MILLION tokens
-- (so $0.06/M is 60000, exact); time prices are micro-dollars per minute. Cached input has
-- its own text and audio prices because providers charge them differently; billing that
-- cannot tell them apart should use the audio one, which is never the lower.
-- session_per_minute_micros is for providers that bill by connected minute (ElevenLabs,
-- Deepgram agents).
CREATE TABLE realtime_models (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT,
    model_type TEXT NOT NULL DEFAULT 'call',
    supports_audio INTEGER NOT NULL DEFAULT 1,
    text_input_per_mtok_micros BIGINT NOT NULL DEFAULT 0,
    text_output_per_mtok_micros BIGINT NOT NULL DEFAULT 0,
    audio_input_per_mtok_micros BIGINT NOT NULL DEFAULT 0,
    audio_output_per_mtok_micros BIGINT NOT NULL DEFAULT 0,
    cached_text_input_per_mtok_micros BIGINT NOT NULL DEFAULT 0,
    cached_audio_input_per_mtok_micros BIGINT NOT NULL DEFAULT 0,
    audio_input_per_minute_micros BIGINT NOT NULL DEFAULT 0,
    audio_output_per_minute_micros BIGINT NOT NULL DEFAULT 0,
    session_per_minute_micros BIGINT NOT NULL DEFAULT 0,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT realtime_models_provider_model_name_key UNIQUE (provider, model_name),
    CONSTRAINT realtime_models_model_type_check CHECK (model_type IN ('chat', 'call', 'both')),
    CONSTRAINT realtime_models_supports_audio_check CHECK (supports_audio IN (0, 1)),
    CONSTRAINT realtime_models_is_active_check CHECK (is_active IN (0, 1)),
    CONSTRAINT realtime_models_prices_check CHECK (
        text_input_per_mtok_micros >= 0 AND text_output_per_mtok_micros >= 0
        AND audio_input_per_mtok_micros >= 0 AND audio_output_per_mtok_micros >= 0
        AND cached_text_input_per_mtok_micros >= 0 AND cached_audio_input_per_mtok_micros >= 0
        AND audio_input_per_minute_micros >= 0 AND audio_output_per_minute_micros >= 0
        AND session_per_minute_micros >= 0)
);
CREATE INDEX idx_realtime_models_type ON realtime_models(model_type, provider);

-- Seed prices are list prices as we knew them at writing (USD); an admin must check them
-- against the providers' pricing pages before billing real customers. Where a provider
-- did not publish a cached price we charge the full input price (never under-bill).
INSERT INTO realtime_models (id, provider, model_name, display_name, description, model_type,
    supports_audio, text_input_per_mtok_micros, text_output_per_mtok_micros,
    audio_input_per_mtok_micros, audio_output_per_mtok_micros,
    cached_text_input_per_mtok_micros, cached_audio_input_per_mtok_micros,
    audio_input_per_minute_micros, audio_output_per_minute_micros, session_per_minute_micros,
    is_active, created_at, updated_at) VALUES
('rm_openai_gpt_realtime', 'openai', 'gpt-realtime', 'OpenAI gpt-realtime',
    'OpenAI Realtime speech-to-speech model', 'call', 1,
    4000000, 16000000, 32000000, 64000000, 400000, 400000, 0, 0, 0,
    1, 1764547200000, 1764547200000),
('rm_openai_gpt_realtime_mini', 'openai', 'gpt-realtime-mini', 'OpenAI gpt-realtime-mini',
    'Smaller, cheaper OpenAI Realtime model', 'call', 1,
    600000, 2400000, 10000000, 20000000, 60000, 300000, 0, 0, 0,
    1, 1764547200000, 1764547200000),
('rm_gemini_live_2_5_flash', 'gemini', 'gemini-live-2.5-flash-preview', 'Gemini Live 2.5 Flash',
    'Google Gemini Live API, half-cascade audio', 'call', 1,
    500000, 2000000, 3000000, 12000000, 500000, 3000000, 0, 0, 0,
    1, 1764547200000, 1764547200000),
('rm_gemini_2_5_flash_native_audio', 'gemini', 'gemini-2.5-flash-native-audio-preview-09-2025',
    'Gemini 2.5 Flash Native Audio', 'Google Gemini Live API, native audio', 'call', 1,
    500000, 2000000, 3000000, 12000000, 500000, 3000000, 0, 0, 0,
    1, 1764547200000, 1764547200000),
('rm_elevenlabs_agents', 'elevenlabs', 'convai', 'ElevenLabs Agents',
    'ElevenLabs Agents Platform, billed per connected minute', 'call', 1,
    0, 0, 0, 0, 0, 0, 0, 0, 100000,
    1, 1764547200000, 1764547200000),
('rm_deepgram_voice_agent', 'deepgram', 'voice-agent', 'Deepgram Voice Agent',
    'Deepgram Voice Agent API, billed per connected minute', 'call', 1,
    0, 0, 0, 0, 0, 0, 0, 0, 75000,
    1, 1764547200000, 1764547200000),
('rm_echo', 'echo', 'echo', 'Echo (test)',
    'Built-in diagnostic provider that plays the caller back; free', 'call', 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1764547200000, 1764547200000);

-- ---------------------------------------------------------------------------------------
-- Integrations (seed §1.8, call-feature §5)
-- ---------------------------------------------------------------------------------------

-- CRMs, calendars and booking systems a workspace connects (salesforce, hubspot,
-- google_calendar, ...).
CREATE TABLE workspace_integrations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    integration_type TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    auth_type TEXT NOT NULL,
    credentials_encrypted TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    last_sync_at BIGINT,
    last_sync_status TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT workspace_integrations_workspace_id_id_key UNIQUE (workspace_id, id),
    CONSTRAINT workspace_integrations_status_check
        CHECK (status IN ('pending', 'connected', 'error', 'disconnected')),
    CONSTRAINT workspace_integrations_auth_type_check CHECK (auth_type IN ('oauth', 'api_key'))
);
CREATE INDEX idx_integration_workspace ON workspace_integrations(workspace_id);
CREATE INDEX idx_integration_type ON workspace_integrations(integration_type);
CREATE INDEX idx_integration_status ON workspace_integrations(status);

CREATE TABLE integration_sync_logs (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    integration_id TEXT NOT NULL,
    sync_type TEXT NOT NULL,
    status TEXT NOT NULL,
    records_synced BIGINT NOT NULL DEFAULT 0,
    error_message TEXT,
    started_at BIGINT NOT NULL,
    completed_at BIGINT,
    FOREIGN KEY (workspace_id, integration_id)
        REFERENCES workspace_integrations(workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT integration_sync_logs_sync_type_check CHECK (sync_type IN ('full', 'incremental')),
    CONSTRAINT integration_sync_logs_status_check CHECK (status IN ('started', 'completed', 'failed'))
);
CREATE INDEX idx_sync_integration ON integration_sync_logs(integration_id, started_at);
CREATE INDEX idx_sync_started ON integration_sync_logs(started_at);

-- Telephony and messaging accounts a workspace connects (call-feature §5). All secrets are
-- sealed by the app. external_account_id is the provider's account id in the clear (the
-- Twilio AccountSid, the WhatsApp business account id) so an inbound webhook can find the
-- account whose auth token verifies its signature. It is not UNIQUE: two workspaces of one
-- business may share a Twilio account, and a unique key would let a workspace squat on
-- someone else's AccountSid.
CREATE TABLE integration_accounts (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    account_type TEXT NOT NULL,
    account_name TEXT NOT NULL,
    description TEXT,
    external_account_id TEXT,
    credentials_encrypted TEXT NOT NULL,
    access_token_encrypted TEXT,
    refresh_token_encrypted TEXT,
    token_expires_at BIGINT,
    webhook_secret_encrypted TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    is_active INTEGER NOT NULL DEFAULT 1,
    last_error TEXT,
    last_error_at BIGINT,
    last_verified_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT integration_accounts_account_type_check
        CHECK (account_type IN ('twilio', 'whatsapp', 'custom', 'sip', 'webrtc')),
    CONSTRAINT integration_accounts_status_check
        CHECK (status IN ('active', 'inactive', 'error', 'pending')),
    CONSTRAINT integration_accounts_is_active_check CHECK (is_active IN (0, 1))
);
CREATE INDEX idx_integration_accounts_workspace ON integration_accounts(workspace_id, account_type);
CREATE INDEX idx_integration_accounts_external ON integration_accounts(account_type, external_account_id);
CREATE INDEX idx_integration_accounts_status ON integration_accounts(status);

-- ---------------------------------------------------------------------------------------
-- Calls (seed §1.9 merged with call-feature §6-7)
-- ---------------------------------------------------------------------------------------

-- agent_id and phone_number_id are nullable with ON DELETE SET NULL (the seed cascaded):
-- deleting an agent or releasing a number must not erase call history, recordings and the
-- record of what was billed. model_id and voice_provider_used are plain text for the same
-- reason. Statuses are Twilio's own spellings so its status callbacks map one to one.
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id TEXT REFERENCES voice_agents(id) ON DELETE SET NULL,
    phone_number_id TEXT REFERENCES phone_numbers(id) ON DELETE SET NULL,
    integration_account_id TEXT REFERENCES integration_accounts(id) ON DELETE SET NULL,
    source TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    -- E.164; NULL for web calls.
    caller_number TEXT,
    caller_name TEXT,
    to_number TEXT,
    -- Twilio CallSid (or another carrier's id); NULL for web calls.
    provider_call_sid TEXT,
    voice_provider_used TEXT,
    model_id TEXT,
    duration_seconds INTEGER,
    recording_url TEXT,
    transcription TEXT,
    summary TEXT,
    sentiment TEXT,
    -- 0-100 post-call quality score (voice-ai-platform-mvp "call score").
    call_score INTEGER,
    -- Why the call ended, as the media plane's EndReason (caller_hangup, max_duration, ...).
    end_reason TEXT,
    notes TEXT,
    metadata TEXT,
    cost_total_micros BIGINT NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    started_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT calls_workspace_id_id_key UNIQUE (workspace_id, id),
    CONSTRAINT calls_provider_call_sid_key UNIQUE (provider_call_sid),
    CONSTRAINT calls_source_check CHECK (source IN ('twilio', 'web', 'whatsapp', 'custom')),
    CONSTRAINT calls_direction_check CHECK (direction IN ('inbound', 'outbound')),
    CONSTRAINT calls_status_check CHECK (status IN ('queued', 'ringing', 'in-progress',
        'completed', 'failed', 'busy', 'no-answer', 'canceled')),
    CONSTRAINT calls_sentiment_check CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    CONSTRAINT calls_call_score_check CHECK (call_score >= 0 AND call_score <= 100),
    CONSTRAINT calls_duration_seconds_check CHECK (duration_seconds >= 0),
    CONSTRAINT calls_cost_total_check CHECK (cost_total_micros >= 0),
    CONSTRAINT calls_times_check CHECK ((answered_at IS NULL OR answered_at >= started_at)
        AND (ended_at IS NULL OR ended_at >= started_at))
);
CREATE INDEX idx_calls_workspace_started ON calls(workspace_id, started_at);
CREATE INDEX idx_calls_workspace_status ON calls(workspace_id, status);
CREATE INDEX idx_calls_workspace_direction ON calls(workspace_id, direction);
CREATE INDEX idx_calls_workspace_caller ON calls(workspace_id, caller_number);
CREATE INDEX idx_calls_agent ON calls(agent_id, started_at);
CREATE INDEX idx_calls_phone_number ON calls(phone_number_id);
CREATE INDEX idx_calls_integration_account ON calls(integration_account_id);

-- Everything the media plane reports about a call, in its order. seq is the event's
-- per-call sequence number (shared CallEvent.seq), so a replayed event is rejected by
-- UNIQUE (call_id, seq) and applying events is idempotent.
CREATE TABLE call_events (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    call_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    event_data TEXT,
    -- Milliseconds since the call was answered, as the media plane measured it.
    at_ms BIGINT,
    timestamp BIGINT NOT NULL,
    FOREIGN KEY (workspace_id, call_id) REFERENCES calls(workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT call_events_call_seq_key UNIQUE (call_id, seq),
    CONSTRAINT call_events_seq_check CHECK (seq >= 0)
);
-- Leads with workspace_id so the workspace_id foreign key's cascade (and a workspace's
-- event feed) doesn't scan the platform's largest table.
CREATE INDEX idx_call_events_workspace_timestamp ON call_events(workspace_id, timestamp);

-- One row per spoken turn (call-feature §7). Times are milliseconds from answer. seq is
-- the sequence number of the event that carried the turn, so replays are idempotent.
-- truncated marks an assistant turn cut off by barge-in: content is what the caller heard.
CREATE TABLE call_transcripts (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    call_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    confidence DOUBLE PRECISION,
    truncated INTEGER NOT NULL DEFAULT 0,
    audio_url TEXT,
    metadata TEXT,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (workspace_id, call_id) REFERENCES calls(workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT call_transcripts_call_seq_key UNIQUE (call_id, seq),
    CONSTRAINT call_transcripts_role_check CHECK (role IN ('user', 'assistant', 'system')),
    CONSTRAINT call_transcripts_content_check CHECK (length(content) > 0),
    CONSTRAINT call_transcripts_times_check
        CHECK (start_ms >= 0 AND end_ms >= start_ms AND duration_ms = end_ms - start_ms),
    CONSTRAINT call_transcripts_confidence_check CHECK (confidence >= 0 AND confidence <= 1),
    CONSTRAINT call_transcripts_truncated_check CHECK (truncated IN (0, 1))
);
CREATE INDEX idx_call_transcripts_call_start ON call_transcripts(call_id, start_ms);
CREATE INDEX idx_call_transcripts_call_role ON call_transcripts(call_id, role);
CREATE INDEX idx_call_transcripts_workspace_created ON call_transcripts(workspace_id, created_at);

-- One-time tokens that admit a Twilio Media Stream to a call (stored hashed). used_at is
-- set on first use; a second connection with the same token is refused.
CREATE TABLE call_stream_tokens (
    token_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    call_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (workspace_id, call_id) REFERENCES calls(workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX idx_call_stream_tokens_call ON call_stream_tokens(call_id);
CREATE INDEX idx_call_stream_tokens_expires ON call_stream_tokens(expires_at);

-- ---------------------------------------------------------------------------------------
-- Usage and billing (seed §1.10, voice-ai-platform-mvp §5)
-- ---------------------------------------------------------------------------------------

-- Monthly cycles. At most one 'current' period per workspace (partial unique index: both
-- SQLite and Postgres support it).
CREATE TABLE billing_periods (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    subtotal_micros BIGINT NOT NULL DEFAULT 0,
    subscription_fee_micros BIGINT NOT NULL DEFAULT 0,
    total_micros BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'current',
    stripe_invoice_id TEXT,
    paid_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT billing_periods_workspace_start_key UNIQUE (workspace_id, period_start),
    CONSTRAINT billing_periods_status_check
        CHECK (status IN ('current', 'finalized', 'paid', 'overdue', 'void')),
    CONSTRAINT billing_periods_range_check CHECK (period_end > period_start),
    CONSTRAINT billing_periods_amounts_check CHECK (subtotal_micros >= 0
        AND subscription_fee_micros >= 0 AND total_micros = subtotal_micros + subscription_fee_micros)
);
CREATE UNIQUE INDEX idx_billing_one_current ON billing_periods(workspace_id) WHERE status = 'current';
CREATE INDEX idx_billing_status ON billing_periods(status);
CREATE INDEX idx_billing_period ON billing_periods(period_start, period_end);

-- Every billable action. quantity is an integer count of `unit` (tokens, ms, seconds,
-- count, bytes); the rate is unit_cost_micros for every unit_cost_per units, so
-- $32 per million tokens is (32000000, 1000000) and $0.10 per minute billed in ms is
-- (100000, 60000) - both exact. total_cost_micros is the provider cost the app computed
-- (rounded up); final_cost_micros adds markup_bps (2000 = 20%). idempotency_key (e.g.
-- "call:<id>:seq:<n>:audio_output_tokens") stops a replayed usage event billing twice.
CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    call_id TEXT REFERENCES calls(id) ON DELETE SET NULL,
    billing_period_id TEXT REFERENCES billing_periods(id) ON DELETE SET NULL,
    resource_type TEXT NOT NULL,
    provider TEXT NOT NULL,
    model_id TEXT,
    quantity BIGINT NOT NULL,
    unit TEXT NOT NULL,
    unit_cost_micros BIGINT NOT NULL,
    unit_cost_per BIGINT NOT NULL DEFAULT 1,
    total_cost_micros BIGINT NOT NULL,
    markup_bps INTEGER NOT NULL DEFAULT 2000,
    final_cost_micros BIGINT NOT NULL,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    CONSTRAINT usage_records_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT usage_records_unit_check CHECK (unit IN ('tokens', 'ms', 'seconds', 'count', 'bytes')),
    CONSTRAINT usage_records_quantity_check CHECK (quantity >= 0),
    CONSTRAINT usage_records_unit_cost_check CHECK (unit_cost_micros >= 0 AND unit_cost_per > 0),
    CONSTRAINT usage_records_markup_bps_check CHECK (markup_bps >= 0),
    CONSTRAINT usage_records_costs_check
        CHECK (total_cost_micros >= 0 AND final_cost_micros >= total_cost_micros)
);
CREATE INDEX idx_usage_workspace_created ON usage_records(workspace_id, created_at);
CREATE INDEX idx_usage_billing_period ON usage_records(billing_period_id);
CREATE INDEX idx_usage_call ON usage_records(call_id);

-- Spending limits and payment details. usage_limit_monthly_micros NULL means no limit.
CREATE TABLE workspace_billing_settings (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    usage_limit_monthly_micros BIGINT,
    alert_threshold_pct INTEGER NOT NULL DEFAULT 80,
    auto_pause_on_limit INTEGER NOT NULL DEFAULT 0,
    -- So the threshold alert goes out once per period, not on every usage record.
    last_alert_at BIGINT,
    stripe_customer_id TEXT,
    payment_method_id TEXT,
    payment_method_last4 TEXT,
    billing_email TEXT,
    tax_rate_bps INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    CONSTRAINT workspace_billing_settings_usage_limit_check CHECK (usage_limit_monthly_micros >= 0),
    CONSTRAINT workspace_billing_settings_alert_threshold_pct_check
        CHECK (alert_threshold_pct >= 1 AND alert_threshold_pct <= 100),
    CONSTRAINT workspace_billing_settings_auto_pause_on_limit_check CHECK (auto_pause_on_limit IN (0, 1)),
    CONSTRAINT workspace_billing_settings_tax_rate_bps_check CHECK (tax_rate_bps >= 0 AND tax_rate_bps <= 10000)
);

-- Prepaid balance (voice-ai-platform-mvp §5.1). It may go below zero: a call in progress
-- is not cut off mid-sentence because its last minute overdrew the balance.
CREATE TABLE workspace_balances (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    balance_micros BIGINT NOT NULL DEFAULT 0,
    low_balance_alert_micros BIGINT NOT NULL DEFAULT 10000000,
    updated_at BIGINT NOT NULL,
    CONSTRAINT workspace_balances_low_balance_alert_check CHECK (low_balance_alert_micros >= 0)
);

-- The balance's ledger. amount_micros is signed (credits positive, debits negative) so
-- balance_after_micros is always the previous balance plus amount_micros.
CREATE TABLE balance_transactions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    balance_after_micros BIGINT NOT NULL,
    reference_type TEXT,
    reference_id TEXT,
    description TEXT,
    idempotency_key TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    CONSTRAINT balance_transactions_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT balance_transactions_type_check CHECK (type IN ('credit', 'debit')),
    CONSTRAINT balance_transactions_category_check CHECK (category IN ('call', 'sms', 'email',
        'subscription', 'phone_number', 'top_up', 'refund', 'adjustment')),
    CONSTRAINT balance_transactions_sign_check CHECK ((type = 'credit' AND amount_micros > 0)
        OR (type = 'debit' AND amount_micros < 0))
);
CREATE INDEX idx_balance_tx_workspace_created ON balance_transactions(workspace_id, created_at);
CREATE INDEX idx_balance_tx_reference ON balance_transactions(reference_type, reference_id);

-- Invoices. Statuses are Stripe's (open = sent and unpaid; overdue is open past due_at).
CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    billing_period_id TEXT REFERENCES billing_periods(id) ON DELETE SET NULL,
    invoice_number TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    subtotal_micros BIGINT NOT NULL DEFAULT 0,
    tax_rate_bps INTEGER NOT NULL DEFAULT 0,
    tax_micros BIGINT NOT NULL DEFAULT 0,
    total_micros BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'draft',
    due_at BIGINT,
    paid_at BIGINT,
    stripe_invoice_id TEXT,
    stripe_payment_intent_id TEXT,
    pdf_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT invoices_workspace_id_id_key UNIQUE (workspace_id, id),
    CONSTRAINT invoices_invoice_number_key UNIQUE (invoice_number),
    CONSTRAINT invoices_stripe_invoice_id_key UNIQUE (stripe_invoice_id),
    CONSTRAINT invoices_status_check
        CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    CONSTRAINT invoices_range_check CHECK (period_end > period_start),
    CONSTRAINT invoices_tax_rate_bps_check CHECK (tax_rate_bps >= 0 AND tax_rate_bps <= 10000),
    CONSTRAINT invoices_amounts_check CHECK (subtotal_micros >= 0 AND tax_micros >= 0
        AND total_micros = subtotal_micros + tax_micros)
);
CREATE INDEX idx_invoices_workspace_period ON invoices(workspace_id, period_start);
CREATE INDEX idx_invoices_status ON invoices(status);

-- Line items. quantity counts `unit` (minutes, messages, ...); amount_micros is what the
-- line charges, rounded by the app, so it is not re-derived from quantity x unit price.
CREATE TABLE invoice_items (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    invoice_id TEXT NOT NULL,
    description TEXT NOT NULL,
    resource_type TEXT,
    quantity BIGINT NOT NULL DEFAULT 1,
    unit TEXT,
    unit_price_micros BIGINT NOT NULL,
    amount_micros BIGINT NOT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (workspace_id, invoice_id) REFERENCES invoices(workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT invoice_items_quantity_check CHECK (quantity >= 0)
);
CREATE INDEX idx_invoice_items_invoice ON invoice_items(invoice_id, sort_order);

-- Stripe webhook events already handled: inserting the event id first makes processing
-- idempotent when Stripe redelivers.
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT
);

-- ---------------------------------------------------------------------------------------
-- Scheduling and notifications (voice-ai-platform-mvp §3-4)
-- ---------------------------------------------------------------------------------------

CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    call_id TEXT REFERENCES calls(id) ON DELETE SET NULL,
    agent_id TEXT REFERENCES voice_agents(id) ON DELETE SET NULL,
    guest_name TEXT,
    guest_phone TEXT,
    guest_email TEXT,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'scheduled',
    notes TEXT,
    cancellation_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT appointments_status_check
        CHECK (status IN ('scheduled', 'completed', 'cancelled', 'no_show')),
    CONSTRAINT appointments_range_check CHECK (end_at > start_at)
);
CREATE INDEX idx_appointments_workspace_start ON appointments(workspace_id, start_at);
CREATE INDEX idx_appointments_call ON appointments(call_id);
CREATE INDEX idx_appointments_agent ON appointments(agent_id);

-- Business hours in the workspace's timezone (workspaces.timezone). day_of_week 0 = Sunday
-- (as JavaScript's getDay and Postgres EXTRACT(DOW)); minutes from local midnight replace
-- TIME, which sqlx Any cannot read on SQLite.
CREATE TABLE availability_slots (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    day_of_week INTEGER NOT NULL,
    start_minute INTEGER NOT NULL,
    end_minute INTEGER NOT NULL,
    is_available INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT availability_slots_day_of_week_check CHECK (day_of_week >= 0 AND day_of_week <= 6),
    CONSTRAINT availability_slots_minutes_check
        CHECK (start_minute >= 0 AND end_minute <= 1440 AND end_minute > start_minute),
    CONSTRAINT availability_slots_is_available_check CHECK (is_available IN (0, 1))
);
CREATE INDEX idx_availability_workspace_day ON availability_slots(workspace_id, day_of_week);

-- Holidays and time off: a local calendar date 'YYYY-MM-DD' (DATE is not portable here).
CREATE TABLE blocked_dates (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    blocked_date TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    CONSTRAINT blocked_dates_workspace_date_key UNIQUE (workspace_id, blocked_date),
    CONSTRAINT blocked_dates_format_check CHECK (length(blocked_date) = 10
        AND substr(blocked_date, 5, 1) = '-' AND substr(blocked_date, 8, 1) = '-')
);

-- Email and SMS sent to callers (confirmations, reminders); cost_micros is what was
-- charged to the workspace's balance.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    appointment_id TEXT REFERENCES appointments(id) ON DELETE SET NULL,
    call_id TEXT REFERENCES calls(id) ON DELETE SET NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template TEXT,
    content TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    cost_micros BIGINT NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    error_message TEXT,
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    CONSTRAINT notifications_channel_check CHECK (channel IN ('email', 'sms')),
    CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'sent', 'failed')),
    CONSTRAINT notifications_cost_check CHECK (cost_micros >= 0)
);
CREATE INDEX idx_notifications_workspace_created ON notifications(workspace_id, created_at);
CREATE INDEX idx_notifications_status ON notifications(status, created_at);
CREATE INDEX idx_notifications_appointment ON notifications(appointment_id);
CREATE INDEX idx_notifications_call ON notifications(call_id);

-- ---------------------------------------------------------------------------------------
-- Customer webhooks (voice-ai-platform-mvp §6)
-- ---------------------------------------------------------------------------------------

-- events is a JSON array of event names ("call.completed", ...). The secret signs each
-- delivery (HMAC-SHA256) and is sealed at rest.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT,
    secret_encrypted TEXT NOT NULL,
    events TEXT NOT NULL DEFAULT '[]',
    is_active INTEGER NOT NULL DEFAULT 1,
    -- Failed deliveries in a row, so a dead endpoint can be switched off.
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT webhook_endpoints_workspace_id_id_key UNIQUE (workspace_id, id),
    CONSTRAINT webhook_endpoints_workspace_url_key UNIQUE (workspace_id, url),
    CONSTRAINT webhook_endpoints_is_active_check CHECK (is_active IN (0, 1)),
    CONSTRAINT webhook_endpoints_consecutive_failures_check CHECK (consecutive_failures >= 0)
);

-- One row per event per endpoint; the id doubles as the receiver's idempotency key.
-- The dispatcher polls (status, next_attempt_at).
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_response_code INTEGER,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    FOREIGN KEY (workspace_id, endpoint_id) REFERENCES webhook_endpoints(workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_attempts_check CHECK (attempts >= 0)
);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);
CREATE INDEX idx_webhook_deliveries_workspace ON webhook_deliveries(workspace_id, created_at);
