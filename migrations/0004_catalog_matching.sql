-- What the data-service catalog needs from PostgreSQL: the normalizations it compares
-- identifiers with, keyed hashes for anonymization, and expression indexes so that finding a
-- subject's rows is an index lookup in tables of millions of rows.
--
-- The index expressions must be written exactly as the catalog's generated SQL writes them
-- (src/catalog/sql.rs), or the planner cannot use them: fold and digits go through the
-- functions below, email addresses are `lower(btrim(col))`, social handles
-- `lower(btrim(ltrim(btrim(col), '@')))`, external ids `btrim(col)`, record ids `(col::text)`.

CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Names and addresses, folded as `fold_text` (src/index/normalize.rs) folds them: accents off,
-- lower case, white space collapsed. `unaccent` is only STABLE because its dictionary could be
-- changed; naming the dictionary makes the result depend on the argument alone, which is what
-- an index needs. Names are schema-qualified so that the function behaves the same whatever
-- the caller's search_path (restores run with an empty one).
CREATE FUNCTION gdpr_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.btrim(pg_catalog.regexp_replace(
        pg_catalog.lower(public.unaccent('public.unaccent'::regdictionary, value)),
        '[[:space:][:cntrl:]]+', ' ', 'g'));

-- The digits of a phone number as written; the catalog compares them with the national and
-- international spellings of the subject's numbers.
CREATE FUNCTION gdpr_digits(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.regexp_replace(value, '\D', '', 'g');

-- Directory.
CREATE INDEX directory_users_match_name ON demo.directory_users (org_id, gdpr_fold(name));
CREATE INDEX directory_users_match_email ON demo.directory_users (org_id, lower(btrim(email)));
CREATE INDEX directory_users_match_phone ON demo.directory_users (org_id, gdpr_digits(phone));
CREATE INDEX directory_users_match_id ON demo.directory_users (org_id, (id::text));

-- External contacts.
CREATE INDEX external_contacts_match_name ON demo.external_contacts (org_id, gdpr_fold(name));
CREATE INDEX external_contacts_match_work_email
    ON demo.external_contacts (org_id, lower(btrim(work_email)));
CREATE INDEX external_contacts_match_personal_email
    ON demo.external_contacts (org_id, lower(btrim(personal_email)));
CREATE INDEX external_contacts_match_work_phone
    ON demo.external_contacts (org_id, gdpr_digits(work_phone));
CREATE INDEX external_contacts_match_cell_phone
    ON demo.external_contacts (org_id, gdpr_digits(cell_phone));
CREATE INDEX external_contacts_match_address
    ON demo.external_contacts (org_id, gdpr_fold(address));
CREATE INDEX external_contacts_match_twitter
    ON demo.external_contacts (org_id, lower(btrim(ltrim(btrim(twitter_handle), '@'))));
CREATE INDEX external_contacts_match_instagram
    ON demo.external_contacts (org_id, lower(btrim(ltrim(btrim(instagram_handle), '@'))));
CREATE INDEX external_contacts_match_facebook
    ON demo.external_contacts (org_id, lower(btrim(ltrim(btrim(facebook_id), '@'))));
CREATE INDEX external_contacts_match_whatsapp_phone
    ON demo.external_contacts (org_id, gdpr_digits(whatsapp_number));
CREATE INDEX external_contacts_match_whatsapp_handle
    ON demo.external_contacts (org_id, lower(btrim(ltrim(btrim(whatsapp_number), '@'))));
CREATE INDEX external_contacts_match_external_id
    ON demo.external_contacts (org_id, btrim(external_id));
CREATE INDEX external_contacts_match_id ON demo.external_contacts (org_id, (id::text));

-- Outbound dialer.
CREATE INDEX dialer_contacts_match_name ON demo.dialer_contacts (org_id, gdpr_fold(name));
CREATE INDEX dialer_contacts_match_phone ON demo.dialer_contacts (org_id, gdpr_digits(phone));
CREATE INDEX dialer_contacts_match_alt_phone
    ON demo.dialer_contacts (org_id, gdpr_digits(alt_phone));
CREATE INDEX dialer_contacts_match_email ON demo.dialer_contacts (org_id, lower(btrim(email)));
CREATE INDEX dialer_contacts_match_address ON demo.dialer_contacts (org_id, gdpr_fold(address));
CREATE INDEX dialer_contacts_match_id ON demo.dialer_contacts (org_id, (id::text));

-- Conversations: a participant's address is a phone number or an email address.
CREATE INDEX conversation_participants_match_name
    ON demo.conversation_participants (org_id, gdpr_fold(name));
CREATE INDEX conversation_participants_match_address_phone
    ON demo.conversation_participants (org_id, gdpr_digits(address));
CREATE INDEX conversation_participants_match_address_email
    ON demo.conversation_participants (org_id, lower(btrim(address)));
CREATE INDEX conversation_participants_match_user_id
    ON demo.conversation_participants (org_id, (user_id::text));

-- Attachments, by who uploaded them.
CREATE INDEX attachments_match_uploaded_by_email
    ON demo.attachments (org_id, lower(btrim(uploaded_by)));
CREATE INDEX attachments_match_uploaded_by_phone
    ON demo.attachments (org_id, gdpr_digits(uploaded_by));

-- Web journeys: visitors are found by cookie through their primary key (org_id, cookie_id).
CREATE INDEX journey_visitors_match_name ON demo.journey_visitors (org_id, gdpr_fold(name));
CREATE INDEX journey_visitors_match_email
    ON demo.journey_visitors (org_id, lower(btrim(email)));
CREATE INDEX journey_visitors_match_phone ON demo.journey_visitors (org_id, gdpr_digits(phone));

-- Consent records.
CREATE INDEX consent_records_match_email ON demo.consent_records (org_id, lower(btrim(email)));
CREATE INDEX consent_records_match_phone ON demo.consent_records (org_id, gdpr_digits(phone));
CREATE INDEX consent_records_match_cookie ON demo.consent_records (org_id, cookie_id);
