-- A resource's body is stored as the JSON text the server wrote, which is the text every read
-- returns (issue 15). jsonb made PostgreSQL parse each body on write and print it again on every
-- read, and no query looks inside a body: search uses the token and date columns. Bodies stored
-- before this migration keep jsonb's key order; that is still the same JSON.
ALTER TABLE resource ALTER COLUMN body TYPE TEXT USING body::text;
ALTER TABLE resource_version ALTER COLUMN body TYPE TEXT USING body::text;
ALTER TABLE shared_resource ALTER COLUMN body TYPE TEXT USING body::text;
ALTER TABLE shared_resource_version ALTER COLUMN body TYPE TEXT USING body::text;
