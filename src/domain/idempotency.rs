//! Idempotency keys: the `Idempotency-Key` a client sends with a write it may retry, and what
//! the gateway derives from it.
//!
//! The key itself is never kept. From the key and its scope (a tenant, or the master-token
//! routes) come three values: the [`KeyId`] a stored answer is found by, the secret that seals
//! that answer (it may carry a new user's token), and the [`Fingerprint`] of the request, so
//! that a reuse of the key for another request is recognised without keeping the request.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use super::{TenantId, UserId};

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// An `Idempotency-Key` as a client sent it: 1 to 255 printable ASCII characters (a UUID is the
/// usual choice). Never logged, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks the header's value.
    pub fn parse(raw: &[u8]) -> Result<Self, &'static str> {
        if raw.iter().all(|b| *b == b' ') {
            return Err("must not be empty");
        }
        if raw.len() > MAX_KEY_CHARS {
            return Err("must be at most 255 characters");
        }
        if !raw.iter().all(|b| (b' '..=b'~').contains(b)) {
            return Err("must be printable ASCII characters");
        }
        // All printable ASCII, so one character per byte.
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// What the gateway keeps and computes for this key within `scope`.
    pub fn derive(&self, scope: KeyScope) -> DerivedKey {
        let scope_bytes = scope.bytes();
        // SHA-256 over a label per purpose, the length-prefixed scope, then the key.
        let derive = |purpose: &[u8]| -> [u8; 32] {
            let mut hash = Sha256::new();
            hash.update(b"wuts idempotency ");
            hash.update(purpose);
            hash.update([0]);
            hash.update((scope_bytes.len() as u64).to_be_bytes());
            hash.update(&scope_bytes);
            hash.update(self.0.as_bytes());
            hash.finalize().into()
        };
        DerivedKey {
            id: KeyId(derive(b"id")),
            secret: derive(b"secret"),
        }
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKey(<redacted>)")
    }
}

/// Whose keys a key is told apart from: a tenant's (every user of the tenant shares them), or
/// the master-token routes'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    Tenant(TenantId),
    Master,
}

impl KeyScope {
    fn bytes(self) -> Vec<u8> {
        match self {
            KeyScope::Tenant(tenant) => {
                let mut bytes = b"tenant:".to_vec();
                bytes.extend_from_slice(tenant.0.as_bytes());
                bytes
            }
            KeyScope::Master => b"master".to_vec(),
        }
    }

    /// The tenant, for a tenant's scope.
    pub fn tenant(self) -> Option<TenantId> {
        match self {
            KeyScope::Tenant(tenant) => Some(tenant),
            KeyScope::Master => None,
        }
    }
}

/// What a stored answer is found by: a SHA-256 of the scope and the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId(pub [u8; 32]);

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyId(..)")
    }
}

/// SHA-256 of a request (who sent it, method, path, query and body), keyed by the key's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

/// The parts of a request its fingerprint covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The caller within the scope, when the scope has several (a tenant's users).
    pub caller: Option<UserId>,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
}

/// Why a stored answer could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the stored answer could not be sealed")]
    Seal,
    #[error("the stored answer does not open with this key")]
    Open,
}

const NONCE_LEN: usize = 24;

/// A key's id and secret within its scope.
#[derive(Clone)]
pub struct DerivedKey {
    pub id: KeyId,
    secret: [u8; 32],
}

impl DerivedKey {
    /// The request's fingerprint. Each part is length-prefixed, so no two requests share one by
    /// moving bytes between parts; the caller is part of it, so that a key is answered again
    /// only to the user who sent it first.
    pub fn fingerprint(&self, request: RequestParts<'_>) -> Fingerprint {
        let mut hash = Sha256::new();
        hash.update(b"wuts idempotency request\0");
        hash.update(self.secret);
        match request.caller {
            Some(user) => {
                hash.update([1]);
                hash.update(user.0.as_bytes());
            }
            None => hash.update([0]),
        }
        for part in [
            request.method.as_bytes(),
            request.path.as_bytes(),
            request.query.as_bytes(),
            request.body,
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Fingerprint(hash.finalize().into())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.secret.into())
    }

    /// Seals an answer for storage: nonce, then ciphertext bound to the key's id.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &self.id.0,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`DerivedKey::seal`] wrote.
    pub fn open(&self, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        let (Some(nonce), Some(sealed)) = (stored.get(..NONCE_LEN), stored.get(NONCE_LEN..)) else {
            return Err(SealError::Open);
        };
        let mut nonce_bytes = XNonce::default();
        nonce_bytes.copy_from_slice(nonce);
        self.cipher()
            .decrypt(
                &nonce_bytes,
                Payload {
                    msg: sealed,
                    aad: &self.id.0,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(raw.as_bytes()).expect("valid key")
    }

    fn request<'a>(body: &'a [u8]) -> RequestParts<'a> {
        RequestParts {
            caller: None,
            method: "POST",
            path: "/devices",
            query: "",
            body,
        }
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(b"   ").is_err());
        assert!(IdempotencyKey::parse(&[b'a'; 256]).is_err());
        assert!(IdempotencyKey::parse(&[b'a'; 255]).is_ok());
        assert!(IdempotencyKey::parse(b"tab\there").is_err());
        assert!(IdempotencyKey::parse("caf\u{e9}".as_bytes()).is_err());
        assert!(IdempotencyKey::parse(b"order 42 / retry ~ok").is_ok());
    }

    #[test]
    fn scopes_and_keys_derive_different_ids() {
        let tenant = KeyScope::Tenant(TenantId::new_random());
        let other = KeyScope::Tenant(TenantId::new_random());
        let a = key("k-1").derive(tenant);
        assert_eq!(a.id, key("k-1").derive(tenant).id);
        assert_ne!(a.id, key("k-1").derive(other).id);
        assert_ne!(a.id, key("k-1").derive(KeyScope::Master).id);
        assert_ne!(a.id, key("k-2").derive(tenant).id);
    }

    #[test]
    fn fingerprints_tell_requests_and_callers_apart() {
        let derived = key("k").derive(KeyScope::Master);
        let base = derived.fingerprint(request(b"{\"name\":\"a\"}"));
        assert_eq!(base, derived.fingerprint(request(b"{\"name\":\"a\"}")));
        assert_ne!(base, derived.fingerprint(request(b"{\"name\":\"b\"}")));
        let moved = RequestParts {
            path: "/devicesPOST",
            method: "",
            ..request(b"{\"name\":\"a\"}")
        };
        assert_ne!(base, derived.fingerprint(moved));
        let with_query = RequestParts {
            query: "device_id=1",
            ..request(b"{\"name\":\"a\"}")
        };
        assert_ne!(base, derived.fingerprint(with_query));
        let by_user = RequestParts {
            caller: Some(UserId::new_random()),
            ..request(b"{\"name\":\"a\"}")
        };
        assert_ne!(base, derived.fingerprint(by_user));
    }

    #[test]
    fn a_sealed_answer_opens_only_with_its_key() {
        let scope = KeyScope::Tenant(TenantId::new_random());
        let derived = key("k").derive(scope);
        let sealed = derived.seal(b"the answer").expect("sealed");
        assert!(!sealed.windows(10).any(|w| w == b"the answer"));
        assert_eq!(derived.open(&sealed).expect("opens"), b"the answer");
        assert_eq!(key("K").derive(scope).open(&sealed), Err(SealError::Open));
        assert_eq!(derived.open(&sealed[..10]), Err(SealError::Open));
    }

    proptest::proptest! {
        #[test]
        fn any_header_value_is_parsed_without_panicking(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(parsed) = IdempotencyKey::parse(&raw) {
                proptest::prop_assert!(!raw.is_empty() && raw.len() <= MAX_KEY_CHARS);
                proptest::prop_assert_eq!(parsed.0.as_bytes(), &raw[..]);
            }
        }
    }
}
