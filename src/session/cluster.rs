//! Several gateway nodes on one database: the node's registration and heartbeat, declaring dead
//! nodes dead, placing devices on the live nodes, taking over the devices nobody serves, handing
//! devices over (when a node joins, and when one drains), all through PostgreSQL.
//!
//! - Placement is rendezvous hashing of the device id over the live nodes that are not
//!   draining: a node that joins or leaves moves only the devices that hash to it.
//! - A node is dead when its lock connection is gone (its advisory locks went with it: a killed
//!   process) or when its heartbeat is older than the TTL (a paused or cut-off process; its
//!   connections are then closed, which releases its locks). Each node checks every second.
//! - Devices that should be connected and that no live node serves are taken by the node their
//!   hash picks (or by the node they are handed to), at most `restore_concurrency` connecting at
//!   once: this is also how a node restores its devices at startup.
//! - A hand-off: the owner names the target in the lease, stops its session (giving the lock and
//!   the lease up), announces it, and waits until the target's session is connected before it
//!   moves the next device. Requests meanwhile wait for the new owner (see `http::device`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;

use super::pool::SessionPool;
use super::state::{SessionState, SessionStatus};
use crate::domain::{DeviceId, DeviceScope};
use crate::store::nodes::{self, LiveNode};
use crate::store::sessions::{self, Orphan};

/// How often a node proves alive and looks at the others.
const TICK: Duration = Duration::from_secs(1);
/// How often a node looks for devices nobody serves even when nothing was announced.
const SWEEP_EVERY: u32 = 3;
/// How long a hand-off waits for the new owner's session to connect.
const HANDOFF_CONNECT: Duration = Duration::from_secs(15);
/// How long a hand-off waits for the requests using the session to finish before stopping it.
const REQUESTS_FINISH: Duration = Duration::from_secs(10);
/// How long a node handed a device keeps trying to take its lock (the old owner gives it up
/// once its client has stopped, which may take a few seconds).
const HANDOFF_TAKE: Duration = Duration::from_secs(10);

/// How this node takes part among several.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id (also the `application_name` of its connections).
    pub node_id: String,
    /// Where other nodes reach this node's API.
    pub url: String,
    /// A node whose heartbeat is older than this is dead.
    pub ttl: Duration,
    /// How long a request for a device being handed over waits for the new owner.
    pub handoff_wait: Duration,
    /// Devices a node hands over at once when another joins, and when it drains.
    pub handoff_batch: usize,
}

impl ClusterConfig {
    /// A node on its own, not registered (in-process gateways, tools).
    pub fn standalone(node_id: String) -> Self {
        Self {
            node_id,
            url: String::new(),
            ttl: Duration::from_secs(6),
            handoff_wait: Duration::from_secs(5),
            handoff_batch: 8,
        }
    }
}

/// This node's view of the others.
pub struct Cluster {
    config: ClusterConfig,
    live: RwLock<Arc<Vec<LiveNode>>>,
    registered: AtomicBool,
    draining: AtomicBool,
    wake: Notify,
    /// Devices this node is taking over right now.
    taking: Mutex<HashSet<DeviceId>>,
    /// Devices of the hand-off round under way (one round at a time).
    leaving: Mutex<HashSet<DeviceId>>,
    /// Devices this node is handing over right now (from naming the target until the target
    /// is connected): requests for them wait for the new owner instead of using the session
    /// that is stopping here.
    handing: Mutex<HashSet<DeviceId>>,
    /// Where requests for devices served elsewhere were last sent: device to node id. Learned
    /// from placements (a device row read through the caller's tenant, then its lease), so
    /// a request for a known device goes to its owner without a database round trip here; the
    /// owner still checks the caller and the device, and says when the device has moved.
    routes: Mutex<HashMap<DeviceId, String>>,
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Self {
        Self {
            config,
            live: RwLock::new(Arc::new(Vec::new())),
            registered: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wake: Notify::new(),
            taking: Mutex::new(HashSet::new()),
            leaving: Mutex::new(HashSet::new()),
            handing: Mutex::new(HashSet::new()),
            routes: Mutex::new(HashMap::new()),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether this node is registered (so other nodes may serve devices too).
    pub fn active(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Whether this node is draining (shutting down, handing its devices over).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The live nodes, as of the last tick.
    pub fn live(&self) -> Arc<Vec<LiveNode>> {
        self.live.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether a node other than this one is alive.
    pub fn has_peers(&self) -> bool {
        self.live().iter().any(|n| n.id != self.config.node_id)
    }

    /// A live node by id.
    pub fn node(&self, id: &str) -> Option<LiveNode> {
        self.live().iter().find(|n| n.id == id).cloned()
    }

    /// The node that should serve `device`: the highest rendezvous weight among the live nodes
    /// that are not draining. `None` when there is none (then this node serves what it is
    /// asked).
    pub fn pick(&self, device: DeviceId) -> Option<LiveNode> {
        pick(&self.live(), device).cloned()
    }

    /// Whether this node is handing `device` over to another node right now.
    pub fn handing_off(&self, device: DeviceId) -> bool {
        self.handing.lock().is_ok_and(|h| h.contains(&device))
    }

    /// Whether this node is the one `device` should be served by.
    pub fn picks_me(&self, device: DeviceId) -> bool {
        if !self.active() {
            return true;
        }
        match self.pick(device) {
            Some(node) => node.id == self.config.node_id,
            None => !self.draining(),
        }
    }

    /// The live node requests for `device` were last sent to, if it is still live.
    pub fn route(&self, device: DeviceId) -> Option<LiveNode> {
        let id = self.routes.lock().ok()?.get(&device).cloned()?;
        let node = self.node(&id);
        if node.is_none() {
            self.forget_route(device);
        }
        node
    }

    /// Remembers that `node` serves `device`.
    pub fn learn_route(&self, device: DeviceId, node: &LiveNode) {
        if node.id == self.config.node_id {
            return;
        }
        if let Ok(mut routes) = self.routes.lock()
            && routes.get(&device) != Some(&node.id)
        {
            routes.insert(device, node.id.clone());
        }
    }

    /// Forgets where `device` is served (it moved, or its node did not answer).
    pub fn forget_route(&self, device: DeviceId) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&device);
        }
    }

    fn set_live(&self, live: Vec<LiveNode>) -> bool {
        let Ok(mut current) = self.live.write() else {
            return false;
        };
        if **current == live {
            return false;
        }
        *current = Arc::new(live);
        true
    }
}

/// The rendezvous choice among `nodes` for `device` (draining nodes excluded).
pub fn pick(nodes: &[LiveNode], device: DeviceId) -> Option<&LiveNode> {
    nodes
        .iter()
        .filter(|n| !n.draining)
        .max_by_key(|n| (weight(&n.id, device), n.id.as_str()))
}

/// A stable 64-bit weight of a (node, device) pair: FNV-1a over both, then a finalizer that
/// spreads the bits. Stable across processes and builds, so every node computes the same
/// placement.
fn weight(node: &str, device: DeviceId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.as_bytes().iter().chain(device.0.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

impl SessionPool {
    /// Registers this node at its URL and starts taking part: heartbeat, failure detection,
    /// takeovers and hand-offs. Without it the node serves every device it is asked for, alone.
    pub async fn join(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        let cluster = self.cluster().clone();
        self.ownership().register(&cluster.config.url).await?;
        cluster.registered.store(true, Ordering::Release);
        self.refresh_live().await?;
        let weak = Arc::downgrade(self);
        let db = self.db().clone();
        tokio::spawn(listen(db, cluster.clone()));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut count: u32 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = cluster.wake.notified() => {}
                }
                let Some(pool) = weak.upgrade() else { break };
                count = count.wrapping_add(1);
                pool.tick(count.is_multiple_of(SWEEP_EVERY)).await;
            }
        });
        Ok(())
    }

    async fn refresh_live(&self) -> Result<bool, sqlx::Error> {
        let cluster = self.cluster();
        let live = nodes::live(self.db(), cluster.config.ttl).await?;
        crate::metrics::nodes_live(live.len());
        Ok(cluster.set_live(live))
    }

    /// One round: heartbeat, dead nodes, the live list, then devices to take or to hand over.
    async fn tick(self: &Arc<Self>, sweep: bool) {
        let cluster = self.cluster().clone();
        let me = cluster.node_id().to_owned();
        match nodes::heartbeat(self.db(), &me).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                // The others declared this node dead (it was paused or cut off): they may
                // have taken its devices. Stop every session, then join again.
                tracing::warn!("this node was declared dead by the others; stopping its sessions");
                self.stop_all().await;
                if let Err(err) = self.ownership().register(&cluster.config.url).await {
                    tracing::warn!(error = %err, "cannot register this node again");
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "node heartbeat failed");
                return;
            }
        }
        let reaped = match nodes::reap(self.db(), &me, cluster.config.ttl).await {
            Ok(reaped) => reaped,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for dead nodes");
                Vec::new()
            }
        };
        for node in &reaped {
            tracing::warn!(node = %node, "gateway node declared dead; taking its devices over");
            crate::metrics::node_declared_dead();
        }
        let changed = self.refresh_live().await.unwrap_or(false);
        if sweep || changed || !reaped.is_empty() {
            self.take_orphans(false).await;
        }
        if !cluster.draining() {
            self.rebalance();
        }
    }

    /// Takes the devices nobody serves that this node should serve. `wait`: return only once
    /// each has connected or settled (startup restore); else they connect in the background.
    pub(super) async fn take_orphans(self: &Arc<Self>, wait: bool) -> usize {
        let cluster = self.cluster().clone();
        if cluster.draining() {
            return 0;
        }
        let orphans = match sessions::orphans(self.db()).await {
            Ok(orphans) => orphans,
            Err(err) => {
                tracing::warn!(error = %err, "cannot list devices to take over");
                return 0;
            }
        };
        let me = cluster.node_id().to_owned();
        let mine: Vec<Orphan> = orphans
            .into_iter()
            .filter(|o| match &o.handoff_to {
                Some(target) if cluster.node(target).is_some_and(|n| !n.draining) => *target == me,
                _ => cluster.picks_me(o.scope.device()),
            })
            .filter(|o| !self.ownership().holds(o.scope.device()))
            .collect();
        let mut started = Vec::new();
        if let Ok(mut taking) = cluster.taking.lock() {
            for orphan in mine {
                if taking.insert(orphan.scope.device()) {
                    started.push(orphan);
                }
            }
        }
        let count = started.len();
        if count == 0 {
            return 0;
        }
        tracing::info!(devices = count, "taking devices over");
        let permits = self.restore_slots().clone();
        let jitter = if wait {
            self.config().restore_jitter
        } else {
            Duration::ZERO
        };
        let mut tasks = tokio::task::JoinSet::new();
        for orphan in started {
            let pool = self.clone();
            let permits = permits.clone();
            let cluster = cluster.clone();
            tasks.spawn(async move {
                let device = orphan.scope.device();
                if !jitter.is_zero() {
                    let millis = rand::random_range(0..=jitter.as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                }
                if let Ok(_permit) = permits.acquire_owned().await {
                    let handed = orphan.handoff_to.as_deref() == Some(cluster.node_id());
                    pool.take(orphan.scope, handed).await;
                }
                if let Ok(mut taking) = cluster.taking.lock() {
                    taking.remove(&device);
                }
            });
        }
        if wait {
            while tasks.join_next().await.is_some() {}
        } else {
            tasks.detach_all();
        }
        count
    }

    /// Connects a device this node takes over. `handed`: it was handed to this node, whose
    /// previous owner may still be letting go of its lock.
    async fn take(self: &Arc<Self>, scope: DeviceScope, handed: bool) {
        let started = Instant::now();
        loop {
            let handle = self.ensure(scope, || SessionState::new(SessionStatus::Connecting));
            match handle.start().await {
                Ok(()) => {
                    crate::metrics::device_taken(handed);
                    handle.wait_settled(super::pool::RESTORE_SETTLE).await;
                    return;
                }
                Err(super::SessionError::NotReady(reason))
                    if handed && started.elapsed() < HANDOFF_TAKE =>
                {
                    tracing::debug!("device.id" = %scope.device(), reason, "waiting for the previous owner");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => {
                    if !self.ownership().holds(scope.device()) {
                        // Another node has it: this node's idle actor is of no use.
                        self.stop(scope.device()).await;
                    }
                    tracing::warn!("device.id" = %scope.device(), error = %err, "device not taken over");
                    return;
                }
            }
        }
    }

    /// Hands over, a batch at a time, the devices this node holds that another live node should
    /// serve (a node joined), the devices idle longest first. Runs in the background; one round
    /// at a time.
    fn rebalance(self: &Arc<Self>) {
        let cluster = self.cluster().clone();
        if !cluster.has_peers() {
            return;
        }
        let batch = cluster.config.handoff_batch.max(1);
        let moves: Vec<(DeviceId, LiveNode)> = {
            let Ok(mut leaving) = cluster.leaving.lock() else {
                return;
            };
            if !leaving.is_empty() {
                return;
            }
            let moves = self.to_move(batch);
            leaving.extend(moves.iter().map(|(device, _)| *device));
            moves
        };
        if moves.is_empty() {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            futures::future::join_all(
                moves
                    .iter()
                    .map(|(device, target)| pool.hand_off(*device, target)),
            )
            .await;
            if let Ok(mut leaving) = pool.cluster().leaving.lock() {
                leaving.clear();
            }
            pool.cluster().wake.notify_one();
        });
    }

    /// Up to `batch` devices this node holds that placement gives another live node, with
    /// their targets: the devices idle longest first (a hand-off delays their requests).
    fn to_move(&self, batch: usize) -> Vec<(DeviceId, LiveNode)> {
        let cluster = self.cluster();
        let mut moves: Vec<(Duration, DeviceId, LiveNode)> = self
            .ownership()
            .held()
            .into_iter()
            .filter_map(|device| {
                let target = cluster.pick(device)?;
                let idle = self.get(device).map_or(Duration::MAX, |h| h.idle_for());
                (target.id != cluster.node_id()).then_some((idle, device, target))
            })
            .collect();
        moves.sort_by_key(|(idle, _, _)| std::cmp::Reverse(*idle));
        moves
            .into_iter()
            .take(batch)
            .map(|(_, device, target)| (device, target))
            .collect()
    }

    /// Hands one device to `target`: names it in the lease, stops the session here (which
    /// gives the lock and the lease up), announces it, and waits until the target is connected.
    async fn hand_off(&self, device: DeviceId, target: &LiveNode) -> bool {
        let cluster = self.cluster();
        if let Ok(mut handing) = cluster.handing.lock() {
            handing.insert(device);
        }
        let handed = self.hand_off_marked(device, target).await;
        if let Ok(mut handing) = cluster.handing.lock() {
            handing.remove(&device);
        }
        handed
    }

    async fn hand_off_marked(&self, device: DeviceId, target: &LiveNode) -> bool {
        let me = self.cluster().node_id().to_owned();
        match nodes::mark_handoff(self.db(), device, &me, &target.id).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(err) => {
                tracing::warn!("device.id" = %device, error = %err, "cannot hand the device over");
                return false;
            }
        }
        tracing::info!("device.id" = %device, to = %target.id, "handing the device over");
        // Requests arriving from here on wait for the new owner; those under way finish first.
        if let Some(handle) = self.get(device) {
            handle.close_to_requests(REQUESTS_FINISH).await;
        }
        self.stop(device).await;
        let _ = nodes::notify_nodes(self.db()).await;
        crate::metrics::device_handed_off();
        let deadline = Instant::now() + HANDOFF_CONNECT;
        while Instant::now() < deadline {
            if nodes::connected_at(self.db(), device, &target.id)
                .await
                .unwrap_or(false)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("device.id" = %device, to = %target.id, "the new owner did not connect in time");
        false
    }

    /// Marks this node draining and hands every device it holds to the others, a batch at a
    /// time, each batch connected before the next moves. Without another live node, nothing
    /// moves (the sessions are closed as a single node's are).
    pub async fn drain(self: &Arc<Self>, deadline: Duration) {
        let cluster = self.cluster().clone();
        if !cluster.active() {
            return;
        }
        cluster.draining.store(true, Ordering::Release);
        if let Err(err) = nodes::set_draining(self.db(), cluster.node_id()).await {
            tracing::warn!(error = %err, "cannot mark this node draining");
        }
        let _ = self.refresh_live().await;
        let started = Instant::now();
        let batch = cluster.config.handoff_batch.max(1);
        loop {
            if started.elapsed() > deadline {
                tracing::warn!("draining took too long; closing the remaining sessions");
                return;
            }
            let _ = self.refresh_live().await;
            let moves = self.to_move(batch);
            if moves.is_empty() {
                return;
            }
            tracing::info!(devices = moves.len(), "draining: handing devices over");
            futures::future::join_all(
                moves
                    .iter()
                    .map(|(device, target)| self.hand_off(*device, target)),
            )
            .await;
        }
    }

    /// Leaves the registry (a clean exit).
    pub async fn leave(&self) {
        let cluster = self.cluster();
        if cluster.active()
            && let Err(err) = nodes::deregister(self.db(), cluster.node_id()).await
        {
            tracing::warn!(error = %err, "cannot leave the node registry");
        }
    }
}

/// Wakes the node's round whenever the registry or a lease changes.
async fn listen(db: PgPool, cluster: Arc<Cluster>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&db).await {
            Ok(mut listener) => {
                if listener.listen(nodes::NODES_CHANNEL).await.is_ok() {
                    while listener.recv().await.is_ok() {
                        cluster.wake.notify_one();
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot listen for node changes"),
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, draining: bool) -> LiveNode {
        LiveNode {
            id: id.to_owned(),
            url: format!("http://{id}"),
            draining,
        }
    }

    #[test]
    fn placement_spreads_devices_and_moves_few_when_a_node_joins() {
        let two = vec![node("a", false), node("b", false)];
        let three = vec![node("a", false), node("b", false), node("c", false)];
        let devices: Vec<DeviceId> = (0..3000).map(|_| DeviceId::new_random()).collect();
        let mut per_node = std::collections::HashMap::new();
        let mut moved = 0;
        for device in &devices {
            let before = pick(&two, *device).map(|n| n.id.clone());
            let after = pick(&three, *device).map(|n| n.id.clone());
            *per_node.entry(after.clone()).or_insert(0) += 1;
            if before != after {
                moved += 1;
                // Only devices that now hash to the new node move.
                assert_eq!(after.as_deref(), Some("c"));
            }
        }
        for count in per_node.values() {
            assert!(
                (800..1200).contains(count),
                "uneven placement: {per_node:?}"
            );
        }
        assert!((800..1200).contains(&moved), "moved {moved} of 3000");
    }

    #[test]
    fn draining_nodes_are_not_picked_and_none_is_picked_without_live_nodes() {
        let device = DeviceId::new_random();
        let nodes = vec![node("a", true), node("b", false)];
        assert_eq!(pick(&nodes, device).map(|n| n.id.as_str()), Some("b"));
        assert!(pick(&[node("a", true)], device).is_none());
        assert!(pick(&[], device).is_none());
    }
}
