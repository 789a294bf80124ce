-- The client register as the access decision reads it on every request: whether a client may
-- still be used (a disabled client's tokens stop working at once, not when they expire), and the
-- SMART scopes it is registered for (a token's grant is the intersection of what it asks for and
-- these). Existing clients keep what they had: enabled, every type and interaction their roles allow.
ALTER TABLE api_client ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE api_client ADD COLUMN scopes TEXT NOT NULL DEFAULT 'system/*.cruds';
