-- Vocalized schema, part 1: people, tenants, agents and numbers.
-- One schema, two dialects (this file and migrations/sqlite/0001_core.sql say the same
-- thing). Conventions (ARCHITECTURE.md §6): TEXT ids, BIGINT epoch milliseconds (UTC),
-- BIGINT micro-dollars, INTEGER 0/1 booleans, TEXT JSON, named CHECK constraints for enums,
-- workspace_id on every tenant-owned row.

-- Platform admins (seed §1.1): the team that runs the platform.
CREATE TABLE platform_admins (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'admin',
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login BIGINT,
    CONSTRAINT platform_admins_email_key UNIQUE (email),
    CONSTRAINT platform_admins_role_check CHECK (role IN ('super_admin', 'admin', 'support')),
    CONSTRAINT platform_admins_is_active_check CHECK (is_active IN (0, 1))
);

-- Audit trail of every admin mutation.
CREATE TABLE admin_activity_logs (
    id TEXT PRIMARY KEY,
    admin_id TEXT NOT NULL REFERENCES platform_admins(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    details TEXT,
    ip_address TEXT,
    timestamp BIGINT NOT NULL
);
CREATE INDEX idx_admin_logs_admin ON admin_activity_logs(admin_id);
CREATE INDEX idx_admin_logs_timestamp ON admin_activity_logs(timestamp);
CREATE INDEX idx_admin_logs_resource ON admin_activity_logs(resource_type, resource_id);

-- Client users (seed §1.2): the businesses' people.
CREATE TABLE client_users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    email_verified INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login BIGINT,
    CONSTRAINT client_users_email_key UNIQUE (email),
    CONSTRAINT client_users_is_active_check CHECK (is_active IN (0, 1)),
    CONSTRAINT client_users_email_verified_check CHECK (email_verified IN (0, 1))
);

-- Refresh tokens: stored as SHA-256 hashes, rotated on use, revoked by logout.
-- subject_type tells a client user's token from a platform admin's. session_id ties the
-- rotations of one login together: logout (or a replayed, already-rotated token) revokes
-- the whole session, and access tokens carry it so they die with it.
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    replaced_by TEXT,
    created_at BIGINT NOT NULL,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT refresh_tokens_subject_type_check CHECK (subject_type IN ('user', 'admin'))
);
CREATE INDEX idx_refresh_subject ON refresh_tokens(subject_type, subject_id);
CREATE INDEX idx_refresh_session ON refresh_tokens(session_id);

-- Single-use, expiring email verification and password reset tokens (hashed).
CREATE TABLE user_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES client_users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    CONSTRAINT user_tokens_purpose_check CHECK (purpose IN ('verify_email', 'reset_password'))
);
CREATE INDEX idx_user_tokens_user ON user_tokens(user_id, purpose);

-- Outgoing email: written here (and logged) unless SMTP is configured.
CREATE TABLE email_outbox (
    id TEXT PRIMARY KEY,
    to_email TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    template TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    CONSTRAINT email_outbox_status_check CHECK (status IN ('pending', 'sent', 'failed'))
);
CREATE INDEX idx_email_outbox_status ON email_outbox(status, created_at);

-- Subscription tiers (seed §1.11), money in micro-dollars.
CREATE TABLE subscription_tiers (
    tier_name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    monthly_fee_micros BIGINT NOT NULL,
    included_minutes INTEGER,
    price_per_minute_micros BIGINT NOT NULL,
    max_agents INTEGER,
    max_phone_numbers INTEGER,
    features TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT subscription_tiers_is_active_check CHECK (is_active IN (0, 1))
);
INSERT INTO subscription_tiers VALUES
('starter', 'Starter', 29990000, 100, 50000, 1, 1, '["basic_analytics"]', 1, 1764547200000, 1764547200000),
('professional', 'Professional', 99990000, 500, 40000, 5, 3, '["basic_analytics","advanced_analytics","priority_support"]', 1, 1764547200000, 1764547200000),
('enterprise', 'Enterprise', 299990000, 2000, 30000, 999, 10, '["basic_analytics","advanced_analytics","priority_support","custom_integrations","dedicated_account_manager"]', 1, 1764547200000, 1764547200000);

-- Workspaces (seed §1.3): the tenants. call_enabled is the company-level calling switch
-- (call-feature §8 "callEnabled"); only platform admins change it.
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    industry TEXT,
    owner_id TEXT NOT NULL REFERENCES client_users(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'active',
    subscription_tier TEXT NOT NULL DEFAULT 'starter' REFERENCES subscription_tiers(tier_name),
    trial_ends_at BIGINT,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    call_enabled INTEGER NOT NULL DEFAULT 1,
    suspended_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT workspaces_status_check CHECK (status IN ('active', 'trial', 'suspended', 'cancelled')),
    CONSTRAINT workspaces_call_enabled_check CHECK (call_enabled IN (0, 1))
);
CREATE INDEX idx_workspace_owner ON workspaces(owner_id);
CREATE INDEX idx_workspace_status ON workspaces(status);

CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES client_users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    invited_by TEXT,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id),
    CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'member', 'viewer'))
);
CREATE INDEX idx_member_workspace ON workspace_members(workspace_id);
CREATE INDEX idx_member_user ON workspace_members(user_id);

-- Invitations by token (hashed); accepted by the invitee after signing up or logging in.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    invited_by TEXT REFERENCES client_users(id) ON DELETE SET NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    CONSTRAINT invitations_token_hash_key UNIQUE (token_hash),
    CONSTRAINT invitations_role_check CHECK (role IN ('admin', 'member', 'viewer'))
);
CREATE INDEX idx_invitations_workspace ON invitations(workspace_id);

-- Phone numbers (seed §1.4), E.164, unique across the platform.
CREATE TABLE phone_numbers (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    phone_number TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT 'twilio',
    provider_sid TEXT,
    friendly_name TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT phone_numbers_phone_number_key UNIQUE (phone_number),
    CONSTRAINT phone_numbers_status_check CHECK (status IN ('active', 'inactive', 'porting')),
    CONSTRAINT phone_numbers_provider_check CHECK (provider IN ('twilio', 'telnyx'))
);
CREATE INDEX idx_phone_workspace ON phone_numbers(workspace_id);

-- Agent templates (seed §1.5).
CREATE TABLE agent_templates (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    industry TEXT NOT NULL,
    description TEXT,
    default_config TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 1,
    created_by_admin_id TEXT REFERENCES platform_admins(id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT agent_templates_is_public_check CHECK (is_public IN (0, 1))
);
CREATE INDEX idx_template_industry ON agent_templates(industry);
CREATE INDEX idx_template_public ON agent_templates(is_public);

-- Voice agents (seed §1.6) with capability flags (call-feature §2) and the widget's
-- rotatable public key. config holds instructions, tools and the call settings (§9).
CREATE TABLE voice_agents (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    phone_number_id TEXT REFERENCES phone_numbers(id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    template_id TEXT REFERENCES agent_templates(id) ON DELETE SET NULL,
    config TEXT NOT NULL,
    voice_provider TEXT NOT NULL,
    voice_config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'draft',
    enabled_chat INTEGER NOT NULL DEFAULT 1,
    enabled_call INTEGER NOT NULL DEFAULT 1,
    widget_public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    activated_at BIGINT,
    CONSTRAINT voice_agents_status_check CHECK (status IN ('draft', 'testing', 'live', 'paused')),
    CONSTRAINT voice_agents_capability_check CHECK (enabled_chat = 1 OR enabled_call = 1),
    CONSTRAINT voice_agents_enabled_chat_check CHECK (enabled_chat IN (0, 1)),
    CONSTRAINT voice_agents_enabled_call_check CHECK (enabled_call IN (0, 1)),
    CONSTRAINT voice_agents_widget_public_key_key UNIQUE (widget_public_key)
);
CREATE INDEX idx_agent_workspace ON voice_agents(workspace_id);
-- A number routes to one agent at most.
CREATE UNIQUE INDEX idx_agent_phone ON voice_agents(phone_number_id) WHERE phone_number_id IS NOT NULL;
CREATE INDEX idx_agent_status ON voice_agents(status);

-- Platform settings (seed §1.11). Values are JSON text.
CREATE TABLE platform_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    description TEXT,
    updated_by_admin_id TEXT REFERENCES platform_admins(id) ON DELETE SET NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO platform_settings (key, value, description, updated_at) VALUES
('default_subscription_tier', '"starter"', 'Tier given to new workspaces', 1764547200000),
('trial_duration_days', '14', 'Length of a trial in days', 1764547200000),
('pricing_markup_bps', '2000', 'Platform markup on provider cost, in basis points (2000 = 20%)', 1764547200000),
('default_call_enabled', 'true', 'Whether new workspaces may take calls (the calling switch''s default)', 1764547200000);
