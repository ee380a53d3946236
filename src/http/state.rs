//! What every handler can reach.

use std::sync::Arc;

use sqlx::PgPool;

use super::credentials::{MasterToken, TokenCache};
use crate::session::SessionPool;

/// Shared state of the HTTP layer. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub auth_cache: Arc<TokenCache>,
    pub master_token: Option<MasterToken>,
    pub sessions: Arc<SessionPool>,
    /// This node's webhook delivery workers (and the sender `POST /webhook/test` uses).
    pub deliveries: Arc<crate::delivery::Deliverer>,
    /// Per-tenant request budgets.
    pub budgets: Arc<super::budget::TenantBudgets>,
    /// Forwarding requests to the node that serves their device.
    pub forwarder: Arc<super::forward::Forwarder>,
}
