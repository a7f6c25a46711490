//! Who a call acts for.
//!
//! Without tokens configured every call acts for the tenant `default`. With tokens,
//! a call carries `authorization: Bearer <token>` and acts for that token's tenant;
//! the handshake trades a token (as the handshake payload, or as the password of
//! `authorization: Basic …`) for the bearer header clients then send.

use std::collections::HashMap;

use base64::Engine;
use tonic::metadata::MetadataMap;

use crate::error::FlightError;

/// The tenant of every call when no tokens are configured.
pub const DEFAULT_TENANT: &str = "default";

/// Bearer tokens and the tenant each one acts for.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: HashMap<String, String>,
}

impl Auth {
    /// No authentication: every call acts for [`DEFAULT_TENANT`].
    pub fn none() -> Self {
        Self::default()
    }

    /// Calls must present one of `tokens` (token -> tenant).
    pub fn tokens(tokens: HashMap<String, String>) -> Self {
        Self { tokens }
    }

    /// Whether calls need a token.
    pub fn required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The tenant a call with these headers acts for.
    pub fn tenant(&self, headers: &MetadataMap) -> Result<String, FlightError> {
        if !self.required() {
            return Ok(DEFAULT_TENANT.to_string());
        }
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                FlightError::unauthenticated("this server needs `authorization: Bearer <token>`")
            })?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            FlightError::unauthenticated("the authorization header is not a bearer token")
        })?;
        self.tenant_of(token)
    }

    /// The token a handshake presents: its payload, else the password of a basic
    /// authorization header. With no tokens configured, any handshake succeeds.
    pub fn handshake(&self, headers: &MetadataMap, payload: &[u8]) -> Result<String, FlightError> {
        if !self.required() {
            return Ok(String::new());
        }
        let token = if payload.is_empty() {
            basic_password(headers)?
        } else {
            String::from_utf8(payload.to_vec())
                .map_err(|_| FlightError::unauthenticated("the handshake payload is not a token"))?
        };
        self.tenant_of(&token)?;
        Ok(token)
    }

    fn tenant_of(&self, token: &str) -> Result<String, FlightError> {
        self.tokens
            .get(token)
            .cloned()
            .ok_or_else(|| FlightError::unauthenticated("unknown token"))
    }
}

/// The password of `authorization: Basic base64(user:password)`.
fn basic_password(headers: &MetadataMap) -> Result<String, FlightError> {
    let missing = || FlightError::unauthenticated("the handshake carries no token");
    let encoded = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(missing)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| missing())?;
    let text = String::from_utf8(decoded).map_err(|_| missing())?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
        .ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(
            "authorization",
            value.parse().unwrap_or_else(|e| panic!("{e:?}")),
        );
        map
    }

    #[test]
    fn tokens_map_to_tenants_and_anything_else_is_refused() {
        assert_eq!(
            Auth::none().tenant(&MetadataMap::new()).ok().as_deref(),
            Some("default")
        );
        let auth = Auth::tokens(HashMap::from([("s3cret".to_string(), "acme".to_string())]));
        assert_eq!(
            auth.tenant(&headers("Bearer s3cret")).ok().as_deref(),
            Some("acme")
        );
        for bad in [
            MetadataMap::new(),
            headers("Bearer nope"),
            headers("s3cret"),
        ] {
            let err = auth
                .tenant(&bad)
                .err()
                .unwrap_or_else(|| panic!("accepted"));
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
        assert_eq!(
            auth.handshake(&headers(&format!("Basic {basic}")), b"")
                .ok()
                .as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            auth.handshake(&MetadataMap::new(), b"s3cret")
                .ok()
                .as_deref(),
            Some("s3cret")
        );
        assert!(auth.handshake(&MetadataMap::new(), b"nope").is_err());
    }
}
