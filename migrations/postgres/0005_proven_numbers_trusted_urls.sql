-- Phone numbers prove they belong to the workspace before they take calls (security
-- review H2). A call to a number on the platform's Twilio account routes only once a
-- platform admin has verified the number (`POST /api/v1/admin/phone-numbers/{id}/verify`);
-- a webhook signed by the workspace's own Twilio integration account proves itself.
-- Numbers registered before this migration were never proven and start unverified.
ALTER TABLE phone_numbers ADD COLUMN verified_at BIGINT;
ALTER TABLE phone_numbers ADD COLUMN verified_by_admin_id TEXT REFERENCES platform_admins(id) ON DELETE SET NULL;

-- A platform provider's base_url receives every key routed to it (security review M2).
-- Only a super_admin sets one, and a workspace's own key goes to a base_url only when a
-- super_admin set it (1). URLs stored before this migration are not trusted with
-- workspaces' keys until a super_admin sets them again.
ALTER TABLE platform_provider_configs ADD COLUMN base_url_trusted INTEGER NOT NULL DEFAULT 0;
