//! App-state sync on demand: the device fetches the patches of the collections a caller names
//! (its address book among them), and whatsapp-rust applies them; the contacts they carry feed
//! the identity store (names and LID/phone pairs) through the session's events.
//!
//! WhatsApp answers a `w:sync:app:state` request with what is newer than the version the
//! device holds. The gateway asks first itself, at the device's own versions, so that a refusal
//! or silence is reported to the caller (whatsapp-rust's sync task keeps its errors and retries
//! later); the collections with something new (all named ones for a full sync) are then synced
//! by whatsapp-rust, which verifies and applies the patches (`Client::process_sync_task`, the
//! entry point its own notification handlers use).

use std::sync::Arc;

use wacore::appstate::patch_decode::WAPatchName;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent, Server};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};
use whatsapp_rust::sync_task::MajorSyncTask;

use super::error::Error;
use crate::session::DeviceSession;
use crate::session::whatsapp::call;

/// What a caller may name, and the collections each one is (ours: WhatsApp's collections hold
/// user settings and the push name in `critical_block`, contacts in `critical_unblock_low`,
/// pins and archive state in `regular_low`, mute and stars in `regular_high`, key and patch
/// housekeeping in `regular`; whatsmeow `appstate/keys.go`).
pub const SCOPES: &[(&str, &[WAPatchName])] = &[
    ("contacts", &[WAPatchName::CriticalUnblockLow]),
    ("chats", &[WAPatchName::RegularHigh, WAPatchName::Regular]),
    ("settings", &[WAPatchName::CriticalBlock]),
    ("pins", &[WAPatchName::RegularLow]),
    (
        "critical",
        &[WAPatchName::CriticalBlock, WAPatchName::CriticalUnblockLow],
    ),
];

/// How many WhatsApp timeouts applying one collection may take (its fetch, the MAC checks and
/// the store writes).
const APPLY_DEADLINE_FACTOR: u32 = 4;

/// A scope a caller named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope(&'static str, &'static [WAPatchName]);

impl Scope {
    pub fn parse(raw: &str) -> Option<Self> {
        SCOPES
            .iter()
            .find(|(name, _)| *name == raw)
            .map(|(name, collections)| Scope(name, collections))
    }

    /// Every scope, in the catalogue's order.
    pub fn all() -> Vec<Self> {
        SCOPES
            .iter()
            .map(|(name, collections)| Scope(name, collections))
            .collect()
    }

    pub fn name(&self) -> &'static str {
        self.0
    }
}

/// A collection after the sync: its name and the version the device now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionVersion {
    pub name: &'static str,
    pub version: u64,
}

pub struct AppState<'a> {
    pub session: &'a DeviceSession,
}

impl AppState<'_> {
    /// Syncs the collections of `scopes`; answers each collection's version afterwards.
    pub async fn sync(
        &self,
        scopes: &[Scope],
        full: bool,
    ) -> Result<Vec<CollectionVersion>, Error> {
        let mut names: Vec<WAPatchName> = Vec::new();
        for scope in scopes {
            for name in scope.1 {
                if !names.contains(name) {
                    names.push(*name);
                }
            }
        }
        let client = self.session.client();
        let backend = client.persistence_manager().backend();
        let mut held = Vec::with_capacity(names.len());
        for name in &names {
            let state = backend
                .get_version(name.as_str())
                .await
                .map_err(Error::internal)?;
            held.push((*name, state.version));
        }
        let newer = self.newer(&held).await?;
        for (name, _) in &held {
            if full || newer.contains(name) {
                let client = Arc::clone(client);
                let task = MajorSyncTask::AppStateSync {
                    name: *name,
                    full_sync: full,
                };
                // One more request to WhatsApp, then the patches verified and written to the
                // store: more than one WhatsApp answer's worth of time.
                call(
                    "app_state_sync",
                    self.session.timeout() * APPLY_DEADLINE_FACTOR,
                    sync_task(client, task),
                )
                .await?;
            }
        }
        let mut versions = Vec::with_capacity(names.len());
        for name in &names {
            let state = backend
                .get_version(name.as_str())
                .await
                .map_err(Error::internal)?;
            versions.push(CollectionVersion {
                name: name.as_str(),
                version: state.version,
            });
        }
        Ok(versions)
    }

    /// Asks WhatsApp what is newer than the versions held; answers the collections that have
    /// patches (or a snapshot) beyond them.
    async fn newer(&self, held: &[(WAPatchName, u64)]) -> Result<Vec<WAPatchName>, Error> {
        let collections = held.iter().map(|(name, version)| {
            NodeBuilder::new("collection")
                .attr("name", name.as_str())
                .attr("version", version.to_string())
                .attr("return_snapshot", "false")
                .build()
        });
        let timeout = self.session.timeout();
        let query = InfoQuery {
            namespace: "w:sync:app:state",
            query_type: InfoQueryType::Set,
            to: Jid::new("", Server::Pn),
            target: None,
            id: None,
            content: Some(NodeContent::Nodes(vec![
                NodeBuilder::new("sync").children(collections).build(),
            ])),
            timeout: Some(timeout),
        };
        let answer = call(
            "app_state_check",
            timeout,
            self.session.client().send_iq(query),
        )
        .await?;
        let answer = answer.get();
        let Some(sync) = answer.get_optional_child("sync") else {
            return Ok(Vec::new());
        };
        Ok(held
            .iter()
            .filter(|(name, version)| {
                sync.get_children_by_tag("collection").any(|c| {
                    let named = c
                        .get_attr("name")
                        .is_some_and(|n| n.as_str() == name.as_str());
                    let ahead = c
                        .get_attr("version")
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .is_some_and(|v| v > *version);
                    named
                        && (ahead
                            || c.get_optional_child("patches").is_some()
                            || c.get_optional_child("snapshot").is_some())
                })
            })
            .map(|(name, _)| *name)
            .collect())
    }
}

/// whatsapp-rust's sync task, boxed: its future is deep enough to exceed the compiler's layout
/// depth when inlined into a handler's.
fn sync_task(
    client: Arc<whatsapp_rust::Client>,
    task: MajorSyncTask,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::session::SessionError>> + Send>,
> {
    Box::pin(async move {
        client.process_sync_task(task).await;
        Ok(())
    })
}
