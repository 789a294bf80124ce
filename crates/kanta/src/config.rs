//! Typed configuration. A TOML file (`--config`) with command-line and environment overrides;
//! unknown keys are an error, secrets never print.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A secret: its `Debug` prints nothing of it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The configuration file. Every key is optional; the command line wins over the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// The URL clients use to reach this service (token audience, links). Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// `postgres://…` or `sqlite://…`. Defaults to SQLite in the data directory.
    pub database: Option<Secret>,
    pub data_dir: Option<PathBuf>,
    /// The built-in test services and demo data.
    pub demo: Option<bool>,
    /// The medicines database (R-RX-3): files in the format of docs/medicines-database.md, one
    /// dated version each. Without them prescriptions are refused (503), unless `demo`, which
    /// loads the built-in demo dataset.
    pub medicines_files: Option<Vec<PathBuf>>,
    /// Hours a pharmacy's reservation of a prescription holds (default 72).
    pub reservation_hours: Option<u64>,
    /// The organisation that controls the Prescription Centre: review requests go to its queue
    /// (R-ACT-12). Default in the demo: `org-kanta-operator`.
    pub prescription_controller: Option<String>,
    /// Largest accepted request body in bytes (default 8 MiB).
    pub max_body_bytes: Option<usize>,
    /// Most entries in one transaction Bundle (default 5,000; more: 413).
    pub max_bundle_entries: Option<usize>,
    /// Most references in one resource (default 1,000; more: 422).
    pub max_references_per_resource: Option<usize>,
    /// Seconds a connection may take to send a request's headers (default 10).
    pub header_read_timeout_seconds: Option<u64>,
    /// How long a request may take to send its whole body (408 past it). Default 30.
    pub body_read_timeout_seconds: Option<u64>,
    /// Connections served at once; more wait in the listen backlog. Default 4096.
    pub max_connections: Option<usize>,
    /// Rows a search reads on past records the disclosure rule refuses (default 10,000)…
    pub search_scan_max: Option<usize>,
    /// …and for how long (default 2,000 ms); then its page ends with a `next` link.
    pub search_scan_deadline_ms: Option<u64>,
    /// Characters in one search parameter's value (default 256; more: 400). The query is audited.
    pub max_search_value: Option<usize>,
    /// Secret that signs access tokens; the same on every instance. Required unless `demo`.
    pub token_secret: Option<Secret>,
    /// The bearer token `/metrics` asks for (Prometheus `authorization: credentials`); without it
    /// only loopback peers read `/metrics`.
    pub metrics_token: Option<Secret>,
    pub log_format: Option<LogFormat>,
    /// The Ed25519 key (PKCS#8) that signs audit checkpoints. Default `<data_dir>/audit-signing-key.pk8`,
    /// generated on first start.
    pub audit_key_file: Option<PathBuf>,
    /// The name in signed checkpoints. Default `<host of public_url>/audit`.
    pub audit_name: Option<String>,
    /// A file (e.g. on another machine's mount) where each new checkpoint is published for a witness.
    pub audit_witness_file: Option<PathBuf>,
    /// A URL each new checkpoint is POSTed to (text/plain, the signed note) for an outside witness.
    pub audit_witness_url: Option<String>,
    /// Audit retention in days (at least 1096, three years, R-OPS-5): an hourly job empties older
    /// records, keeping their place in the tree. Unset: nothing is emptied.
    pub audit_retention_days: Option<u32>,
    /// Seconds between signed checkpoints while the log grows (default 1).
    pub audit_checkpoint_seconds: Option<u64>,
    /// The citizens' identity provider (OpenID Connect). Without it, `--demo` uses the built-in
    /// test identification service.
    pub identification: Option<IdentificationConfig>,
    /// Refused unless `--demo` (which turns the built-in test identification service on anyway):
    /// a stand-in never runs outside the demo.
    pub test_idp: Option<bool>,
    /// Portal sessions.
    pub session: Option<SessionConfig>,
    /// The Suomi.fi mandates Web API (acting for another adult, the guardians' mutual
    /// authorisation). Without it, `--demo` uses the built-in mandate registry.
    pub mandates: Option<MandatesConfig>,
    /// Refused unless `--demo` (which turns the built-in mandate registry on anyway): a stand-in
    /// never runs outside the demo.
    pub test_mandates: Option<bool>,
    /// While pages are viewed for another adult, re-check the mandate at least this often
    /// (default 120 s); a switch and every action re-check at once (R-PROXY-3).
    pub mandate_recheck_seconds: Option<u64>,
}

/// The mandate service (R-PROXY): where it is, the e-service's credentials, and how often an
/// answer is re-checked while pages are viewed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandatesConfig {
    /// The API base, e.g. `https://asiointivaltuustarkastus.suomi.fi`.
    pub base_url: String,
    /// The selection page's base for browsers (default: `base_url`).
    pub browser_url: Option<String>,
    pub client_id: String,
    pub api_key: Secret,
    pub oauth_password: Secret,
    /// The key of the system-level REST check (issued separately).
    pub rest_api_key: Secret,
    /// Give up on the service after this long (default 5 s).
    pub timeout_seconds: Option<u64>,
}

/// An OpenID provider for citizen identification (R-AUTH-1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentificationConfig {
    pub issuer: String,
    pub client_id: String,
    /// For `client_secret_basic` only (providers that do not require the FTN profile).
    pub client_secret: Option<Secret>,
    /// `private_key_jwt` (default when signing keys are given) or `client_secret_basic`.
    pub client_auth: Option<String>,
    /// The FTN profile (Traficom 213/2023 S): our RSA signing keys (PEM files, 2048 bits or more),
    /// for client assertions and request objects. All are published; one signs.
    pub signing_keys: Option<Vec<PathBuf>>,
    /// The `kid` (RFC 7638 thumbprint, as `/auth/jwks` shows it) of the signing key in use;
    /// default the first. Rotation: publish the new key, register, then switch this.
    pub signing_key_id: Option<String>,
    /// RS256 (default) or PS256.
    pub signing_alg: Option<String>,
    /// Our RSA encryption keys (PEM files): ID tokens and userinfo responses encrypted to any of
    /// them are decrypted.
    pub encryption_keys: Option<Vec<PathBuf>>,
    /// RSA-OAEP-256 (default) or RSA-OAEP.
    pub encryption_alg: Option<String>,
    /// A256GCM (default), A128GCM, A256CBC-HS512 or A128CBC-HS256.
    pub encryption_enc: Option<String>,
    /// Refuse plain ID tokens and userinfo (default: true when encryption keys are given).
    pub require_encryption: Option<bool>,
    /// `signed` (a request object by value, default with signing keys), `pushed` (PAR) or `plain`.
    pub authorization_request: Option<String>,
    /// "Continue" asks the provider with `prompt=none` whether its session lives (default true).
    pub check_provider_session: Option<bool>,
    /// Default `openid profile hetu`.
    pub scopes: Option<String>,
    /// The claim carrying the HETU (default `urn:oid:1.2.246.21`).
    pub hetu_claim: Option<String>,
    /// The claim naming the level of assurance (default `acr`) and the accepted values (default
    /// eIDAS substantial and high).
    pub loa_claim: Option<String>,
    pub loa_accepted: Option<Vec<String>>,
    pub acr_values: Option<String>,
}

/// Session limits (R-AUTH-5); seconds.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Idle timeout (default 1800).
    pub idle_seconds: Option<u64>,
    /// Absolute lifetime (default 43200).
    pub absolute_seconds: Option<u64>,
    /// How long before the idle timeout the warning shows (default 120).
    pub warn_seconds: Option<u64>,
    /// Logins and callbacks per client address per minute, per instance (default 30).
    pub login_rate_per_minute: Option<u32>,
    /// Behind a load balancer: the header carrying the client's address (e.g. `x-forwarded-for`),
    /// so that rate limits count clients, not the balancer.
    pub client_ip_header: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }
}

/// The default SQLite URL inside a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("kanta.db").display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_fail_loudly_and_secrets_do_not_print() {
        let err = toml::from_str::<FileConfig>("listen = '127.0.0.1:1'\nlisten_port = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let c: FileConfig = toml::from_str(
            "token_secret = 'hunter2'\ndatabase = 'postgres://u:pw@h/db'\nlog_format = 'json'",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@"),
            "{shown}"
        );
        assert_eq!(c.log_format, Some(LogFormat::Json));
    }
}
