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

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::domain::DeviceId;

/// How often the keeper checks its lock connection.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

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
}

/// This node's claim on devices. Cheap to clone.
#[derive(Clone)]
pub struct Ownership {
    requests: mpsc::Sender<Request>,
    node_id: std::sync::Arc<str>,
}

impl Ownership {
    /// Opens the lock connection and starts its keeper. Devices whose lock is lost are sent on
    /// the returned channel.
    pub async fn start(
        pool: PgPool,
        options: PgConnectOptions,
        node_id: String,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DeviceId>), sqlx::Error> {
        let options = options.log_statements(tracing::log::LevelFilter::Trace);
        let connection = PgConnection::connect_with(&options).await?;
        let (requests_tx, requests_rx) = mpsc::channel(256);
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        let keeper = Keeper {
            pool,
            options,
            node_id: node_id.clone(),
            connection: Some(connection),
            held: HashSet::new(),
            lost: lost_tx,
        };
        tokio::spawn(keeper.run(requests_rx));
        Ok((
            Self {
                requests: requests_tx,
                node_id: node_id.into(),
            },
            lost_rx,
        ))
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
    held: HashSet<DeviceId>,
    lost: mpsc::UnboundedSender<DeviceId>,
}

impl Keeper {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::Acquire(device, reply)) => {
                        let result = self.acquire(device).await;
                        let _ = reply.send(result);
                    }
                    Some(Request::Release(device, reply)) => {
                        self.release(device).await;
                        let _ = reply.send(());
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

    async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.connection.is_none() {
            self.connection = Some(PgConnection::connect_with(&self.options).await?);
        }
        self.connection.as_mut().ok_or(sqlx::Error::PoolClosed)
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
        if self.held.contains(&device) {
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
            self.held.insert(device);
            sqlx::query!(
                r#"INSERT INTO device_owners (device_id, node_id) VALUES ($1, $2)
                   ON CONFLICT (device_id) DO UPDATE SET node_id = excluded.node_id, since = now()"#,
                device as DeviceId,
                self.node_id,
            )
            .execute(&self.pool)
            .await
            .map(|_| ())
            .or_else(|err| match &err {
                // The device was deleted meanwhile: nothing to record.
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => Ok(()),
                _ => Err(err),
            })?;
        }
        Ok(taken)
    }

    async fn release(&mut self, device: DeviceId) {
        if !self.held.remove(&device) {
            return;
        }
        if let Ok(connection) = self.connection().await {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(lock_key(device))
                .execute(connection)
                .await;
        }
        let _ = sqlx::query!(
            "DELETE FROM device_owners WHERE device_id = $1 AND node_id = $2",
            device as DeviceId,
            self.node_id,
        )
        .execute(&self.pool)
        .await;
    }

    /// Pings the lock connection; after a break, takes every lock back and reports those lost.
    async fn check(&mut self) {
        let alive = match self.connection.as_mut() {
            Some(connection) => connection.ping().await.is_ok(),
            None => false,
        };
        if alive {
            return;
        }
        self.connection = None;
        if self.held.is_empty() {
            return;
        }
        tracing::warn!(
            devices = self.held.len(),
            "lock connection lost; taking locks back"
        );
        let held: Vec<DeviceId> = self.held.drain().collect();
        for device in held {
            match self.try_lock(device).await {
                Ok(true) => {
                    self.held.insert(device);
                }
                Ok(false) => {
                    tracing::warn!("device.id" = %device, "device taken by another node");
                    let _ = self.lost.send(device);
                }
                Err(err) => {
                    // Still unreachable: keep claiming the device and retry at the next
                    // check; no other node can take it while PostgreSQL is down either.
                    tracing::warn!(error = %err, "cannot reach PostgreSQL to restore locks");
                    self.connection = None;
                    self.held.insert(device);
                }
            }
        }
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
