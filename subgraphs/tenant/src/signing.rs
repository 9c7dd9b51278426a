//! The token signing key and the JWKS that publishes its public half.
//!
//! Tokens are EdDSA (Ed25519) JWTs. The private key is a PKCS#8 PEM file,
//! generated on first start when missing and kept, so tokens survive a
//! restart; every replica of the tenant service must be given the same file.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tenancy::TenantId;
use uuid::Uuid;

/// The issuer every token names.
pub const ISSUER: &str = "hybrid-tenancy";

/// A token's claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The tenant (same as `tenant_id`).
    pub sub: String,
    /// The tenant the token acts for.
    pub tenant_id: TenantId,
    /// The token's id: its row in `api_tokens`.
    pub jti: Uuid,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// The key tokens are signed with.
pub struct TokenSigner {
    encoding: EncodingKey,
    public: [u8; 32],
    kid: String,
}

impl TokenSigner {
    /// Loads the key from `path`, generating and saving one when the file
    /// does not exist.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading SIGNING_KEY_FILE {}", path.display()))?;
            SigningKey::from_pkcs8_pem(&pem).with_context(|| {
                format!(
                    "SIGNING_KEY_FILE {} is not an Ed25519 PKCS#8 key",
                    path.display()
                )
            })?
        } else {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .context("encoding the new signing key")?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            write_private(path, pem.as_bytes())?;
            tracing::info!(target: "tenant::signing", path = %path.display(), "generated a new token signing key");
            key
        };
        Self::from_key(&key)
    }

    /// A signer for an in-memory key (tests).
    pub fn from_key(key: &SigningKey) -> anyhow::Result<Self> {
        let der = key.to_pkcs8_der().context("encoding the signing key")?;
        let public = key.verifying_key().to_bytes();
        let kid = URL_SAFE_NO_PAD.encode(&public[..12]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public,
            kid,
        })
    }

    /// Signs a token for `tenant` with id `jti`, valid until `expires_at`.
    pub fn sign(
        &self,
        tenant: TenantId,
        jti: Uuid,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        if expires_at <= issued_at {
            bail!("a token must expire after it is issued");
        }
        let claims = Claims {
            sub: tenant.to_string(),
            tenant_id: tenant,
            jti,
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            iss: ISSUER.to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing a token")
    }

    /// The public key as a JWK Set, served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(self.public),
            }),
        };
        JwkSet { keys: vec![jwk] }
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating SIGNING_KEY_FILE {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn tokens_verify_with_the_published_jwks_only() {
        let signer = TokenSigner::from_key(&SigningKey::generate(&mut rand::rngs::OsRng)).unwrap();
        let now = Utc::now();
        let token = signer
            .sign(
                TenantId::new(),
                Uuid::new_v4(),
                now,
                now + chrono::Duration::hours(1),
            )
            .unwrap();

        let jwk = signer.jwks().keys.remove(0);
        let key = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_ok());

        let other = TokenSigner::from_key(&SigningKey::generate(&mut rand::rngs::OsRng)).unwrap();
        let other_key = DecodingKey::from_jwk(&other.jwks().keys[0]).unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&token, &other_key, &validation).is_err());
    }

    #[test]
    fn the_key_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("signing-{}", Uuid::new_v4()));
        let path = dir.join("key.pem");
        let first = TokenSigner::load_or_generate(&path).unwrap();
        let second = TokenSigner::load_or_generate(&path).unwrap();
        assert_eq!(first.kid, second.kid);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
