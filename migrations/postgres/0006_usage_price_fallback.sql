-- Usage of a model the catalogue has no row for (a dated snapshot, a model added at the
-- provider before an admin priced it) is priced at the provider's highest active
-- catalogue price for each unit, never at zero, and flagged here so an admin can add the
-- model's real price. 1 = priced by that fallback; 0 = priced from the model's own row.
ALTER TABLE usage_records ADD COLUMN price_fallback INTEGER NOT NULL DEFAULT 0
    CONSTRAINT usage_records_price_fallback_check CHECK (price_fallback IN (0, 1));
-- Admins look for the few flagged rows; the index holds only those.
CREATE INDEX idx_usage_price_fallback ON usage_records(created_at) WHERE price_fallback = 1;
