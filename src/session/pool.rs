//! The pool of device sessions of this node: starting actors on demand, restoring the devices
//! that should be connected at startup (bounded concurrency, jitter), and stopping them all on
//! shutdown.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, watch};

use super::actor::DeviceActor;
use super::caches::DeviceCaches;
use super::cluster::{Cluster, ClusterConfig};
use super::deps::{KeyStore, SessionConfig, SessionDeps};
use super::handle::DeviceHandle;
use super::ownership::Ownership;
use super::state::{SessionState, SessionStatus};
use crate::domain::{DeviceId, DeviceScope};
use crate::store::events::Wakeup;

/// How long a restored device may take to connect before its restore slot goes to the next.
pub(super) const RESTORE_SETTLE: Duration = Duration::from_secs(15);

/// This node's sessions.
pub struct SessionPool {
    deps: Arc<SessionDeps>,
    sessions: RwLock<HashMap<DeviceId, DeviceHandle>>,
    cluster: Arc<Cluster>,
    /// Devices connecting at once when restoring or taking over (`restore_concurrency`).
    restore_slots: Arc<Semaphore>,
}

impl SessionPool {
    /// Starts the pool: opens the ownership lock connection and listens for lost devices.
    pub async fn start(
        db: PgPool,
        config: SessionConfig,
        keys: Arc<dyn KeyStore>,
        lock_options: sqlx::postgres::PgConnectOptions,
        cluster: ClusterConfig,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let (ownership, mut lost) =
            Ownership::start(db.clone(), lock_options, cluster.node_id.clone()).await?;
        let restore_slots = Arc::new(Semaphore::new(config.restore_concurrency.max(1)));
        let pool = Arc::new(Self {
            cluster: Arc::new(Cluster::new(cluster)),
            restore_slots,
            deps: Arc::new(SessionDeps {
                wakeup: Wakeup::start(db.clone()),
                background: Arc::new(Semaphore::new(super::deps::background_permits(
                    db.options().get_max_connections(),
                ))),
                db,
                config,
                keys,
                ownership,
                http: Arc::new(whatsapp_rust::http::UreqHttpClient::new()),
            }),
            sessions: RwLock::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            while let Some(device) = lost.recv().await {
                let Some(pool) = weak.upgrade() else { break };
                pool.stop(device).await;
            }
        });
        Ok(pool)
    }

    pub fn config(&self) -> &SessionConfig {
        &self.deps.config
    }

    /// This node among the others.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub(super) fn ownership(&self) -> &Ownership {
        &self.deps.ownership
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.deps.db
    }

    pub(super) fn restore_slots(&self) -> &Arc<Semaphore> {
        &self.restore_slots
    }

    /// Whether this node holds the device (its lock and lease).
    pub fn holds(&self, device: DeviceId) -> bool {
        self.deps.ownership.holds(device)
    }

    /// How many devices this node holds.
    pub fn held_count(&self) -> usize {
        self.deps.ownership.held().len()
    }

    /// The running session of a device, if any.
    pub fn get(&self, device: DeviceId) -> Option<DeviceHandle> {
        self.sessions
            .read()
            .ok()
            .and_then(|s| s.get(&device).cloned())
    }

    /// The session of a device, starting its actor (not its client) when there is none.
    /// `status` seeds the state from the device row.
    pub fn ensure(
        &self,
        scope: DeviceScope,
        initial: impl FnOnce() -> SessionState,
    ) -> DeviceHandle {
        let device = scope.device();
        if let Some(handle) = self.get(device)
            && !handle.is_closed()
        {
            return handle;
        }
        let Ok(mut sessions) = self.sessions.write() else {
            // A poisoned map means a panic elsewhere; serve this request with a fresh actor.
            return self.spawn(scope, initial());
        };
        if let Some(handle) = sessions.get(&device)
            && !handle.is_closed()
        {
            return handle.clone();
        }
        let handle = self.spawn(scope, initial());
        sessions.insert(device, handle.clone());
        handle
    }

    fn spawn(&self, scope: DeviceScope, initial: SessionState) -> DeviceHandle {
        use tracing::Instrument;
        let (commands_tx, commands_rx) = mpsc::channel(self.deps.config.command_queue.max(1));
        let state = Arc::new(watch::Sender::new(initial));
        let (client_tx, client_rx) = watch::channel(None);
        let caches = Arc::new(DeviceCaches::default());
        let handle = DeviceHandle::new(
            scope,
            commands_tx,
            state.subscribe(),
            client_rx,
            &self.deps.config,
            caches.clone(),
            self.deps.wakeup.clone(),
        );
        let actor = DeviceActor::new(scope, self.deps.clone(), state, client_tx, caches);
        let span = tracing::info_span!(
            "device",
            "tenant.id" = %scope.tenant(),
            "device.id" = %scope.device()
        );
        tokio::spawn(actor.run(commands_rx).instrument(span));
        handle
    }

    /// Stops a device's session (keeping what should happen at the next start) and forgets it.
    pub async fn stop(&self, device: DeviceId) {
        let handle = self
            .sessions
            .write()
            .ok()
            .and_then(|mut s| s.remove(&device));
        if let Some(handle) = handle {
            handle.shutdown().await;
        }
    }

    /// Deletes a device's session: unlinks it from WhatsApp if connected, erases its keys.
    pub async fn delete(&self, scope: DeviceScope) -> Result<(), super::SessionError> {
        let handle = self.ensure(scope, || SessionState::new(SessionStatus::Unpaired));
        let result = handle.delete().await;
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.remove(&scope.device());
        }
        result
    }

    /// Connects every device that should be connected and that no live node serves (of those,
    /// the ones placement gives this node), each after a random delay so that a restart of many
    /// gateways does not reconnect everything at once, and a bounded number connecting at any
    /// moment. Answers how many it started.
    pub async fn restore(self: &Arc<Self>) -> usize {
        self.take_orphans(true).await
    }

    /// Stops every session (keeping what should happen at the next start), the pool staying
    /// usable: this node was declared dead and its devices may be served elsewhere.
    pub(super) async fn stop_all(&self) {
        let handles: Vec<DeviceHandle> = self
            .sessions
            .write()
            .map(|mut s| s.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        futures::future::join_all(handles.iter().map(DeviceHandle::shutdown)).await;
    }

    /// Stops every session cleanly, within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let handles: Vec<DeviceHandle> = self
            .sessions
            .write()
            .map(|mut s| s.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        if handles.is_empty() {
            return;
        }
        tracing::info!(devices = handles.len(), "closing device sessions");
        let all = futures::future::join_all(handles.iter().map(DeviceHandle::shutdown));
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("some device sessions did not close in time");
        }
    }

    /// Devices by session status, for metrics and benchmarks.
    pub fn status_counts(&self) -> HashMap<SessionStatus, usize> {
        let mut counts = HashMap::new();
        if let Ok(sessions) = self.sessions.read() {
            for handle in sessions.values() {
                *counts.entry(handle.state().status).or_insert(0) += 1;
            }
        }
        counts
    }
}
