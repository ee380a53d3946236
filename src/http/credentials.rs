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
    /// What this node heard announced on [`CREDENTIALS_CHANNEL`] (its own announcements too).
    heard: tokio::sync::broadcast::Sender<String>,
    /// This node's id and how to list the other live nodes, once it listens.
    nodes: std::sync::OnceLock<Nodes>,
}

/// Who hears a revocation: this node, and the others it waits for.
struct Nodes {
    me: String,
    peers: Box<dyn Fn() -> Vec<String> + Send + Sync>,
}

/// The `NOTIFY` channel on which a node announces that a user's or a tenant's tokens stopped
/// working (`user:<id>`, `tenant:<id>`): every node forgets them at once.
pub const CREDENTIALS_CHANNEL: &str = "wuts_credentials";

/// How long a revocation waits for every live node to say it heard it (a node that died meanwhile
/// is not waited for longer).
const ANNOUNCE_ECHO: Duration = Duration::from_secs(1);
/// What a node answers on the same channel once it forgot what an announcement names:
/// `heard:<announcement>:<node id>`.
const HEARD: &str = "heard:";

impl TokenCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
            heard: tokio::sync::broadcast::channel(64).0,
            nodes: std::sync::OnceLock::new(),
        }
    }

    /// Listens for other nodes' revocations and forgets what they name, then says so on the
    /// channel (`me`: this node's id), so that the node that revoked answers only once every live
    /// node (`peers`, the others) forgot. Reconnects after a break; what was announced meanwhile
    /// is forgotten within the cache's TTL.
    pub fn listen(
        self: &std::sync::Arc<Self>,
        db: sqlx::PgPool,
        me: String,
        peers: impl Fn() -> Vec<String> + Send + Sync + 'static,
    ) {
        let _ = self.nodes.set(Nodes {
            me: me.clone(),
            peers: Box::new(peers),
        });
        let cache = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                if let Ok(mut listener) = sqlx::postgres::PgListener::connect_with(&db).await
                    && listener.listen(CREDENTIALS_CHANNEL).await.is_ok()
                {
                    while let Ok(notification) = listener.recv().await {
                        let Some(cache) = cache.upgrade() else { return };
                        let payload = notification.payload();
                        if cache.heard_announcement(payload) {
                            let db = db.clone();
                            let heard = format!("{HEARD}{payload}:{me}");
                            tokio::spawn(async move {
                                if let Err(err) =
                                    crate::store::users::announce_credentials(&db, &heard).await
                                {
                                    tracing::warn!(error = %err, "cannot say a revocation was heard");
                                }
                            });
                        }
                    }
                }
                if cache.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Forgets what an announcement names; whether it named something (and is to be
    /// acknowledged).
    fn heard_announcement(&self, payload: &str) -> bool {
        let mut revocation = false;
        if let Some((kind, id)) = payload.split_once(':')
            && let Ok(id) = uuid::Uuid::parse_str(id)
        {
            match kind {
                "user" => {
                    self.forget_user(UserId(id));
                    revocation = true;
                }
                "tenant" => {
                    self.forget_tenant(TenantId(id));
                    revocation = true;
                }
                _ => {}
            }
        }
        let _ = self.heard.send(payload.to_owned());
        revocation
    }

    /// Forgets a user's tokens here and on every node (rotation, role change, deactivation,
    /// deletion).
    pub async fn revoke_user(&self, db: &sqlx::PgPool, user_id: UserId) {
        self.forget_user(user_id);
        self.announce(db, format!("user:{}", user_id.0)).await;
    }

    /// Forgets a tenant's tokens here and on every node (tenant deletion).
    pub async fn revoke_tenant(&self, db: &sqlx::PgPool, tenant_id: TenantId) {
        self.forget_tenant(tenant_id);
        self.announce(db, format!("tenant:{}", tenant_id.0)).await;
    }

    /// Announces `payload`, then waits (briefly) until this node and every other live node said
    /// they forgot what it names: the answer to the revoking request goes out only then, so the
    /// next request, on any node, is refused. Before this node listens, it waits for its own
    /// announcement back.
    async fn announce(&self, db: &sqlx::PgPool, payload: String) {
        let mut heard = self.heard.subscribe();
        let mut waiting: std::collections::HashSet<String> = match self.nodes.get() {
            Some(nodes) => {
                let mut all = (nodes.peers)();
                all.push(nodes.me.clone());
                all.into_iter().collect()
            }
            None => std::collections::HashSet::new(),
        };
        let listening = !waiting.is_empty();
        if let Err(err) = crate::store::users::announce_credentials(db, &payload).await {
            tracing::warn!(error = %err, "cannot announce a revocation to the other nodes");
            return;
        }
        let _ = tokio::time::timeout(ANNOUNCE_ECHO, async {
            loop {
                let seen = match heard.recv().await {
                    Ok(seen) => seen,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if !listening && seen == payload {
                    return;
                }
                if let Some(node) = seen
                    .strip_prefix(HEARD)
                    .and_then(|rest| rest.strip_prefix(payload.as_str()))
                    .and_then(|rest| rest.strip_prefix(':'))
                {
                    waiting.remove(node);
                    if waiting.is_empty() {
                        return;
                    }
                }
            }
        })
        .await;
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
