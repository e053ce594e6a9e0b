//! The token a twin presents to the relay when it connects.
//!
//! `b64url(header) "." b64url(claims) "." b64url(signature)`, base64url
//! without padding. The header must say `"alg":"RS512"`: the relay's JWT
//! library compares it with its verifier's type although the signature is
//! really a typed ed25519/sr25519 one (65 bytes, see
//! [`Identity::sign`](super::identity::Identity::sign)) over the ASCII text
//! `<header>.<claims>`. Claims: `sub` (twin id), `iat`, `exp`, and `sid`
//! when the connection has a session id. The relay rejects a token only
//! once `now > exp`, and checks it only at the upgrade.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::identity::{self, Identity};

/// The header the grid's Go and TypeScript clients send.
const HEADER: &str = r#"{"alg":"RS512","typ":"JWT"}"#;

/// The longest token accepted by [`verify`] (a real one is ~250 bytes).
const MAX_TOKEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: u32,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A token for `twin` (and session `sid`), issued at `iat`, valid for
/// `lifetime` seconds.
pub fn token(identity: &Identity, twin: u32, sid: Option<&str>, iat: u64, lifetime: u64) -> String {
    let claims = Claims {
        sub: twin,
        iat,
        exp: iat.saturating_add(lifetime),
        sid: sid.map(str::to_string),
    };
    // Serializing a struct of integers and a string cannot fail.
    let claims = serde_json::to_string(&claims).unwrap_or_default();
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = identity.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Why a token is refused ([`claims`], [`verify`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token of {0} bytes is too long")]
    TooLong(usize),
    #[error("a token has three dot-separated parts")]
    Parts,
    #[error("header is not base64url")]
    HeaderNotBase64,
    #[error("claims are not base64url")]
    ClaimsNotBase64,
    #[error("signature is not base64url")]
    SignatureNotBase64,
    #[error("header is not JSON")]
    HeaderNotJson,
    #[error("header alg must be RS512")]
    Algorithm,
    /// The claims do not decode (serde's reason).
    #[error("claims: {0}")]
    Claims(String),
    #[error("token expired at {0}")]
    Expired(u64),
    #[error(transparent)]
    Signature(#[from] identity::SignatureError),
}

/// Parses a token without checking its signature: the claims say which
/// twin's account to check it against.
pub fn claims(token: &str) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN {
        return Err(JwtError::TooLong(token.len()));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Parts);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::HeaderNotBase64)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| JwtError::HeaderNotJson)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS512") {
        return Err(JwtError::Algorithm);
    }
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| JwtError::ClaimsNotBase64)?;
    serde_json::from_slice(&claims).map_err(|e| JwtError::Claims(e.to_string()))
}

/// Checks a token as the relay does: well formed, `now <= exp`, and
/// signed by `account` (the 32-byte account of twin `claims.sub`).
pub fn verify(token: &str, account: &[u8; 32], now: u64) -> Result<Claims, JwtError> {
    let claims = claims(token)?;
    if now > claims.exp {
        return Err(JwtError::Expired(claims.exp));
    }
    let (signed, signature) = token.rsplit_once('.').ok_or(JwtError::Parts)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::SignatureNotBase64)?;
    identity::verify(account, signed.as_bytes(), &signature)?;
    Ok(claims)
}
