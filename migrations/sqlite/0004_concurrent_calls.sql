-- How many calls a workspace may have at once on a node, phone and browser together
-- (issue 19, H1): every call holds a provider session the workspace or the platform pays
-- for, and a widget's public key lets anyone start one. NULL is no cap (enterprise, whose
-- contracts set their own). New tiers get 25.
ALTER TABLE subscription_tiers ADD COLUMN max_concurrent_calls INTEGER DEFAULT 25
    CONSTRAINT subscription_tiers_max_concurrent_calls_check
    CHECK (max_concurrent_calls IS NULL OR max_concurrent_calls >= 0);
UPDATE subscription_tiers SET max_concurrent_calls = 25 WHERE tier_name = 'starter';
UPDATE subscription_tiers SET max_concurrent_calls = 100 WHERE tier_name = 'professional';
UPDATE subscription_tiers SET max_concurrent_calls = NULL WHERE tier_name = 'enterprise';
