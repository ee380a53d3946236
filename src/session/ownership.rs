//! Exactly one live connection per device across every gateway process.
//!
//! Before an actor connects a device it takes a session-level PostgreSQL advisory lock keyed by
//! the device, on this node's *lock connection*: one dedicated connection per process holding
//! every lock the node owns (a connection per device would not scale to thousands). A second
//! process on the same database fails to take the lock and does not connect.
//!
//! If the lock connection breaks, PostgreSQL releases every lock it held. The keeper notices
//! within its check interval, reconnects, and takes the locks back; those another node took in
//! the meantime are reported lost, and their sessions are stopped.
//!
//! Beside the lock, a device's lease row (`device_owners`, see `store::nodes`) names this node
//! under a new epoch at each takeover: the database fences every write for the device from
//! another node's connections by it, and requests for the device are routed to its holder. The
//! lock connection is also the one the node registers on, so that its row names the backend
//! whose end releases the node's locks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::domain::DeviceId;
use crate::store::nodes;

/// How often the keeper checks its lock connection.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The most devices the keeper takes in one batch.
const ACQUIRE_BATCH: usize = 256;

/// The advisory-lock key of a device: its UUID folded to 64 bits.
pub fn lock_key(device: DeviceId) -> i64 {
    let bytes = device.0.as_bytes();
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&bytes[..8]);
    low.copy_from_slice(&bytes[8..]);
    i64::from_be_bytes(high) ^ i64::from_be_bytes(low)
}

enum Request {
    Acquire(DeviceId, oneshot::Sender<Result<bool, sqlx::Error>>),
    Release(DeviceId, oneshot::Sender<()>),
    Register(String, oneshot::Sender<Result<(), sqlx::Error>>),
}

/// This node's claim on devices. Cheap to clone.
#[derive(Clone)]
pub struct Ownership {
    requests: mpsc::Sender<Request>,
    node_id: Arc<str>,
    held: Arc<RwLock<HashSet<DeviceId>>>,
    pool: PgPool,
}

impl Ownership {
    /// Opens the lock connection and starts its keeper. Devices whose lock is lost are sent on
    /// the returned channel.
    pub async fn start(
        pool: PgPool,
        options: PgConnectOptions,
        node_id: String,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DeviceId>), sqlx::Error> {
        let options = options
            .log_statements(tracing::log::LevelFilter::Trace)
            .application_name(&format!("{}{node_id}", nodes::APPLICATION_PREFIX));
        let connection = PgConnection::connect_with(&options).await?;
        let (requests_tx, requests_rx) = mpsc::channel(256);
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        let held = Arc::new(RwLock::new(HashSet::new()));
        let keeper = Keeper {
            pool: pool.clone(),
            options,
            node_id: node_id.clone(),
            connection: Some(connection),
            held: held.clone(),
            epochs: HashMap::new(),
            lost: lost_tx,
        };
        tokio::spawn(keeper.run(requests_rx));
        Ok((
            Self {
                requests: requests_tx,
                node_id: node_id.into(),
                held,
                pool,
            },
            lost_rx,
        ))
    }

    /// Registers this node at `url` in the node registry, from the lock connection.
    pub async fn register(&self, url: &str) -> Result<(), sqlx::Error> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Register(url.to_owned(), tx))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        rx.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Whether this node holds the device now.
    pub fn holds(&self, device: DeviceId) -> bool {
        self.held.read().is_ok_and(|held| held.contains(&device))
    }

    /// The devices this node holds.
    pub fn held(&self) -> Vec<DeviceId> {
        self.held
            .read()
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Records in the device's lease that its session here reached WhatsApp.
    pub async fn connected(&self, device: DeviceId) {
        if let Err(err) = nodes::mark_connected(&self.pool, device, &self.node_id).await {
            tracing::warn!(error = %err, "cannot record the device connected in its lease");
        }
    }

    /// This node's id, as written in `device_owners`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Takes the device for this node. `Ok(false)`: another node holds it.
    pub async fn acquire(&self, device: DeviceId) -> Result<bool, sqlx::Error> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Acquire(device, tx))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        rx.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Gives the device up. Harmless if this node did not hold it.
    pub async fn release(&self, device: DeviceId) {
        let (tx, rx) = oneshot::channel();
        if self
            .requests
            .send(Request::Release(device, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

struct Keeper {
    pool: PgPool,
    options: PgConnectOptions,
    node_id: String,
    connection: Option<PgConnection>,
    held: Arc<RwLock<HashSet<DeviceId>>>,
    /// The epoch of each lease this node took: after a break of the lock connection, a lock is
    /// taken back only if the lease is still this node's under that epoch (nobody took the
    /// device meanwhile, even to give it up since).
    epochs: HashMap<DeviceId, i64>,
    lost: mpsc::UnboundedSender<DeviceId>,
}

impl Keeper {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut queued = Vec::with_capacity(ACQUIRE_BATCH);
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => {
                        // Whatever else is waiting is served with it: a restore or a takeover
                        // of thousands of devices takes their locks and leases a batch at a
                        // time, not one round trip (and one commit) per device.
                        queued.push(request);
                        while queued.len() < ACQUIRE_BATCH {
                            match requests.try_recv() {
                                Ok(request) => queued.push(request),
                                Err(_) => break,
                            }
                        }
                        self.serve(&mut queued).await;
                    }
                    // Every handle is gone: the node is shutting down. Closing the connection
                    // releases whatever is still held.
                    None => break,
                },
                _ = check.tick() => self.check().await,
            }
        }
        if let Some(connection) = self.connection.take() {
            let _ = connection.close().await;
        }
    }

    /// Serves requests in their order, each run of acquisitions together.
    async fn serve(&mut self, queued: &mut Vec<Request>) {
        let mut acquiring = Vec::new();
        for request in queued.drain(..) {
            match request {
                Request::Acquire(device, reply) => acquiring.push((device, reply)),
                other => {
                    self.acquire_all(std::mem::take(&mut acquiring)).await;
                    self.serve_one(other).await;
                }
            }
        }
        self.acquire_all(acquiring).await;
    }

    async fn serve_one(&mut self, request: Request) {
        match request {
            Request::Acquire(device, reply) => {
                let result = self.acquire(device).await;
                let _ = reply.send(result);
            }
            Request::Release(device, reply) => {
                self.release(device).await;
                let _ = reply.send(());
            }
            Request::Register(url, reply) => {
                let node_id = self.node_id.clone();
                let result = match self.connection().await {
                    Ok(connection) => nodes::register(connection, &node_id, &url).await,
                    Err(err) => Err(err),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Takes several devices: their locks in one statement, the leases of those taken in
    /// another. Should the batch fail (a device deleted meanwhile, the connection broken), each
    /// device is taken on its own, as [`Keeper::acquire`] does.
    async fn acquire_all(
        &mut self,
        requests: Vec<(DeviceId, oneshot::Sender<Result<bool, sqlx::Error>>)>,
    ) {
        if requests.len() <= 1 {
            for (device, reply) in requests {
                let result = self.acquire(device).await;
                let _ = reply.send(result);
            }
            return;
        }
        let mut wanted: Vec<DeviceId> = requests
            .iter()
            .map(|(device, _)| *device)
            .filter(|device| !self.holds(*device))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        match self.take_all(&wanted).await {
            Ok(taken) => {
                for (device, reply) in requests {
                    let _ = reply.send(Ok(self.holds(device) || taken.contains(&device)));
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, devices = wanted.len(), "batched takeover failed; taking devices one by one");
                for (device, reply) in requests {
                    let result = self.acquire(device).await;
                    let _ = reply.send(result);
                }
            }
        }
    }

    /// Tries the locks of `devices` in one statement: whether each was taken, in order.
    async fn try_lock_all(&mut self, devices: &[DeviceId]) -> Result<Vec<bool>, sqlx::Error> {
        let keys: Vec<i64> = devices.iter().map(|d| lock_key(*d)).collect();
        let connection = self.connection().await?;
        let locked: Result<Vec<bool>, sqlx::Error> = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS u (k, n) \
             ORDER BY n",
        )
        .bind(&keys)
        .fetch_all(connection)
        .await;
        if locked.is_err() {
            self.connection = None;
        }
        let locked = locked?;
        if locked.len() != devices.len() {
            return Err(sqlx::Error::Protocol(
                "advisory locks answered for another number of devices".to_owned(),
            ));
        }
        Ok(locked)
    }

    /// The locks, then the leases, of `devices` (none held yet). Answers those taken; on an
    /// error, every lock this call took is given back.
    async fn take_all(&mut self, devices: &[DeviceId]) -> Result<HashSet<DeviceId>, sqlx::Error> {
        if devices.is_empty() {
            return Ok(HashSet::new());
        }
        let locked = self.try_lock_all(devices).await?;
        let taken: Vec<DeviceId> = devices
            .iter()
            .zip(locked)
            .filter(|(_, taken)| *taken)
            .map(|(device, _)| *device)
            .collect();
        match nodes::take_leases(&self.pool, &taken, &self.node_id).await {
            Ok(epochs) => {
                for (device, epoch) in epochs {
                    self.epochs.insert(device, epoch);
                }
                for device in &taken {
                    self.set_held(*device, true);
                }
                tracing::debug!(devices = taken.len(), "device leases taken");
                Ok(taken.into_iter().collect())
            }
            Err(err) => {
                for device in taken {
                    self.unlock(device).await;
                }
                Err(err)
            }
        }
    }

    async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.connection.is_none() {
            let mut connection = PgConnection::connect_with(&self.options).await?;
            // The registry names the backend whose end releases this node's locks.
            sqlx::query!(
                "UPDATE nodes SET lock_pid = pg_backend_pid() WHERE id = $1",
                self.node_id
            )
            .execute(&mut connection)
            .await?;
            self.connection = Some(connection);
        }
        self.connection.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    fn holds(&self, device: DeviceId) -> bool {
        self.held.read().is_ok_and(|held| held.contains(&device))
    }

    fn set_held(&self, device: DeviceId, held: bool) {
        if let Ok(mut set) = self.held.write() {
            if held {
                set.insert(device);
            } else {
                set.remove(&device);
            }
        }
    }

    async fn try_lock(&mut self, device: DeviceId) -> Result<bool, sqlx::Error> {
        let connection = self.connection().await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(device))
            .fetch_one(connection)
            .await?;
        Ok(taken)
    }

    async fn acquire(&mut self, device: DeviceId) -> Result<bool, sqlx::Error> {
        if self.holds(device) {
            return Ok(true);
        }
        let taken = match self.try_lock(device).await {
            Ok(taken) => taken,
            Err(err) => {
                self.connection = None;
                return Err(err);
            }
        };
        if taken {
            match nodes::take_lease(&self.pool, device, &self.node_id).await {
                Ok(epoch) => {
                    tracing::debug!("device.id" = %device, epoch, "device lease taken");
                    self.epochs.insert(device, epoch);
                }
                // The device was deleted meanwhile: nothing to record.
                Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {}
                Err(err) => {
                    self.unlock(device).await;
                    return Err(err);
                }
            }
            self.set_held(device, true);
        }
        Ok(taken)
    }

    async fn release(&mut self, device: DeviceId) {
        if !self.holds(device) {
            return;
        }
        self.set_held(device, false);
        self.epochs.remove(&device);
        // The lease first: once the lock is free another node may take the device, and its
        // takeover must find the lease given up, not overwrite it after this node cleared it.
        if let Err(err) = nodes::drop_lease(&self.pool, device, &self.node_id).await {
            tracing::warn!("device.id" = %device, error = %err, "cannot give the device's lease up");
        }
        self.unlock(device).await;
    }

    async fn unlock(&mut self, device: DeviceId) {
        if let Ok(connection) = self.connection().await {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(lock_key(device))
                .execute(connection)
                .await;
        }
    }

    /// Pings the lock connection; after a break, takes every lock back (a batch at a time) and
    /// reports those lost.
    async fn check(&mut self) {
        let alive = match self.connection.as_mut() {
            Some(connection) => connection.ping().await.is_ok(),
            None => false,
        };
        if alive {
            return;
        }
        self.connection = None;
        let held: Vec<DeviceId> = match self.held.write() {
            Ok(mut held) => held.drain().collect(),
            Err(_) => return,
        };
        if held.is_empty() {
            return;
        }
        tracing::warn!(
            devices = held.len(),
            "lock connection lost; taking locks back"
        );
        for batch in held.chunks(ACQUIRE_BATCH) {
            if let Err(err) = self.take_back(batch).await {
                // Still unreachable: keep claiming the devices and retry at the next check (on
                // a new lock connection); no other node can take them while PostgreSQL is
                // down either.
                tracing::warn!(error = %err, "cannot reach PostgreSQL to restore locks");
                for device in batch {
                    self.set_held(*device, true);
                }
            }
        }
    }

    /// Takes back the locks of devices this node held before its lock connection broke. A
    /// lock is kept only if the lease is still this node's, under the epoch it took: another
    /// node may have taken the device and let go of it since. The others are reported lost.
    async fn take_back(&mut self, devices: &[DeviceId]) -> Result<(), sqlx::Error> {
        let locked = self.try_lock_all(devices).await?;
        // Unread, the leases are taken to be still this node's (as the locks say).
        let leases = nodes::lease_holders(&self.pool, devices)
            .await
            .inspect_err(
                |err| tracing::warn!(error = %err, "cannot read the leases of devices taken back"),
            )
            .unwrap_or_default();
        for (device, taken) in devices.iter().zip(locked) {
            let mine = self.epochs.get(device).copied();
            let kept = taken
                && leases.get(device).is_none_or(|(node, epoch)| {
                    node.as_deref() == Some(&self.node_id) && mine.is_none_or(|mine| mine == *epoch)
                });
            if kept {
                self.set_held(*device, true);
                continue;
            }
            tracing::warn!("device.id" = %device, "device taken by another node");
            self.epochs.remove(device);
            if taken {
                self.unlock(*device).await;
            }
            let _ = self.lost.send(*device);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_device_and_are_stable() {
        let a = DeviceId::new_random();
        let b = DeviceId::new_random();
        assert_eq!(lock_key(a), lock_key(a));
        assert_ne!(lock_key(a), lock_key(b));
    }
}
