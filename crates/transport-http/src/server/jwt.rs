//! [`JwtAuthenticator`]: bearer tokens that are JWTs signed by the app's sign-in service,
//! checked with an HS256 secret, an RS256 or ES256 public key, or a JWKS file; the tenant is
//! a claim of the token (default `sub`).
//!
//! What is enforced: the signature with exactly the configured algorithm (so `alg: none` and an
//! HS256 token against a public key are refused), `exp` (required) and `nbf` with a small
//! leeway, and `iss`/`aud` when configured. A token that fails any check is "unknown" (401);
//! why is logged at debug level, never the token. Verification is `jsonwebtoken` with its
//! RustCrypto backend.

use std::path::Path;

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sync_core::TenantId;

use super::auth::Authenticator;

/// The leeway on `exp` and `nbf`, in seconds, for clocks that differ a little.
pub const JWT_LEEWAY_SECS: u64 = 30;

/// A JWT key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// A key file cannot be read.
    #[error("cannot read the JWT key file {path}: {source}. Check the path and its permissions")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not one this server can use.
    #[error("the JWT key {what} cannot be used: {detail}")]
    Key {
        /// Which key.
        what: String,
        /// Why.
        detail: String,
    },
}

/// The keys a token may be signed with.
enum Keys {
    /// One key and its algorithm.
    One(Algorithm, DecodingKey),
    /// A JWKS: keys by `kid`, each with its algorithm.
    Set(Vec<(Option<String>, Algorithm, DecodingKey)>),
}

/// Accepts JWTs signed by the app's sign-in service; the tenant comes from a claim.
pub struct JwtAuthenticator {
    keys: Keys,
    tenant_claim: String,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("tenant_claim", &self.tenant_claim)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, JwtError> {
    std::fs::read(path).map_err(|source| JwtError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn key_error(what: impl Into<String>, e: impl std::fmt::Display) -> JwtError {
    JwtError::Key {
        what: what.into(),
        detail: e.to_string(),
    }
}

impl JwtAuthenticator {
    fn with_keys(keys: Keys) -> JwtAuthenticator {
        JwtAuthenticator {
            keys,
            tenant_claim: "sub".to_owned(),
            issuer: None,
            audience: None,
        }
    }

    /// Tokens signed with HS256 and `secret` (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<JwtAuthenticator, JwtError> {
        if secret.len() < 32 {
            return Err(key_error(
                "secret",
                "an HS256 secret must be at least 32 bytes; make one with `openssl rand -hex 32`",
            ));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| key_error("secret", e))?;
        Ok(Self::with_keys(Keys::One(Algorithm::HS256, key)))
    }

    /// Tokens signed with HS256 and the secret in `path` (its bytes, trailing newline removed).
    pub fn hs256_file(path: &Path) -> Result<JwtAuthenticator, JwtError> {
        let mut secret = read(path)?;
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        Self::hs256(&secret)
    }

    /// Tokens signed with the private half of the public key `pem`: RS256 for an RSA key,
    /// ES256 for a P-256 key.
    pub fn public_key_pem(pem: &[u8]) -> Result<JwtAuthenticator, JwtError> {
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::with_keys(Keys::One(Algorithm::ES256, key)));
        }
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
            key_error(
                "public key",
                format!("{e}; give an RSA or P-256 public key in PEM"),
            )
        })?;
        Ok(Self::with_keys(Keys::One(Algorithm::RS256, key)))
    }

    /// [`JwtAuthenticator::public_key_pem`] from a file.
    pub fn public_key_file(path: &Path) -> Result<JwtAuthenticator, JwtError> {
        Self::public_key_pem(&read(path)?).map_err(|e| match e {
            JwtError::Key { detail, .. } => key_error(path.display().to_string(), detail),
            e => e,
        })
    }

    /// Tokens signed with one of the RSA or EC keys of a JWKS document (`{"keys":[...]}`), the
    /// key chosen by the token's `kid`. Symmetric (`oct`) keys are refused.
    pub fn jwks(json: &[u8]) -> Result<JwtAuthenticator, JwtError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| key_error("JWKS", e))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => return Err(key_error("JWKS", "only RSA and EC keys are accepted")),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| key_error("JWKS", e))?;
            keys.push((jwk.common.key_id.clone(), alg, key));
        }
        if keys.is_empty() {
            return Err(key_error("JWKS", "it holds no key"));
        }
        Ok(Self::with_keys(Keys::Set(keys)))
    }

    /// [`JwtAuthenticator::jwks`] from a file.
    pub fn jwks_file(path: &Path) -> Result<JwtAuthenticator, JwtError> {
        Self::jwks(&read(path)?)
    }

    /// The claim that names the tenant (default `sub`).
    #[must_use]
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> JwtAuthenticator {
        self.tenant_claim = claim.into();
        self
    }

    /// Accept only tokens with this `iss`.
    #[must_use]
    pub fn issuer(mut self, iss: impl Into<String>) -> JwtAuthenticator {
        self.issuer = Some(iss.into());
        self
    }

    /// Accept only tokens with this `aud`.
    #[must_use]
    pub fn audience(mut self, aud: impl Into<String>) -> JwtAuthenticator {
        self.audience = Some(aud.into());
        self
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = JWT_LEEWAY_SECS;
        v.validate_nbf = true;
        v.validate_aud = self.audience.is_some();
        // A configured audience or issuer must be in the token, not only match when present.
        if let Some(aud) = &self.audience {
            v.set_audience(&[aud]);
            v.required_spec_claims.insert("aud".to_owned());
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".to_owned());
        }
        v
    }

    /// The tenant of `token`, or why it is refused.
    pub fn check(&self, token: &str) -> Result<TenantId, String> {
        let header = decode_header(token).map_err(|e| format!("bad header: {e}"))?;
        let (alg, key) = match &self.keys {
            Keys::One(alg, key) => (*alg, key),
            Keys::Set(keys) => {
                let kid = header.kid.as_deref();
                let found = keys
                    .iter()
                    .find(|(id, alg, _)| id.as_deref() == kid && *alg == header.alg)
                    .ok_or("no key of the JWKS has this kid and algorithm")?;
                (found.1, &found.2)
            }
        };
        let data = decode::<Map<String, Value>>(token, key, &self.validation(alg))
            .map_err(|e| e.to_string())?;
        match data.claims.get(&self.tenant_claim) {
            Some(Value::String(t)) if !t.is_empty() => Ok(TenantId::new(t.clone())),
            _ => Err(format!(
                "no string claim {:?} to take the tenant from",
                self.tenant_claim
            )),
        }
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn tenant(&self, token: &str) -> Option<TenantId> {
        // Only tokens shaped like a JWT; other sources may know the rest.
        if token.split('.').count() != 3 {
            return None;
        }
        match self.check(token) {
            Ok(tenant) => Some(tenant),
            Err(why) => {
                tracing::debug!(%why, "JWT refused");
                None
            }
        }
    }
}
