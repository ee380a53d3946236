//! The node registry and the device leases (migration `0009_nodes.sql`).
//!
//! A node's row says where other nodes reach it and when it last proved alive; a device's lease
//! says which node serves it, under which epoch, and where it goes while being handed over. The
//! authority on who may connect a device stays its advisory lock (see
//! `session::ownership`); the lease is what the database fences writes with and what requests
//! are routed by.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::domain::DeviceId;

/// The `NOTIFY` channel on which node joins, leaves, drains and hand-offs are announced.
pub const NODES_CHANNEL: &str = "wuts_nodes";

/// The prefix of the `application_name` of every connection a node opens (see the fence in
/// `0009_nodes.sql`).
pub const APPLICATION_PREFIX: &str = "wuts:";

/// A node that other nodes consider alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    pub id: String,
    pub url: String,
    pub draining: bool,
}

/// A device's lease, with what the registry says of its holder.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The node serving the device, if any.
    pub node_id: Option<String>,
    /// Where the holder's requests can be forwarded (a live holder only).
    pub url: Option<String>,
    /// Whether the holder is alive (registered, recent heartbeat).
    pub live: bool,
    /// The node the device is being handed to.
    pub handoff_to: Option<String>,
    pub epoch: i64,
}

/// A node's row as `wuts nodes` lists it.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub id: String,
    pub url: String,
    pub draining: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_age_seconds: f64,
    pub devices: i64,
}

fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// Registers (or registers again) the node, on its lock connection: the row records that
/// connection's backend.
pub async fn register(
    lock_connection: &mut PgConnection,
    id: &str,
    url: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO nodes (id, url, lock_pid) VALUES ($1, $2, pg_backend_pid())
           ON CONFLICT (id) DO UPDATE
           SET url = excluded.url, lock_pid = excluded.lock_pid, heartbeat_at = now()"#,
        id,
        url,
    )
    .execute(&mut *lock_connection)
    .await?;
    notify_nodes(lock_connection).await
}

/// Announces a change of the registry (or of a lease) to every node.
pub async fn notify_nodes<'e, E>(executor: E) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query!("SELECT pg_notify($1, '')", NODES_CHANNEL)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Proves the node alive. `None`: its row is gone (other nodes declared it dead); else whether
/// it is draining.
pub async fn heartbeat(pool: &PgPool, id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE nodes SET heartbeat_at = now() WHERE id = $1 RETURNING draining",
        id
    )
    .fetch_optional(pool)
    .await
}

/// Marks the node draining: it takes no new device and hands its own to the others.
pub async fn set_draining(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE nodes SET draining = true WHERE id = $1", id)
        .execute(pool)
        .await?;
    notify_nodes(pool).await
}

/// Removes the node's row (a clean exit).
pub async fn deregister(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM nodes WHERE id = $1", id)
        .execute(pool)
        .await?;
    notify_nodes(pool).await
}

/// The nodes alive now (heartbeat within `ttl`), by id.
pub async fn live(pool: &PgPool, ttl: Duration) -> Result<Vec<LiveNode>, sqlx::Error> {
    sqlx::query_as!(
        LiveNode,
        r#"SELECT id, url, draining FROM nodes
           WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id"#,
        seconds(ttl),
    )
    .fetch_all(pool)
    .await
}

/// Declares dead the other nodes whose lock connection is gone (their advisory locks went with
/// it) or whose heartbeat is older than `ttl` (paused, or cut off from the others), and closes
/// every connection they still have, so that a paused node's locks are released and nothing it
/// sends when it wakes up reaches the database on an old connection. Answers the nodes removed.
pub async fn reap(pool: &PgPool, me: &str, ttl: Duration) -> Result<Vec<String>, sqlx::Error> {
    let dead = sqlx::query_scalar!(
        r#"DELETE FROM nodes n
           WHERE n.id <> $1
             AND (n.heartbeat_at < now() - make_interval(secs => $2)
                  OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = n.lock_pid AND a.application_name = $3 || n.id))
           RETURNING n.id"#,
        me,
        seconds(ttl),
        APPLICATION_PREFIX,
    )
    .fetch_all(pool)
    .await?;
    if dead.is_empty() {
        return Ok(dead);
    }
    let names: Vec<String> = dead
        .iter()
        .map(|id| format!("{APPLICATION_PREFIX}{id}"))
        .collect();
    sqlx::query!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = ANY($1)",
        &names,
    )
    .fetch_one(pool)
    .await?;
    notify_nodes(pool).await?;
    Ok(dead)
}

/// A device's lease.
pub async fn lease(
    pool: &PgPool,
    device: DeviceId,
    ttl: Duration,
) -> Result<Option<Lease>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT o.node_id, o.handoff_to, o.epoch, n.url AS "url?",
                  (n.heartbeat_at > now() - make_interval(secs => $2)) AS "live?"
           FROM device_owners o LEFT JOIN nodes n ON n.id = o.node_id
           WHERE o.device_id = $1"#,
        device as DeviceId,
        seconds(ttl),
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        let live = r.live.unwrap_or(false);
        Lease {
            node_id: r.node_id,
            url: r.url.filter(|_| live),
            live,
            handoff_to: r.handoff_to,
            epoch: r.epoch,
        }
    }))
}

/// The holder and epoch of each of `devices`' leases (devices without a lease are absent).
pub async fn lease_holders(
    pool: &PgPool,
    devices: &[DeviceId],
) -> Result<HashMap<DeviceId, (Option<String>, i64)>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = devices.iter().map(|d| d.0).collect();
    let rows = sqlx::query!(
        "SELECT device_id, node_id, epoch FROM device_owners WHERE device_id = ANY($1)",
        &ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (DeviceId(r.device_id), (r.node_id, r.epoch)))
        .collect())
}

/// Takes a device's lease for `node` (its advisory lock is already held): a new epoch.
pub async fn take_lease(pool: &PgPool, device: DeviceId, node: &str) -> Result<i64, sqlx::Error> {
    take_leases(pool, &[device], node)
        .await?
        .first()
        .map(|(_, epoch)| *epoch)
        .ok_or(sqlx::Error::RowNotFound)
}

/// [`take_lease`] for several devices in one statement: their new epochs. A device deleted
/// meanwhile fails the statement (its foreign key), and nothing is taken.
pub async fn take_leases(
    pool: &PgPool,
    devices: &[DeviceId],
    node: &str,
) -> Result<Vec<(DeviceId, i64)>, sqlx::Error> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = devices.iter().map(|d| d.0).collect();
    let rows = sqlx::query!(
        r#"INSERT INTO device_owners (device_id, node_id)
           SELECT d, $2 FROM unnest($1::uuid[]) AS d
           ON CONFLICT (device_id) DO UPDATE
           SET node_id = excluded.node_id, epoch = device_owners.epoch + 1, handoff_to = NULL,
               connected_at = NULL, since = now()
           RETURNING device_id, epoch"#,
        &ids,
        node,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (DeviceId(r.device_id), r.epoch))
        .collect())
}

/// Gives a device's lease up (keeping its epoch, and the node it is handed to, if any).
pub async fn drop_lease(pool: &PgPool, device: DeviceId, node: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE device_owners SET node_id = NULL, connected_at = NULL, since = now()
           WHERE device_id = $1 AND node_id = $2"#,
        device as DeviceId,
        node,
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Records where a device is being handed (before its session stops here).
pub async fn mark_handoff(
    pool: &PgPool,
    device: DeviceId,
    node: &str,
    target: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE device_owners SET handoff_to = $3 WHERE device_id = $1 AND node_id = $2",
        device as DeviceId,
        node,
        target,
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records that the lease holder's session reached WhatsApp.
pub async fn mark_connected(
    pool: &PgPool,
    device: DeviceId,
    node: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE device_owners SET connected_at = now() WHERE device_id = $1 AND node_id = $2",
        device as DeviceId,
        node,
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Whether `node` holds the device's lease with its session connected.
pub async fn connected_at(
    pool: &PgPool,
    device: DeviceId,
    node: &str,
) -> Result<bool, sqlx::Error> {
    let connected = sqlx::query_scalar!(
        r#"SELECT connected_at IS NOT NULL AS "connected!" FROM device_owners
           WHERE device_id = $1 AND node_id = $2"#,
        device as DeviceId,
        node,
    )
    .fetch_optional(pool)
    .await?;
    Ok(connected.unwrap_or(false))
}

/// Every node with the number of devices it serves, for `wuts nodes`.
pub async fn report(pool: &PgPool) -> Result<Vec<NodeReport>, sqlx::Error> {
    sqlx::query_as!(
        NodeReport,
        r#"SELECT n.id, n.url, n.draining, n.started_at,
                  EXTRACT(EPOCH FROM now() - n.heartbeat_at)::float8 AS "heartbeat_age_seconds!",
                  (SELECT count(*) FROM device_owners o WHERE o.node_id = n.id) AS "devices!"
           FROM nodes n ORDER BY n.id"#
    )
    .fetch_all(pool)
    .await
}
