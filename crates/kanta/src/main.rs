//! `kanta`: the one binary of the Kanta platform.

/// Print a line to stdout; a closed pipe (`kanta demo people | head`) is not an error worth a panic.
macro_rules! emit {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// glibc's allocator spends a fifth of the request path in malloc/free under many small JSON
/// allocations across threads; mimalloc does not (measured with `perf` on `kanta bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod config;
mod demo;
mod seed;
mod witness;

use clap::{Parser, Subcommand};
use config::{FileConfig, LogFormat, Secret};
use kanta_store::Store;
use kanta_web::{AppState, Clock, WebConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kanta",
    version,
    about = "Kanta: an open national health data platform"
)]
struct Cli {
    /// Configuration file (TOML); the command line wins over it.
    #[arg(long, global = true, env = "KANTA_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: postgres://… or sqlite://…. Default: SQLite in the data directory.
    #[arg(
        long,
        global = true,
        env = "KANTA_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// Data directory (the SQLite database and demo secrets live here).
    #[arg(long, global = true, env = "KANTA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrations run first).
    Serve {
        /// Turn on the built-in test services and seed the demo population on first start.
        #[arg(long)]
        demo: bool,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
        /// The URL clients reach this service at (default http://<listen>).
        #[arg(long)]
        public_url: Option<String>,
    },
    /// Run database migrations and exit.
    Migrate {
        /// Then distribute the tables on Citus (the coordinator's URL): patient-scoped tables by
        /// patient, co-located; routing tables by their look-up key; reference tables replicated.
        /// Idempotent; refuses on a server without the Citus extension.
        #[arg(long)]
        citus: bool,
        /// Then grant this (existing) PostgreSQL role what the server needs and nothing more
        /// (`crates/kanta-store/sql/app-role.sql`); the server then runs as it.
        #[arg(long)]
        app_role: Option<String>,
    },
    /// The demo population and clients, as JSON lines.
    Demo {
        #[command(subcommand)]
        what: DemoWhat,
    },
    /// The population register.
    Population {
        #[command(subcommand)]
        what: PopulationWhat,
    },
    /// Benchmarks: ratios against the raw database doing the same work, as JSON lines.
    Bench(bench::BenchArgs),
    /// A consistent copy of the database while it serves: SQLite via VACUUM INTO, PostgreSQL via
    /// pg_dump (for point-in-time recovery use a base backup with WAL archiving; see the README).
    Backup {
        /// Where to write the copy.
        #[arg(long)]
        to: PathBuf,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        what: AuditWhat,
    },
    /// The client register: the systems that may call the API, their roles and scopes.
    Client {
        #[command(subcommand)]
        what: ClientWhat,
    },
    /// The medicines database (R-RX-3): files in the format of docs/medicines-database.md.
    Medicines {
        #[command(subcommand)]
        what: MedicinesWhat,
    },
}

#[derive(Subcommand)]
enum MedicinesWhat {
    /// Read one version file (the importer's checks) and tell what it holds; the built-in demo
    /// dataset when no file is given.
    Check { file: Option<PathBuf> },
}

#[derive(Subcommand)]
enum ClientWhat {
    /// Register (or update) a client that authenticates with private_key_jwt.
    Register {
        client_id: String,
        /// The organisation it acts for (its Organization id).
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// clinician, pharmacy, archivist or operator (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The SMART scopes it may be granted (space-separated system/… scopes).
        #[arg(long, default_value = "system/*.cruds")]
        scopes: String,
        /// Its public keys: a JWK Set file.
        #[arg(long)]
        jwks: PathBuf,
    },
    /// Stop a client: its live tokens are refused within seconds, it gets no new ones.
    Disable { client_id: String },
    /// Allow a disabled client again.
    Enable { client_id: String },
    /// A client's entry (without secrets), as JSON.
    Show { client_id: String },
}

#[derive(Subcommand)]
enum AuditWhat {
    /// Check the whole log against its signed checkpoints (and a witness's latest checkpoint);
    /// exits 1 and lists the problems if anything was changed, removed, reordered or inserted.
    Verify {
        /// A checkpoint note published to a witness (see audit_witness_file).
        #[arg(long)]
        witness: Option<PathBuf>,
    },
    /// Print an inclusion proof for the record at SEQ against the latest checkpoint.
    Prove { seq: u64 },
    /// Retention (R-OPS-5): empty the records older than DAYS (at least 1096, three years), keeping
    /// their place in the tree so the log still verifies. On PostgreSQL run it as a role with
    /// UPDATE on audit_record (the owner), not the server's role.
    Prune {
        #[arg(long)]
        retention_days: u32,
    },
}

#[derive(Subcommand)]
enum DemoWhat {
    /// Demo citizens: HETU, name, situation.
    People,
    /// Demo provider clients: id, secret, organisation.
    Clients,
}

#[derive(Subcommand)]
enum PopulationWhat {
    /// Import a population Bundle (docs/fhir-conventions.md) into the register.
    Import { file: PathBuf },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(p) => match FileConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kanta: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => FileConfig::default(),
    };
    // The benchmark runs a server in-process: its request log would drown the results.
    let quiet = matches!(cli.command, Command::Bench(_));
    init_logs(
        cli.log_format.or(file.log_format).unwrap_or_default(),
        quiet,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kanta: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, file)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kanta: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat, quiet: bool) {
    let default = if quiet { "warn" } else { "info,sqlx=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Settings resolved from the command line, the environment and the file.
struct Resolved {
    data_dir: PathBuf,
    database: Secret,
    audit_key_file: PathBuf,
    audit_name: Option<String>,
}

fn resolve(cli: &Cli, file: &FileConfig) -> Resolved {
    let data_dir = cli
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./data"));
    let database = cli
        .database
        .clone()
        .map(Secret::new)
        .or(file.database.clone())
        .unwrap_or_else(|| Secret::new(config::sqlite_url(&data_dir)));
    let audit_key_file = file
        .audit_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("audit-signing-key.pk8"));
    Resolved {
        data_dir,
        database,
        audit_key_file,
        audit_name: file.audit_name.clone(),
    }
}

/// The audit signing key and its name in checkpoints: read, or made on first start and kept in the
/// data directory (back both up with the database). The name is fixed when the key is made (from
/// `audit_name`, or the public host without its port) so that every checkpoint stays verifiable.
fn audit_signer(r: &Resolved, public_url: &str) -> Result<kanta_store::audit::Signer, String> {
    let name_file = r.audit_key_file.with_extension("name");
    let name = match (&r.audit_name, std::fs::read_to_string(&name_file)) {
        (Some(n), _) => n.clone(),
        (None, Ok(n)) if !n.trim().is_empty() => n.trim().to_string(),
        _ => {
            let host = public_url
                .split("://")
                .nth(1)
                .unwrap_or(public_url)
                .split(['/', ':'])
                .next()
                .unwrap_or("kanta");
            format!("{host}/audit")
        }
    };
    if let Some(dir) = r.audit_key_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let key = match std::fs::read(&r.audit_key_file) {
        Ok(k) => k,
        Err(_) => {
            let k = kanta_store::audit::Signer::generate_pkcs8()?;
            write_private(&r.audit_key_file, &k)
                .map_err(|e| format!("cannot write {}: {e}", r.audit_key_file.display()))?;
            tracing::warn!(path = %r.audit_key_file.display(), "generated a new audit signing key; back it up");
            k
        }
    };
    std::fs::write(&name_file, &name)
        .map_err(|e| format!("cannot write {}: {e}", name_file.display()))?;
    kanta_store::audit::Signer::from_pkcs8(&name, &key)
}

/// The Prescription Centre: the medicines database from the configured files (or, in the demo, the
/// built-in dataset), the reservation time and the controller.
fn centre_setup(
    file: &FileConfig,
    demo: bool,
) -> Result<Option<kanta_store::centre::Centre>, String> {
    let texts: Vec<(String, String)> = match &file.medicines_files {
        Some(paths) => paths
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| (p.display().to_string(), t))
                    .map_err(|e| format!("reading the medicines database {}: {e}", p.display()))
            })
            .collect::<Result<_, String>>()?,
        None if demo => vec![("the demo dataset".into(), demo::MEDICINES.to_string())],
        None => {
            tracing::warn!("no medicines database (medicines_files): prescriptions are refused");
            return Ok(None);
        }
    };
    let mut versions = vec![];
    for (name, text) in texts {
        versions.push(
            kanta_domain::medicines::parse(&text)
                .map_err(|e| format!("the medicines database {name}: {e}"))?,
        );
    }
    let controller = file
        .prescription_controller
        .clone()
        .or_else(|| demo.then(|| "org-kanta-operator".to_string()));
    Ok(Some(kanta_store::centre::Centre {
        medicines: kanta_domain::medicines::Database::new(versions),
        reservation_ms: file
            .reservation_hours
            .map_or(kanta_store::centre::DEFAULT_RESERVATION_MS, |h| {
                i64::try_from(h.saturating_mul(3_600_000)).unwrap_or(i64::MAX)
            }),
        controller,
    }))
}

/// The citizen portal: the identity provider from the configuration, or, in the demo and with none
/// configured, the built-in test identification service (`test_idp = true` without `--demo` is
/// refused).
fn portal_setup(
    store: &Arc<dyn Store>,
    file: &FileConfig,
    public_url: &str,
    demo: bool,
) -> Result<kanta_web::portal::Portal, String> {
    use kanta_web::portal::jose::RpKeys;
    use kanta_web::portal::oidc::{OidcClient, OidcConfig, RequestMode};
    use kanta_web::portal::test_idp::{TestIdp, TestPerson};
    // Every stand-in only with --demo (issue 29): a flag that would turn one on in any other run
    // stops the server rather than letting anyone log in as anyone, or record mandates.
    for (flag, on, what) in [
        (
            "test_idp",
            file.test_idp,
            "the built-in test identification service",
        ),
        (
            "test_mandates",
            file.test_mandates,
            "the built-in mandate registry",
        ),
    ] {
        if on == Some(true) && !demo {
            return Err(format!(
                "{flag} = true: {what} is a stand-in that runs only with --demo; configure the real service, or run the demo"
            ));
        }
    }
    let mut portal = kanta_web::portal::Portal::new(store.clone(), public_url);
    let s = file.session.clone().unwrap_or_default();
    let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
    portal.policy.idle = secs(s.idle_seconds, 1800);
    portal.policy.absolute = secs(s.absolute_seconds, 43_200);
    portal.policy.warn_before = secs(s.warn_seconds, 120);
    if portal.policy.idle.is_zero() || portal.policy.absolute < portal.policy.idle {
        return Err(
            "session: idle_seconds must be > 0 and absolute_seconds >= idle_seconds".into(),
        );
    }
    portal.client_ip_header = s.client_ip_header.clone();
    if let Some(n) = s.login_rate_per_minute {
        portal.limiter = Arc::new(kanta_web::portal::RateLimiter::new(n));
    }
    match (&file.identification, demo) {
        (Some(c), _) => {
            let oc = identification_config(c, public_url)?;
            portal.identification = Some(Arc::new(OidcClient::new(oc)));
        }
        (None, true) => {
            let today = Clock::System.now().date();
            let people = demo::people(today)
                .into_iter()
                .map(|p| TestPerson {
                    hetu: p.hetu,
                    given: p.given,
                    family: p.family,
                    situation: p.situation,
                })
                .collect();
            // The demo speaks the FTN profile too: keys of its own for this process's life.
            let keys = Arc::new(RpKeys::generate()?);
            let idp = TestIdp::new(public_url, people, &keys.public_jwks())?;
            let oc = OidcConfig::new(&idp.issuer, &idp.client_id, "", public_url)
                .ftn(keys, RequestMode::Signed);
            oc.check()?;
            portal.identification = Some(Arc::new(OidcClient::new(oc)));
            portal.test_idp = Some(Arc::new(idp));
            tracing::warn!(
                "the built-in TEST identification service is on: never use this in production"
            );
        }
        (None, false) => {
            tracing::warn!("no identification configured: citizens cannot log in");
        }
    }
    mandates_setup(&mut portal, file, public_url, demo)?;
    Ok(portal)
}

/// The relying party's settings from `[identification]`: the provider, the attributes, and the
/// FTN profile (keys read from their files, algorithms checked) when keys are given.
fn identification_config(
    c: &config::IdentificationConfig,
    public_url: &str,
) -> Result<kanta_web::portal::oidc::OidcConfig, String> {
    use kanta_web::portal::jose::{KeySpec, RpKeys};
    use kanta_web::portal::oidc::{ClientAuth, OidcConfig, RequestMode};
    let secret = c.client_secret.as_ref().map(|s| s.expose()).unwrap_or("");
    let mut oc = OidcConfig::new(&c.issuer, &c.client_id, secret, public_url);
    if let Some(v) = &c.scopes {
        oc.scopes = v.clone();
    }
    if let Some(v) = &c.hetu_claim {
        oc.hetu_claim = v.clone();
    }
    if let Some(v) = &c.loa_claim {
        oc.loa_claim = v.clone();
    }
    if let Some(v) = &c.loa_accepted {
        oc.loa_accepted = v.clone();
    }
    if let Some(v) = &c.acr_values {
        oc.acr_values = Some(v.clone());
    }
    let read = |paths: &Option<Vec<PathBuf>>| -> Result<Vec<Vec<u8>>, String> {
        paths
            .iter()
            .flatten()
            .map(|p| {
                std::fs::read(p).map_err(|e| format!("identification key {}: {e}", p.display()))
            })
            .collect()
    };
    let (signing, decryption) = (read(&c.signing_keys)?, read(&c.encryption_keys)?);
    if !signing.is_empty() || !decryption.is_empty() {
        let keys = RpKeys::new(&KeySpec {
            signing_pems: &signing,
            active_kid: c.signing_key_id.as_deref(),
            decryption_pems: &decryption,
            sign_alg: c.signing_alg.as_deref().unwrap_or("RS256"),
            enc_alg: c.encryption_alg.as_deref().unwrap_or("RSA-OAEP-256"),
            enc: c.encryption_enc.as_deref().unwrap_or("A256GCM"),
        })
        .map_err(|e| format!("identification: {e}"))?;
        let mode = if keys.can_sign() {
            RequestMode::Signed
        } else {
            RequestMode::Plain
        };
        oc.require_encryption = keys.can_decrypt();
        if keys.can_sign() {
            oc.client_auth = ClientAuth::PrivateKeyJwt;
        }
        oc.request_mode = mode;
        oc.keys = Some(Arc::new(keys));
    }
    match c.client_auth.as_deref() {
        None => {}
        Some("private_key_jwt") => oc.client_auth = ClientAuth::PrivateKeyJwt,
        Some("client_secret_basic") => oc.client_auth = ClientAuth::ClientSecretBasic,
        Some(other) => {
            return Err(format!(
                "identification: client_auth {other} (private_key_jwt or client_secret_basic)"
            ))
        }
    }
    match c.authorization_request.as_deref() {
        None => {}
        Some("signed") => oc.request_mode = RequestMode::Signed,
        Some("pushed") => oc.request_mode = RequestMode::Pushed,
        Some("plain") => oc.request_mode = RequestMode::Plain,
        Some(other) => {
            return Err(format!(
                "identification: authorization_request {other} (signed, pushed or plain)"
            ))
        }
    }
    if let Some(v) = c.require_encryption {
        oc.require_encryption = v;
    }
    if let Some(v) = c.check_provider_session {
        oc.check_provider_session = v;
    }
    oc.check().map_err(|e| format!("identification: {e}"))?;
    Ok(oc)
}

/// The mandate service (R-PROXY): the configured Suomi.fi mandates Web API, or, in the demo and
/// with none configured, the built-in registry seeded with the demo's mandates, spoken to over
/// HTTP by the same client.
fn mandates_setup(
    portal: &mut kanta_web::portal::Portal,
    file: &FileConfig,
    public_url: &str,
    demo: bool,
) -> Result<(), String> {
    use kanta_domain::acting::{GivenAt, GuardianAuthorisation, Mandate, HEALTH_CARE_ISSUE};
    use kanta_domain::hetu::Hetu;
    use kanta_web::portal::mandates::{HttpMandates, MandateCache, MandateConfig};
    use kanta_web::portal::test_mandates::TestMandates;
    let recheck = file.mandate_recheck_seconds.unwrap_or(120);
    // A page may stand on a standing kept a few seconds, itself resting on a mandate answer kept
    // for the rest of the interval: together never older than `mandate_recheck_seconds`.
    let standing_ttl = recheck.min(5);
    portal.standing_cache = Arc::new(kanta_web::portal::acting::StandingCache::new(
        Duration::from_secs(standing_ttl),
    ));
    portal.mandate_cache = Arc::new(MandateCache::new(Duration::from_secs(
        recheck - standing_ttl,
    )));
    match (&file.mandates, demo) {
        (Some(m), _) => {
            let config = MandateConfig {
                base_url: m.base_url.trim_end_matches('/').to_string(),
                browser_url: m
                    .browser_url
                    .clone()
                    .unwrap_or_else(|| m.base_url.clone())
                    .trim_end_matches('/')
                    .to_string(),
                client_id: m.client_id.clone(),
                api_key: m.api_key.expose().to_string(),
                oauth_password: m.oauth_password.expose().to_string(),
                rest_api_key: m.rest_api_key.expose().to_string(),
                timeout: Duration::from_secs(m.timeout_seconds.unwrap_or(5)),
            };
            portal.mandates = Some(Arc::new(HttpMandates::new(config, Clock::System)));
        }
        (None, true) => {
            let reg = TestMandates::new();
            let today = Clock::System.now().date();
            let ms = |d: time::Date| kanta_fhir::datetime::helsinki_midnight(d);
            let parse = |h: &str| Hetu::parse(h).map_err(|e| format!("demo HETU: {e:?}"));
            for (n, m) in demo::mandates(today).into_iter().enumerate() {
                reg.give(Mandate {
                    id: format!("demo-{n}"),
                    principal: parse(&m.principal)?,
                    delegate: parse(&m.delegate)?,
                    issue: HEALTH_CARE_ISSUE.into(),
                    valid_from: ms(m.from),
                    valid_to: ms(m.to),
                    revoked_at: None,
                    given_at: if m.service_point {
                        GivenAt::ServicePoint
                    } else {
                        GivenAt::Online
                    },
                });
            }
            let start = ms(today);
            for (n, (child, by, other, confirmed)) in
                demo::guardian_authorisations(today).into_iter().enumerate()
            {
                reg.authorise(GuardianAuthorisation {
                    id: format!("demo-auth-{n}"),
                    child: parse(&child)?,
                    proposed_by: parse(&by)?,
                    other: parse(&other)?,
                    proposed_at: start,
                    confirmed_at: confirmed.then_some(start),
                    revoked_at: None,
                });
            }
            let base = format!(
                "{}{}",
                public_url.trim_end_matches('/'),
                kanta_web::portal::test_mandates::PREFIX
            );
            let config = MandateConfig {
                base_url: base.clone(),
                browser_url: base,
                client_id: reg.client_id.clone(),
                api_key: reg.api_key.clone(),
                oauth_password: reg.oauth_password.clone(),
                rest_api_key: reg.rest_api_key.clone(),
                timeout: Duration::from_secs(5),
            };
            portal.mandates = Some(Arc::new(HttpMandates::new(config, Clock::System)));
            portal.test_mandates = Some(Arc::new(reg));
            tracing::warn!(
                "the built-in TEST mandate registry is on: never use this in production"
            );
        }
        (None, false) => {
            tracing::warn!("no mandate service configured: acting for other adults is refused");
        }
    }
    Ok(())
}

/// What opening the database does to its schema.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Apply pending migrations (`kanta migrate`, as the owner; and SQLite always: the server owns
    /// its file).
    Migrate,
    /// Check that every migration is applied, and refuse clearly when not: on PostgreSQL the
    /// server runs as the least-privilege role, which cannot migrate (R-OPS-4).
    Check,
}

async fn open(r: &Resolved) -> Result<Arc<dyn Store>, String> {
    open_with(r, Schema::Check).await
}

async fn open_with(r: &Resolved, schema: Schema) -> Result<Arc<dyn Store>, String> {
    if let Some(path) = r.database.expose().strip_prefix("sqlite://") {
        std::fs::create_dir_all(&r.data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", r.data_dir.display()))?;
        // The database holds everyone's records: readable by its owner only. SQLite gives its
        // -wal and -shm files the database file's permissions.
        let path = Path::new(path.split('?').next().unwrap_or(path));
        if !path.exists() {
            write_private(path, b"")
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
    }
    let store = kanta_store::connect(r.database.expose())
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    match (schema, store.backend()) {
        (Schema::Migrate, _) | (Schema::Check, kanta_store::Backend::Sqlite) => store
            .migrate()
            .await
            .map_err(|e| format!("migrations failed: {e}"))?,
        (Schema::Check, kanta_store::Backend::Postgres) => store
            .check_schema()
            .await
            .map_err(|e| format!("cannot start: {e}"))?,
    }
    Ok(store)
}

async fn run(cli: Cli, file: FileConfig) -> Result<(), String> {
    let r = resolve(&cli, &file);
    match cli.command {
        Command::Serve {
            demo,
            listen,
            public_url,
        } => {
            let demo = demo || file.demo.unwrap_or(false);
            let listen = listen
                .or(file.listen.clone())
                .unwrap_or_else(|| "127.0.0.1:8080".to_string());
            let store = open(&r).await?;
            let clock = Clock::System;
            let token_secret = match (
                file.token_secret
                    .clone()
                    .or_else(|| std::env::var("KANTA_TOKEN_SECRET").ok().map(Secret::new)),
                demo,
            ) {
                (Some(s), _) => {
                    let bytes = s.expose().as_bytes().to_vec();
                    token_secret_strong_enough(&bytes)?;
                    bytes
                }
                (None, true) => demo_token_secret(&r.data_dir)?,
                (None, false) => {
                    return Err(
                        "token_secret (or KANTA_TOKEN_SECRET) is required outside --demo".into(),
                    )
                }
            };
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            if demo && (!addr.ip().is_loopback() || !r.database.expose().starts_with("sqlite:")) {
                // The demo's test identification service lets anyone log in as anyone.
                tracing::warn!(%addr, "--demo is on: the built-in test identification service lets anyone log in as anyone; never serve it beyond this machine or on a production database");
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!(
                    "WARNING: --demo on {addr}{}: the test identification service lets anyone log in as anyone\n",
                    if r.database.expose().starts_with("sqlite:") { "" } else { " with a PostgreSQL database" }
                ));
            }
            let public_url = public_url
                .or(file.public_url.clone())
                .unwrap_or_else(|| format!("http://{addr}"));
            let config = WebConfig {
                public_url: public_url.trim_end_matches('/').to_string(),
                max_body_bytes: file.max_body_bytes.unwrap_or(8 * 1024 * 1024),
                demo,
                limits: {
                    let d = kanta_web::Limits::default();
                    kanta_web::Limits {
                        max_bundle_entries: file.max_bundle_entries.unwrap_or(d.max_bundle_entries),
                        max_references_per_resource: file
                            .max_references_per_resource
                            .unwrap_or(d.max_references_per_resource),
                        max_search_value: file.max_search_value.unwrap_or(d.max_search_value),
                        header_read_timeout: file
                            .header_read_timeout_seconds
                            .map_or(d.header_read_timeout, Duration::from_secs),
                        body_read_timeout: file
                            .body_read_timeout_seconds
                            .map_or(d.body_read_timeout, Duration::from_secs),
                        max_connections: file.max_connections.unwrap_or(d.max_connections),
                        search_scan_max: file.search_scan_max.unwrap_or(d.search_scan_max),
                        search_scan_deadline: file
                            .search_scan_deadline_ms
                            .map_or(d.search_scan_deadline, Duration::from_millis),
                    }
                },
            };
            // Writes that committed with their audit records but died before the records became
            // leaves: finished before anything is served (R-OPS-3, R-OPS-4).
            let pending = kanta_store::audit::drain_outbox(store.as_ref())
                .await
                .map_err(|e| format!("finishing the audit records left pending: {e}"))?;
            if pending > 0 {
                tracing::warn!(
                    records = pending,
                    "audit records left pending by a stop were made leaves"
                );
            }
            let signer = audit_signer(&r, &config.public_url)?;
            let audit = kanta_store::audit::AuditLog::start(
                store.clone(),
                kanta_store::audit::AuditConfig {
                    max_batch: 1000,
                    checkpoint_every: Duration::from_secs(
                        file.audit_checkpoint_seconds.unwrap_or(1),
                    ),
                    signer,
                    witness_file: file.audit_witness_file.clone(),
                    witness_channel: match &file.audit_witness_url {
                        Some(url) => Some(witness::start(url.clone())?),
                        None => None,
                    },
                },
            );
            if demo && !seed::is_seeded(&store).await? {
                tracing::info!("seeding the demo population (first start)");
                seed::seed(&store, &audit, clock.now()).await?;
            }
            let portal = portal_setup(&store, &file, &config.public_url, demo)?;
            let centre = centre_setup(&file, demo)?;
            tracing::info!(%addr, backend = ?store.backend(), demo, test_idp = portal.test_idp.is_some(), "kanta is listening");
            let state = AppState::new(store, audit, config, clock, &token_secret)
                .with_portal(portal)
                .with_metrics_token(file.metrics_token.as_ref().map(|s| s.expose()));
            let state = match centre {
                Some(c) => state.with_centre(c),
                None => state,
            };
            let pruning = state.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every.tick().await;
                    match kanta_web::portal::prune_sessions(&pruning).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(sessions = n, "ended idle sessions"),
                        Err(e) => tracing::error!(error = %e, "session pruning failed"),
                    }
                }
            });
            if let Some(days) = file.audit_retention_days {
                if i64::from(days) * 86_400_000 < kanta_store::audit::MIN_RETENTION_MS {
                    return Err(format!(
                        "audit_retention_days = {days}: audit records are kept at least 1096 days (three years)"
                    ));
                }
                let store = state.store.clone();
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_secs(3600));
                    loop {
                        every.tick().await;
                        let now = kanta_fhir::datetime::millis(Clock::System.now());
                        match kanta_store::audit::prune(store.as_ref(), days, now).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(records = n, "audit retention: records emptied")
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "audit retention failed (on PostgreSQL the server's role may not update audit rows: run `kanta audit prune` as the owner)")
                            }
                        }
                    }
                });
            }
            kanta_web::serve(listener, state, shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate { citus, app_role } => {
            if citus && !r.database.expose().starts_with("postgres") {
                return Err(
                    "--citus needs a PostgreSQL coordinator's URL (--database postgres://…)".into(),
                );
            }
            let store = open_with(&r, Schema::Migrate).await?;
            emit!("migrations applied ({:?})", store.backend());
            if citus {
                let report = kanta_store::citus::distribute(r.database.expose())
                    .await
                    .map_err(|e| format!("kanta migrate --citus: {e}"))?;
                emit!(
                    "citus: {} tables placed now ({}), {} already placed; {} worker nodes",
                    report.placed.len(),
                    report.placed.join(", "),
                    report.already.len(),
                    report.workers
                );
                if report.workers == 0 {
                    emit!("citus: WARNING: no worker nodes — every shard is on the coordinator; add workers (citus_add_node) and rebalance (citus_rebalance_start)");
                }
            }
            if let Some(role) = app_role {
                store
                    .grant_app_role(&role)
                    .await
                    .map_err(|e| format!("kanta migrate --app-role {role}: {e}"))?;
                emit!("granted the server's role {role} what it needs (sql/app-role.sql)");
            }
            Ok(())
        }
        Command::Demo { what } => {
            let today = Clock::System.now().date();
            match what {
                DemoWhat::People => {
                    for p in demo::people(today) {
                        let line = serde_json::json!({"hetu": p.hetu, "name": p.name, "birth_date": p.birth_date.to_string(), "situation": p.situation});
                        emit!("{line}");
                    }
                }
                DemoWhat::Clients => {
                    for c in demo::clients() {
                        let line = serde_json::json!({"client_id": c.client_id, "client_secret": c.client_secret, "organisation": c.organisation, "organisation_name": c.organisation_name, "roles": c.roles});
                        emit!("{line}");
                    }
                }
            }
            Ok(())
        }
        Command::Population {
            what: PopulationWhat::Import { file: path },
        } => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
            let records =
                kanta_fhir::population::parse_import(&value).map_err(|e| e.to_string())?;
            let store = open(&r).await?;
            let s = store
                .import_population(&records, Clock::System.now())
                .await
                .map_err(|e| e.to_string())?;
            emit!(
                "imported {} persons and {} relations",
                s.persons,
                s.relations
            );
            Ok(())
        }
        Command::Client { what } => client_command(&r, what).await,
        Command::Medicines {
            what: MedicinesWhat::Check { file },
        } => {
            let (name, text) = match &file {
                Some(path) => (
                    path.display().to_string(),
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                ),
                None => ("the demo dataset".to_string(), demo::MEDICINES.to_string()),
            };
            let v = kanta_domain::medicines::parse(&text).map_err(|e| format!("{name}: {e}"))?;
            let groups: std::collections::BTreeSet<&str> = v
                .products()
                .filter_map(|p| p.substitution_group.as_deref())
                .collect();
            emit!(
                "{name}: {} products in {} substitution groups, valid from {}",
                v.len(),
                groups.len(),
                v.valid_from
            );
            Ok(())
        }
        Command::Bench(args) => {
            bench::run(args, r.database.expose().to_string(), r.data_dir.clone()).await
        }
        Command::Backup { to } => {
            if to.exists() {
                return Err(format!("{} exists; choose a new file", to.display()));
            }
            let target = to
                .to_str()
                .ok_or("the backup path is not valid UTF-8")?
                .to_string();
            let store = open(&r).await?;
            match store.backend() {
                kanta_store::Backend::Sqlite => {
                    store.backup_to(&target).await.map_err(|e| e.to_string())?
                }
                kanta_store::Backend::Postgres => {
                    let status = std::process::Command::new("pg_dump")
                        .args([
                            "--format=custom",
                            "--file",
                            &target,
                            "--dbname",
                            r.database.expose(),
                        ])
                        .status()
                        .map_err(|e| format!("cannot run pg_dump: {e}"))?;
                    if !status.success() {
                        return Err("pg_dump failed".into());
                    }
                }
            }
            emit!("backup written to {target}; after a restore, run `kanta audit verify --witness <latest checkpoint>`");
            Ok(())
        }
        Command::Audit { what } => {
            let store = open(&r).await?;
            match what {
                AuditWhat::Verify { witness } => {
                    let signer = audit_signer(&r, "http://kanta")?;
                    let witness = match witness {
                        Some(p) => Some(
                            std::fs::read_to_string(&p)
                                .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                        ),
                        None => None,
                    };
                    let started = std::time::Instant::now();
                    let report = kanta_store::audit::verify(
                        store.as_ref(),
                        signer.name(),
                        &signer.public_key(),
                        witness.as_deref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    let line = serde_json::json!({"ok": report.ok(), "records": report.records, "checkpoints_verified": report.checkpoints_verified,
                        "head_size": report.head_size, "pending": report.pending, "problems": report.problems, "seconds": started.elapsed().as_secs_f64()});
                    emit!("{line}");
                    if report.ok() {
                        Ok(())
                    } else {
                        Err("the audit log does not verify".into())
                    }
                }
                AuditWhat::Prune { retention_days } => {
                    let now = kanta_fhir::datetime::millis(Clock::System.now());
                    let n = kanta_store::audit::prune(store.as_ref(), retention_days, now).await?;
                    emit!("{n} audit records past {retention_days} days emptied; the log still verifies");
                    Ok(())
                }
                AuditWhat::Prove { seq } => match kanta_store::audit::prove(store.as_ref(), seq)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(p) => {
                        emit!(
                            "{}",
                            serde_json::to_string_pretty(&p).map_err(|e| e.to_string())?
                        );
                        Ok(())
                    }
                    None => Err(format!("no checkpoint covers record {seq} yet")),
                },
            }
        }
    }
}

/// The shortest token secret accepted: 32 bytes (HS256 keys shorter than the hash are guessable).
const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// A configured token secret must be at least 32 bytes and not one repeated character.
fn token_secret_strong_enough(secret: &[u8]) -> Result<(), String> {
    let distinct: std::collections::BTreeSet<u8> = secret.iter().copied().collect();
    if secret.len() < MIN_TOKEN_SECRET_BYTES || distinct.len() < 8 {
        return Err(format!(
            "token_secret (or KANTA_TOKEN_SECRET) must be at least {MIN_TOKEN_SECRET_BYTES} random bytes \
             (e.g. `openssl rand -base64 48`); refusing to start"
        ));
    }
    Ok(())
}

/// Write a file readable by its owner only (secrets, keys).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, bytes)
    }
}

/// The demo's token secret: random on first start, kept in the data directory (readable by the
/// owner only) so that tokens survive a restart.
fn demo_token_secret(data_dir: &Path) -> Result<Vec<u8>, String> {
    let path = data_dir.join("demo-token-secret");
    if let Ok(s) = std::fs::read(&path) {
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
    .into_bytes();
    write_private(&path, &secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// `kanta client …`: the client register, checked as the access decision will read it.
async fn client_command(r: &Resolved, what: ClientWhat) -> Result<(), String> {
    use kanta_domain::access::Scopes;
    use kanta_domain::ids::{ClientRole, OrgId};
    let store = open(r).await?;
    let now = Clock::System.now();
    match what {
        ClientWhat::Register {
            client_id,
            org,
            name,
            roles,
            scopes,
            jwks,
        } => {
            if let Some(bad) = roles.iter().find(|r| ClientRole::parse(r).is_none()) {
                return Err(format!(
                    "unknown role '{bad}' (clinician, pharmacy, archivist, operator)"
                ));
            }
            let parsed = Scopes::parse(&scopes).map_err(|e| format!("--scopes: {e}"))?;
            if parsed.is_empty() {
                return Err("--scopes grants nothing".into());
            }
            let text = std::fs::read_to_string(&jwks)
                .map_err(|e| format!("cannot read {}: {e}", jwks.display()))?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a JWK Set: {e}", jwks.display()))?;
            if set.keys.is_empty() {
                return Err(format!("{} holds no key", jwks.display()));
            }
            let record = kanta_store::ClientRecord {
                client_id: client_id.clone(),
                org: OrgId::new(org),
                name,
                roles,
                secret_sha256: None,
                jwks: Some(text),
                enabled: true,
                scopes: parsed.to_string(),
            };
            store
                .upsert_client(&record, now)
                .await
                .map_err(|e| e.to_string())?;
            emit!("registered client {client_id}");
            Ok(())
        }
        ClientWhat::Disable { client_id } => set_enabled(store.as_ref(), &client_id, false).await,
        ClientWhat::Enable { client_id } => set_enabled(store.as_ref(), &client_id, true).await,
        ClientWhat::Show { client_id } => {
            let c = store
                .client(&client_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no client {client_id}"))?;
            emit!(
                "{}",
                serde_json::json!({"client_id": c.client_id, "org": c.org.as_str(), "name": c.name,
                    "roles": c.roles, "scopes": c.scopes, "enabled": c.enabled,
                    "auth": if c.jwks.is_some() { "private_key_jwt" } else { "client_secret" }})
            );
            Ok(())
        }
    }
}

async fn set_enabled(store: &dyn Store, client_id: &str, enabled: bool) -> Result<(), String> {
    let mut c = store
        .client(client_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no client {client_id}"))?;
    c.enabled = enabled;
    store
        .upsert_client(&c, Clock::System.now())
        .await
        .map_err(|e| e.to_string())?;
    emit!(
        "client {client_id} {} (every instance within {} s)",
        if enabled { "enabled" } else { "disabled" },
        kanta_web::auth::CLIENT_CACHE_SECONDS
    );
    Ok(())
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn short_or_trivial_token_secrets_are_refused() {
        for bad in [
            &b""[..],
            b"x",
            b"hunter2",
            &[b'a'; 64],
            b"abcabcabcabcabcabcabcabcabcabcabc",
        ] {
            assert!(token_secret_strong_enough(bad).is_err(), "{bad:?}");
        }
        assert!(token_secret_strong_enough(b"Zq3vN8pL1xR7tY2wK9mB4cH6jD0sF5gA").is_ok());
    }

    #[test]
    fn private_files_are_owner_only() {
        let dir = std::env::temp_dir().join(format!("kanta-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("secret");
        write_private(&p, b"s").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
