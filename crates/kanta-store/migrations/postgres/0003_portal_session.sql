-- Citizen portal sessions (R-AUTH-4, R-AUTH-5) and logins under way. Server-side so that any
-- instance serves any session. The cookie holds a 128-bit random id; only its SHA-256 is stored,
-- so a copy of this table does not hand out live sessions.
--
-- Distribution (Citus): portal_session is keyed by id_hash, not by patient, and is small and
-- short-lived; it stays a local (undistributed) table on the coordinator, or is distributed by
-- id_hash. It carries patient_key so that the citizen's own audit view can name their sessions.
CREATE TABLE portal_session (
    id_hash         TEXT PRIMARY KEY,
    patient_key     BIGINT NOT NULL,
    hetu            TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    acting_for      BIGINT,
    csrf_token      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_active_at  BIGINT NOT NULL,
    absolute_expiry BIGINT NOT NULL,
    confirmed       BOOLEAN NOT NULL,
    idp_issuer      TEXT NOT NULL,
    idp_sub         TEXT NOT NULL,
    idp_sid         TEXT,
    id_token        TEXT
);
CREATE INDEX portal_session_by_idp_sid ON portal_session (idp_issuer, idp_sid);
CREATE INDEX portal_session_by_idp_sub ON portal_session (idp_issuer, idp_sub);

-- An authorisation request sent to the identity provider and not yet answered. Taken (deleted)
-- exactly once by the callback; state is stored hashed.
CREATE TABLE portal_login (
    state_hash    TEXT PRIMARY KEY,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    lang          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
