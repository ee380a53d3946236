//! What every device actor shares: the session settings, the key store, the database and the
//! ownership of devices across nodes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use wacore::store::traits::Backend;

use super::ownership::Ownership;
use crate::domain::DeviceId;
use crate::store::events::Wakeup;

/// Session settings (from `wuts serve`'s configuration).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// WhatsApp's WebSocket endpoint (or a stand-in's, in tests).
    pub wa_url: String,
    /// The WhatsApp Web version to announce; fetched from WhatsApp when `None`.
    pub wa_version: Option<(u32, u32, u32)>,
    /// How long a WhatsApp request may take before `WHATSAPP_TIMEOUT`.
    pub wa_timeout: Duration,
    /// How long `/qr` waits for the first QR code, and `/connect` for the connection.
    pub qr_wait: Duration,
    pub connect_wait: Duration,
    /// Startup restore: devices connecting at once, and the random delay before each.
    pub restore_concurrency: usize,
    pub restore_jitter: Duration,
    /// Commands queued per device before `RATE_LIMITED`.
    pub command_queue: usize,
    /// Largest random delay before a dropped session reconnects.
    pub reconnect_jitter: Duration,
    /// Pace of each device's number checks, resolve queries and participant changes.
    pub pace: super::pacing::Pace,
    /// The OS name shown in the phone's list of linked devices.
    pub device_os: String,
}

/// Where a device's WhatsApp keys live.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// whatsapp-rust's storage for one device, writing only while `gate` (if any) is open.
    fn backend(
        &self,
        device: DeviceId,
        gate: Option<Arc<wuts_wa_store::WriteGate>>,
    ) -> Arc<dyn Backend>;
    /// Whether the device holds paired credentials (so it can connect without a QR).
    async fn has_credentials(&self, device: DeviceId) -> anyhow::Result<bool>;
    /// Erases every key and state of the device.
    async fn erase(&self, device: DeviceId) -> anyhow::Result<()>;
}

/// What every actor shares.
pub struct SessionDeps {
    pub db: PgPool,
    pub config: SessionConfig,
    pub keys: Arc<dyn KeyStore>,
    pub ownership: Ownership,
    /// whatsapp-rust's HTTP client (version fetch, media), one for every session of the process.
    pub http: Arc<dyn whatsapp_rust::http::HttpClient>,
    /// Wakes the delivery workers once a transaction that appended events has committed.
    pub wakeup: Wakeup,
    /// Permits for the database work sessions do in the background (the block-list read a
    /// notification prompts, the group reconcile of a connect): half the pool's connections.
    /// When thousands of devices are notified at once, that work waits its turn here, in order
    /// and without a deadline, instead of timing out on the pool (whose 5 s wait is for API
    /// calls), and the other half stays free for API calls and the key store.
    pub background: Arc<tokio::sync::Semaphore>,
}

/// Permits for a pool of `connections`: half of them, at least one.
pub fn background_permits(connections: u32) -> usize {
    (connections as usize / 2).max(1)
}

/// One-time pre-keys generated and uploaded per batch: at pairing, and again whenever WhatsApp
/// reports fewer than five left. whatsmeow's batch (`WantedPreKeyCount`, 50), not WhatsApp
/// Web's `UPLOAD_KEYS_COUNT` (812, whatsapp-rust's default): a gateway session starts few new
/// chats, and the 812-key upload grew each session's send buffer by about 40 KiB at pairing
/// (whatsapp-rust keeps that buffer for the life of the connection) and wrote 812 key rows
/// per device to PostgreSQL.
pub const PRE_KEY_BATCH: usize = 50;

/// whatsapp-rust's caches for one gateway session. The defaults are WhatsApp Web's, for one
/// tab that renders chats and sends to large groups; a gateway process holds thousands of
/// sessions that answer API calls, so the per-session lock and lane maps are bounded far lower.
/// Caches whose entries the gateway relies on for correctness (the LID/phone cache) keep their
/// defaults.
pub(crate) fn session_cache_config() -> whatsapp_rust::CacheConfig {
    let defaults = whatsapp_rust::CacheConfig::default();
    whatsapp_rust::CacheConfig {
        session_locks_capacity: 512,
        chat_lanes_capacity: 256,
        group_distribution_locks_capacity: 64,
        resend_rate_limiter_capacity: 128,
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::background_permits;

    #[test]
    fn background_work_gets_half_the_pool_and_never_none() {
        assert_eq!(background_permits(20), 10);
        assert_eq!(background_permits(3), 1);
        assert_eq!(background_permits(1), 1);
    }
}
