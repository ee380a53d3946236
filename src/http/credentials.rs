//! What authentication knows: the authenticated caller, the master token (as a digest) and the
//! bounded cache of token lookups. Held in the application state; the extractors are in
//! `auth.rs`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::domain::{Role, TenantId, TokenHash, UserId};

/// The authenticated caller of a tenant route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub role: Role,
}

impl AuthUser {
    /// Refuses callers that are not admins of their tenant.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this route needs the admin role".to_owned(),
            ))
        }
    }
}

/// The configured master token, kept only as its SHA-256 so that comparison is constant-time and
/// independent of the presented token's length.
#[derive(Clone)]
pub struct MasterToken([u8; 32]);

impl MasterToken {
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.trim().as_bytes()).into())
    }

    pub(super) fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

impl std::fmt::Debug for MasterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterToken(<redacted>)")
    }
}

/// Verified tokens, remembered for a short time. Bounded: when full, expired entries go first,
/// then arbitrary ones (a miss only costs one query).
pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<TokenHash, (AuthUser, Instant)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, hash: &TokenHash) -> Option<AuthUser> {
        let entries = self.entries.read().ok()?;
        let (user, stored_at) = entries.get(hash)?;
        (stored_at.elapsed() < self.ttl).then_some(*user)
    }

    pub fn insert(&self, hash: TokenHash, user: AuthUser) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&hash) {
            let ttl = self.ttl;
            entries.retain(|_, (_, stored_at)| stored_at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                let excess = entries.len() + 1 - self.capacity;
                let evict: Vec<TokenHash> = entries
                    .keys()
                    .take(excess.max(self.capacity / 10))
                    .copied()
                    .collect();
                for key in evict {
                    entries.remove(&key);
                }
            }
        }
        entries.insert(hash, (user, Instant::now()));
    }

    /// Forgets every token of a user (rotation, role change, deactivation, deletion).
    pub fn forget_user(&self, user_id: UserId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (user, _)| user.user_id != user_id);
        }
    }

    /// Forgets every token of a tenant (tenant deletion).
    pub fn forget_tenant(&self, tenant_id: TenantId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (user, _)| user.tenant_id != tenant_id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
