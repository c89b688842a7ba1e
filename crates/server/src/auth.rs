//! API keys and scopes.
//!
//! Invariants: keys are compared in constant time (for a given candidate
//! length, the time does not depend on which bytes match); when no key is
//! configured at all, every request is allowed; otherwise every endpoint but
//! `/health` needs a key holding its scope, and admin keys hold every scope.

use axum::http::{header, HeaderMap};

use crate::config::AuthSection;
use crate::error::ApiError;

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    ingest: Vec<Vec<u8>>,
    read: Vec<Vec<u8>>,
    admin: Vec<Vec<u8>>,
}

/// Equal-length comparison whose time does not depend on the contents.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// True when `candidate` is in `keys`; every key is compared (no early exit).
fn any_matches(keys: &[Vec<u8>], candidate: &[u8]) -> bool {
    let mut found = false;
    for k in keys {
        found |= ct_eq(k, candidate);
    }
    found
}

impl Keys {
    pub fn new(auth: &AuthSection) -> Keys {
        let bytes = |v: &[String]| v.iter().map(|k| k.as_bytes().to_vec()).collect();
        Keys {
            ingest: bytes(&auth.ingest_keys),
            read: bytes(&auth.read_keys),
            admin: bytes(&auth.admin_keys),
        }
    }

    pub fn enabled(&self) -> bool {
        !(self.ingest.is_empty() && self.read.is_empty() && self.admin.is_empty())
    }

    /// Checks the request's key against `scope`.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        if !self.enabled() {
            return Ok(());
        }
        let key = presented_key(headers).ok_or(ApiError::MissingKey)?;
        let admin = any_matches(&self.admin, key);
        let ingest = any_matches(&self.ingest, key);
        let read = any_matches(&self.read, key);
        let allowed = admin
            || match scope {
                Scope::Ingest => ingest,
                Scope::Read => read,
                Scope::Admin => false,
            };
        if allowed {
            Ok(())
        } else if ingest || read {
            Err(ApiError::Forbidden(scope.as_str()))
        } else {
            Err(ApiError::UnknownKey)
        }
    }
}

/// `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(v[7..].trim_ascii());
        }
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiErrorKind;

    fn keys() -> Keys {
        Keys::new(&AuthSection {
            ingest_keys: vec!["ingest-key-1".into()],
            read_keys: vec!["read-key-123".into()],
            admin_keys: vec!["admin-key-12".into()],
        })
    }

    fn with(header: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    fn status(r: Result<(), ApiError>) -> Option<ApiErrorKind> {
        r.err().map(|e| e.kind())
    }

    #[test]
    fn each_scope_is_allowed_and_denied_where_it_should_be() {
        let k = keys();
        use ApiErrorKind::*;
        let cases = [
            ("ingest-key-1", Scope::Ingest, None),
            ("ingest-key-1", Scope::Read, Some(Forbidden)),
            ("ingest-key-1", Scope::Admin, Some(Forbidden)),
            ("read-key-123", Scope::Read, None),
            ("read-key-123", Scope::Ingest, Some(Forbidden)),
            ("read-key-123", Scope::Admin, Some(Forbidden)),
            ("admin-key-12", Scope::Ingest, None),
            ("admin-key-12", Scope::Read, None),
            ("admin-key-12", Scope::Admin, None),
            ("admin-key-13", Scope::Read, Some(Unauthenticated)),
        ];
        for (key, scope, want) in cases {
            assert_eq!(
                status(k.check(&with("authorization", &format!("Bearer {key}")), scope)),
                want,
                "{key} {scope:?}"
            );
            assert_eq!(
                status(k.check(&with("x-api-key", key), scope)),
                want,
                "{key} {scope:?}"
            );
        }
        assert_eq!(
            status(k.check(&HeaderMap::new(), Scope::Read)),
            Some(Unauthenticated)
        );
        assert_eq!(
            status(k.check(&with("authorization", "Basic YWRtaW4="), Scope::Read)),
            Some(Unauthenticated)
        );
    }

    #[test]
    fn without_keys_everything_is_open() {
        let k = Keys::default();
        assert!(k.check(&HeaderMap::new(), Scope::Admin).is_ok());
    }

    #[test]
    fn constant_time_compare_is_plain_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
