-- The demo CRM's external contacts gain the Apple Messages for Business id that Genesys keeps for
-- a contact (its opaque id), so that the demo data holds identifiers of every search type,
-- APPLE_MESSAGES included, and an erasure, export or update of such a subject finds its contact.
-- Matched as every other social handle is (src/catalog/sql.rs): trimmed, without a leading `@`,
-- case-folded.

ALTER TABLE demo.external_contacts ADD COLUMN apple_opaque_id text;

CREATE INDEX external_contacts_match_apple_messages
    ON demo.external_contacts (org_id, lower(btrim(ltrim(btrim(apple_opaque_id), '@'))));
