//! The relying party's own keys under the Finnish Trust Network OpenID Connect profile (Traficom
//! recommendation 213/2023 S; R-AUTH-1): RSA keys for signing (`private_key_jwt` client assertions
//! and JWT-secured authorization requests, RFC 9101) and for decryption (encrypted ID tokens and
//! userinfo responses, RFC 7516), published as a JWK set for registration with the broker.
//!
//! The cryptography is `josekit` (JWE and JWS on OpenSSL); this module only chooses keys, checks
//! that what arrives uses exactly the configured algorithms, and bounds the input. Verifying the
//! provider's signature inside stays with [`super::oidc::verify_signed`].
//!
//! Key ids are RFC 7638 thumbprints of the public keys, so that they are stable across restarts
//! and machines and need no configuration. Key rotation: several signing keys may be published and
//! one is active; every decryption key is tried by its `kid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwe::{JweDecrypter, JweHeader};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair as _;
use josekit::jws::{JwsHeader, JwsSigner};
use josekit::jwt::JwtPayload;
use serde_json::{json, Map, Value};

/// The smallest RSA key the profile allows.
pub const MIN_RSA_BITS: u32 = 2048;
/// An encrypted token larger than this is refused before any work on it.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Signature algorithms for our own JWTs (RSA keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignAlg {
    RS256,
    PS256,
}

impl SignAlg {
    pub fn parse(s: &str) -> Result<SignAlg, String> {
        match s {
            "RS256" => Ok(SignAlg::RS256),
            "PS256" => Ok(SignAlg::PS256),
            other => Err(format!(
                "signing algorithm {other} is not supported (RS256, PS256)"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SignAlg::RS256 => "RS256",
            SignAlg::PS256 => "PS256",
        }
    }
}

/// Key management algorithms accepted for encrypted responses (RSA only: the profile's keys are RSA).
pub const ENC_ALGS: [&str; 2] = ["RSA-OAEP-256", "RSA-OAEP"];
/// Content encryption algorithms accepted.
pub const ENC_ENCS: [&str; 4] = ["A256GCM", "A128GCM", "A256CBC-HS512", "A128CBC-HS256"];

/// Why an encrypted response was refused. Each has its own translated message at login.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("the response is not encrypted, and encryption is required")]
    NotEncrypted,
    #[error("the response is encrypted to a key that is not ours")]
    UnknownKey,
    #[error("the response uses {0}, which is not the configured algorithm")]
    WrongAlgorithm(String),
    #[error("the response cannot be decrypted: {0}")]
    Undecryptable(String),
}

struct SigningKey {
    kid: String,
    signer: Box<dyn JwsSigner>,
    public: Value,
}

struct DecryptionKey {
    kid: String,
    decrypter: Box<dyn JweDecrypter>,
    public: Value,
}

/// The relying party's keys and the algorithms it uses and accepts.
pub struct RpKeys {
    signing: Vec<SigningKey>,
    active: usize,
    decryption: Vec<DecryptionKey>,
    pub sign_alg: SignAlg,
    pub enc_alg: String,
    pub enc: String,
}

impl std::fmt::Debug for RpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpKeys")
            .field(
                "signing",
                &self.signing.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .field("active", &self.signing.get(self.active).map(|k| &k.kid))
            .field(
                "decryption",
                &self.decryption.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What [`RpKeys::new`] needs: PEM private keys and the algorithm names.
pub struct KeySpec<'a> {
    pub signing_pems: &'a [Vec<u8>],
    /// The `kid` of the signing key in use; `None`: the first.
    pub active_kid: Option<&'a str>,
    pub decryption_pems: &'a [Vec<u8>],
    pub sign_alg: &'a str,
    pub enc_alg: &'a str,
    pub enc: &'a str,
}

/// RFC 7638: the SHA-256 thumbprint of an RSA public key, base64url.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The RSA key in `pem`, at least [`MIN_RSA_BITS`], with its thumbprint and public JWK members.
fn rsa_key(pem: &[u8], what: &str) -> Result<(String, Value), String> {
    let pair = RsaKeyPair::from_pem(pem).map_err(|e| format!("{what}: not an RSA key: {e}"))?;
    let bits = pair.key_len() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "{what}: an RSA key of {bits} bits; the profile needs at least {MIN_RSA_BITS}"
        ));
    }
    let jwk = pair.to_jwk_public_key();
    let member = |m: &str| {
        jwk.parameter(m)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{what}: the public key has no {m}"))
    };
    let (n, e) = (member("n")?, member("e")?);
    let kid = thumbprint(&n, &e);
    Ok((
        kid.clone(),
        json!({"kty": "RSA", "n": n, "e": e, "kid": kid}),
    ))
}

impl RpKeys {
    pub fn new(spec: &KeySpec<'_>) -> Result<RpKeys, String> {
        let sign_alg = SignAlg::parse(spec.sign_alg)?;
        if !ENC_ALGS.contains(&spec.enc_alg) {
            return Err(format!(
                "encryption algorithm {} is not supported ({})",
                spec.enc_alg,
                ENC_ALGS.join(", ")
            ));
        }
        if !ENC_ENCS.contains(&spec.enc) {
            return Err(format!(
                "content encryption {} is not supported ({})",
                spec.enc,
                ENC_ENCS.join(", ")
            ));
        }
        let mut signing = Vec::new();
        for (i, pem) in spec.signing_pems.iter().enumerate() {
            let what = format!("signing key {}", i + 1);
            let (kid, mut public) = rsa_key(pem, &what)?;
            // From the JWK form: PS256 takes a plain RSA key that way (its PEM reader wants an
            // RSA-PSS key).
            let private = RsaKeyPair::from_pem(pem)
                .map_err(|e| format!("{what}: {e}"))?
                .to_jwk_private_key();
            let signer: Box<dyn JwsSigner> = match sign_alg {
                SignAlg::RS256 => Box::new(
                    josekit::jws::RS256
                        .signer_from_jwk(&private)
                        .map_err(|e| format!("{what}: {e}"))?,
                ),
                SignAlg::PS256 => Box::new(
                    josekit::jws::PS256
                        .signer_from_jwk(&private)
                        .map_err(|e| format!("{what}: {e}"))?,
                ),
            };
            public["use"] = json!("sig");
            public["alg"] = json!(sign_alg.name());
            signing.push(SigningKey {
                kid,
                signer,
                public,
            });
        }
        let active = match spec.active_kid {
            None => 0,
            Some(kid) => signing.iter().position(|k| k.kid == kid).ok_or_else(|| {
                format!("the active signing key {kid} is not among the signing keys")
            })?,
        };
        let mut decryption = Vec::new();
        for (i, pem) in spec.decryption_pems.iter().enumerate() {
            let what = format!("encryption key {}", i + 1);
            let (kid, mut public) = rsa_key(pem, &what)?;
            let decrypter: Box<dyn JweDecrypter> = match spec.enc_alg {
                "RSA-OAEP" => Box::new(
                    josekit::jwe::RSA_OAEP
                        .decrypter_from_pem(pem)
                        .map_err(|e| format!("{what}: {e}"))?,
                ),
                _ => Box::new(
                    josekit::jwe::RSA_OAEP_256
                        .decrypter_from_pem(pem)
                        .map_err(|e| format!("{what}: {e}"))?,
                ),
            };
            public["use"] = json!("enc");
            public["alg"] = json!(spec.enc_alg);
            decryption.push(DecryptionKey {
                kid,
                decrypter,
                public,
            });
        }
        if signing.is_empty() && decryption.is_empty() {
            return Err("no keys given".into());
        }
        Ok(RpKeys {
            signing,
            active,
            decryption,
            sign_alg,
            enc_alg: spec.enc_alg.to_string(),
            enc: spec.enc.to_string(),
        })
    }

    /// Fresh keys for the demo: one signing and one encryption key, RSA 2048, RS256 and
    /// RSA-OAEP-256 with A256GCM. They live as long as the process.
    pub fn generate() -> Result<RpKeys, String> {
        let pem = || {
            RsaKeyPair::generate(MIN_RSA_BITS)
                .map(|k| k.to_pem_private_key())
                .map_err(|e| format!("cannot generate an RSA key: {e}"))
        };
        RpKeys::new(&KeySpec {
            signing_pems: &[pem()?],
            active_kid: None,
            decryption_pems: &[pem()?],
            sign_alg: "RS256",
            enc_alg: "RSA-OAEP-256",
            enc: "A256GCM",
        })
    }

    pub fn can_sign(&self) -> bool {
        !self.signing.is_empty()
    }

    pub fn can_decrypt(&self) -> bool {
        !self.decryption.is_empty()
    }

    /// The key id of the signing key in use.
    pub fn active_kid(&self) -> Option<&str> {
        self.signing.get(self.active).map(|k| k.kid.as_str())
    }

    /// The public JWK set to register with the broker: every signing and every encryption key.
    pub fn public_jwks(&self) -> Value {
        let keys: Vec<&Value> = self
            .signing
            .iter()
            .map(|k| &k.public)
            .chain(self.decryption.iter().map(|k| &k.public))
            .collect();
        json!({ "keys": keys })
    }

    /// A JWT of `claims`, signed with the active key (`typ` as given, `kid` in the header).
    pub fn sign(&self, claims: Map<String, Value>, typ: &str) -> Result<String, String> {
        let key = self
            .signing
            .get(self.active)
            .ok_or_else(|| "no signing key is configured".to_string())?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&key.kid);
        let payload = JwtPayload::from_map(claims).map_err(|e| e.to_string())?;
        josekit::jwt::encode_with_signer(&payload, &header, key.signer.as_ref())
            .map_err(|e| format!("cannot sign: {e}"))
    }

    /// The signed JWT inside an encrypted response (`token` in compact JWE form, five parts), after
    /// checking that it uses the configured `alg` and `enc`, names one of our keys (or we have one
    /// only), and is not compressed.
    pub fn decrypt(&self, token: &str) -> Result<String, JweError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JweError::Undecryptable("too large".into()));
        }
        if !is_encrypted(token) {
            return Err(JweError::NotEncrypted);
        }
        let protected = token.split('.').next().unwrap_or_default();
        let header: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(protected)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| JweError::Undecryptable("unreadable header".into()))?;
        let member = |m: &str| header.get(m).and_then(Value::as_str).unwrap_or_default();
        if member("alg") != self.enc_alg {
            return Err(JweError::WrongAlgorithm(format!("alg {}", member("alg"))));
        }
        if member("enc") != self.enc {
            return Err(JweError::WrongAlgorithm(format!("enc {}", member("enc"))));
        }
        if header.contains_key("zip") || header.contains_key("crit") {
            return Err(JweError::Undecryptable(
                "compressed or critical headers are not accepted".into(),
            ));
        }
        let key = match header.get("kid").and_then(Value::as_str) {
            Some(kid) => self.decryption.iter().find(|k| k.kid == kid),
            None if self.decryption.len() == 1 => self.decryption.first(),
            None => None,
        }
        .ok_or(JweError::UnknownKey)?;
        let (inner, _): (Vec<u8>, JweHeader) =
            josekit::jwe::deserialize_compact(token, key.decrypter.as_ref())
                .map_err(|e| JweError::Undecryptable(e.to_string()))?;
        String::from_utf8(inner).map_err(|_| JweError::Undecryptable("not text".into()))
    }
}

/// A compact JWE has five parts; a JWS three.
pub fn is_encrypted(token: &str) -> bool {
    token.split('.').count() == 5
}

/// Encrypt `inner` (a signed JWT) to the RSA public key `jwk` (with its `kid`), as a JWE with
/// `cty: JWT`. For the built-in test identification service and for tests.
pub fn encrypt_to(jwk: &Value, inner: &str, alg: &str, enc: &str) -> Result<String, String> {
    let key = josekit::jwk::Jwk::from_bytes(jwk.to_string().as_bytes())
        .map_err(|e| format!("unusable key: {e}"))?;
    let encrypter: Box<dyn josekit::jwe::JweEncrypter> = match alg {
        "RSA-OAEP" => Box::new(
            josekit::jwe::RSA_OAEP
                .encrypter_from_jwk(&key)
                .map_err(|e| e.to_string())?,
        ),
        "RSA-OAEP-256" => Box::new(
            josekit::jwe::RSA_OAEP_256
                .encrypter_from_jwk(&key)
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("{other} is not supported")),
    };
    let mut header = JweHeader::new();
    header.set_content_encryption(enc);
    header.set_content_type("JWT");
    if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
        header.set_key_id(kid);
    }
    josekit::jwe::serialize_compact(inner.as_bytes(), &header, encrypter.as_ref())
        .map_err(|e| format!("cannot encrypt: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pem() -> Vec<u8> {
        RsaKeyPair::generate(2048).unwrap().to_pem_private_key()
    }

    fn keys(sign: &[Vec<u8>], dec: &[Vec<u8>]) -> RpKeys {
        RpKeys::new(&KeySpec {
            signing_pems: sign,
            active_kid: None,
            decryption_pems: dec,
            sign_alg: "RS256",
            enc_alg: "RSA-OAEP-256",
            enc: "A256GCM",
        })
        .unwrap()
    }

    fn enc_key(k: &RpKeys) -> Value {
        k.public_jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["use"] == "enc")
            .unwrap()
            .clone()
    }

    /// R-AUTH-1 (FTN profile): every way an encrypted response can fall short, each refused with
    /// its own reason; a response to either of two published keys is decrypted (rotation).
    #[test]
    fn decryption_table() {
        let (a, b) = (pem(), pem());
        let ours = keys(&[pem()], &[a.clone(), b.clone()]);
        let other = keys(&[pem()], &[pem()]);
        let inner = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
        for key in ours.public_jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "enc")
        {
            let t = encrypt_to(key, inner, "RSA-OAEP-256", "A256GCM").unwrap();
            assert_eq!(ours.decrypt(&t).unwrap(), inner);
        }
        let to_other = encrypt_to(&enc_key(&other), inner, "RSA-OAEP-256", "A256GCM").unwrap();
        assert_eq!(ours.decrypt(&to_other), Err(JweError::UnknownKey));
        // The other key's material under our key id: the key id is ours, the key is not.
        let mut forged = enc_key(&other);
        forged["kid"] = enc_key(&ours)["kid"].clone();
        let t = encrypt_to(&forged, inner, "RSA-OAEP-256", "A256GCM").unwrap();
        assert!(matches!(ours.decrypt(&t), Err(JweError::Undecryptable(_))));
        assert_eq!(ours.decrypt(inner), Err(JweError::NotEncrypted));
        // A sender that ignores the key's `alg`.
        let mut any_alg = enc_key(&ours);
        any_alg.as_object_mut().unwrap().remove("alg");
        let t = encrypt_to(&any_alg, inner, "RSA-OAEP", "A256GCM").unwrap();
        assert_eq!(
            ours.decrypt(&t),
            Err(JweError::WrongAlgorithm("alg RSA-OAEP".into()))
        );
        let t = encrypt_to(&enc_key(&ours), inner, "RSA-OAEP-256", "A128CBC-HS256").unwrap();
        assert_eq!(
            ours.decrypt(&t),
            Err(JweError::WrongAlgorithm("enc A128CBC-HS256".into()))
        );
        let t = encrypt_to(&enc_key(&ours), inner, "RSA-OAEP-256", "A256GCM").unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[3] = URL_SAFE_NO_PAD.encode(b"tampered ciphertext");
        assert!(matches!(
            ours.decrypt(&parts.join(".")),
            Err(JweError::Undecryptable(_))
        ));
    }

    #[test]
    fn keys_are_checked_and_published_with_stable_ids() {
        let small = RsaKeyPair::generate(1024).unwrap().to_pem_private_key();
        let err = RpKeys::new(&KeySpec {
            signing_pems: &[small],
            active_kid: None,
            decryption_pems: &[],
            sign_alg: "RS256",
            enc_alg: "RSA-OAEP-256",
            enc: "A256GCM",
        })
        .unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
        let (s1, s2) = (pem(), pem());
        let k = keys(&[s1.clone(), s2.clone()], &[pem()]);
        let again = keys(&[s1, s2.clone()], &[]);
        assert_eq!(k.active_kid(), again.active_kid(), "thumbprints are stable");
        let jwks = k.public_jwks();
        let published = jwks["keys"].as_array().unwrap();
        assert_eq!(published.len(), 3);
        assert!(
            published.iter().all(|j| j.get("d").is_none()),
            "no private part"
        );
        let second = published[1]["kid"].as_str().unwrap().to_string();
        let rotated = RpKeys::new(&KeySpec {
            signing_pems: &[pem(), s2],
            active_kid: Some(&second),
            decryption_pems: &[],
            sign_alg: "PS256",
            enc_alg: "RSA-OAEP-256",
            enc: "A256GCM",
        })
        .unwrap();
        let jwt = rotated
            .sign(Map::from_iter([("iss".into(), json!("x"))]), "JWT")
            .unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.kid.as_deref(), Some(second.as_str()));
        assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
        for bad in [
            ("RS1", "RSA-OAEP-256", "A256GCM"),
            ("RS256", "RSA1_5", "A256GCM"),
            ("RS256", "RSA-OAEP-256", "A1GCM"),
        ] {
            assert!(RpKeys::new(&KeySpec {
                signing_pems: &[pem()],
                active_kid: None,
                decryption_pems: &[],
                sign_alg: bad.0,
                enc_alg: bad.1,
                enc: bad.2,
            })
            .is_err());
        }
    }
}
