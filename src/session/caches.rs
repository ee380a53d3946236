//! What lives with one device for as long as its session does: its cached block list, the
//! group members it read recently, and the group changes it reported lately. Shared by the device's actor and its handles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::blocklist::BlocklistCache;
use crate::domain::{GroupJid, Identity};

/// How long a group's member list is trusted for resolving.
const GROUP_MEMBERS_TTL: Duration = Duration::from_secs(60);

/// A group's members as read from WhatsApp.
pub type Members = Arc<Vec<Identity>>;

/// Group members read recently by one device: resolving many inputs against one group in a
/// row should not cost a group query each time.
#[derive(Default)]
pub struct GroupMembersCache {
    entries: Mutex<HashMap<GroupJid, (Instant, Members)>>,
}

impl GroupMembersCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<GroupJid, (Instant, Members)>> {
        // Recover from a poisoned lock by starting empty: a cache may forget, never serve junk.
        self.entries.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            guard.clear();
            guard
        })
    }

    pub fn get(&self, group: &GroupJid) -> Option<Members> {
        let entries = self.entries();
        let (at, members) = entries.get(group)?;
        (at.elapsed() < GROUP_MEMBERS_TTL).then(|| members.clone())
    }

    /// Forgets a group whose members changed.
    pub fn forget(&self, group: &GroupJid) {
        self.entries().remove(group);
    }

    pub fn put(&self, group: GroupJid, members: Members) {
        let mut entries = self.entries();
        entries.retain(|_, (at, _)| at.elapsed() < GROUP_MEMBERS_TTL);
        entries.insert(group, (Instant::now(), members));
    }
}

/// What lives with one device for as long as its session does.
#[derive(Default)]
pub struct DeviceCaches {
    pub blocklist: BlocklistCache,
    pub group_members: GroupMembersCache,
    /// Group changes the device's own calls reported, so WhatsApp's notification of one is
    /// not reported again.
    pub groups_reported: super::group_events::RecentChanges,
    /// WhatsApp's reach-out time-lock on the account, as last read.
    pub reachout: super::reachout::ReachoutCache,
}
