//! The block list's one home: the block-list IQs (sent through whatsapp-rust's public IQ
//! machinery, because its own block-list calls do not return the list's hash), the only writer
//! of the device's snapshot, and the device's cached answer.
//!
//! Everything that learns the list (a block or unblock through the API, a refresh, the read at
//! connect, a block-list notification from WhatsApp) goes through [`DeviceBlocklist::save`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent, NodeRef, Server};
use whatsapp_rust::Client;
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::outbox::{self, Pending};
use super::state::SessionError;
use super::whatsapp::call;
use crate::domain::EventKind;
use crate::domain::{ContactId, DeviceScope, Identity, Lid, PhoneNumber};
use crate::store::events::Wakeup;
use crate::store::{StoreError, blocklists, identities};

/// The block list as WhatsApp answers it: its hash and the blocked users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocklist {
    pub dhash: String,
    pub items: Vec<BlockedUser>,
}

/// One entry of the block list: the JID WhatsApp lists it under, and every identifier the
/// entry carries (WhatsApp Web's list in phone-number addressing names each entry's LID too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedUser {
    pub jid: String,
    pub identity: Identity,
}

impl Blocklist {
    /// Whether `identity` is on the list.
    pub fn contains(&self, identity: &Identity) -> bool {
        self.items
            .iter()
            .any(|item| item.identity.same_user(identity))
    }
}

fn blocklist_query(
    kind: InfoQueryType,
    item: Option<Node>,
    timeout: Duration,
) -> InfoQuery<'static> {
    InfoQuery {
        namespace: "blocklist",
        query_type: kind,
        to: Jid::new("", Server::Pn),
        target: None,
        id: None,
        content: item.map(|node| NodeContent::Nodes(vec![node])),
        timeout: Some(timeout),
    }
}

/// Reads `<list dhash><item jid .../>...</list>` out of a block-list answer. Each item's `jid`
/// is what it is listed under; `lid`, `pn_jid` and `phone_number`, where WhatsApp adds them,
/// give the other half of the user's identity.
pub fn parse_blocklist(answer: &NodeRef<'_>) -> Result<Blocklist, SessionError> {
    let list = answer.get_optional_child("list").ok_or_else(|| {
        SessionError::Internal(anyhow::anyhow!("block-list answer without <list>"))
    })?;
    let dhash = list
        .get_attr("dhash")
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default();
    let items = list
        .get_children_by_tag("item")
        .filter_map(|item| {
            let jid = item.get_attr("jid")?.as_str().into_owned();
            let mut identity = Identity::default();
            for name in ["jid", "lid", "pn_jid", "phone_number"] {
                let Some(value) = item.get_attr(name) else {
                    continue;
                };
                match ContactId::from_wire(&value.as_str()) {
                    Some(ContactId::Phone(phone)) => {
                        identity.phone = identity.phone.or(Some(phone));
                    }
                    Some(ContactId::Lid(lid)) => {
                        identity.lid = identity.lid.or(Some(lid));
                    }
                    None => {}
                }
            }
            Some(BlockedUser { jid, identity })
        })
        .collect();
    Ok(Blocklist { dhash, items })
}

/// Whether a stanza is an `account_sync` notification about the block list. WhatsApp sends it
/// when the list changed elsewhere; it is a signal to read the list again, not a delta.
pub fn is_blocklist_notification(node: &NodeRef<'_>) -> bool {
    node.tag.as_ref() == "notification" && node.get_optional_child("blocklist").is_some()
}

/// What WhatsApp answers to a block-list read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The hash the device holds is current: the list did not change.
    Unchanged,
    /// The whole list (the device held none, or an older one).
    List(Blocklist),
}

/// Reads the block list as WhatsApp Web does (whatsapp-rust PR #1357 quotes WA Web's
/// `WAWebBlocklistSync`): the get carries `<item dhash>` with the hash of the list the device
/// holds; WhatsApp answers `<list type="mismatch">` with every entry when that hash is stale,
/// and an empty `<list>` when it is current.
async fn fetch(
    client: &Client,
    timeout: Duration,
    held: Option<&str>,
) -> Result<Fetched, SessionError> {
    let item = held.map(|dhash| {
        NodeBuilder::new("item")
            .attr("dhash", dhash.to_owned())
            .build()
    });
    let answer = call(
        "blocklist_get",
        timeout,
        client.send_iq(blocklist_query(InfoQueryType::Get, item, timeout)),
    )
    .await?;
    let answer = answer.get();
    let mismatch = answer
        .get_optional_child("list")
        .and_then(|list| list.get_attr("type"))
        .is_some_and(|kind| kind.as_str() == "mismatch");
    if held.is_some() && !mismatch {
        return Ok(Fetched::Unchanged);
    }
    parse_blocklist(answer).map(Fetched::List)
}

/// Blocks or unblocks a user by LID (with the phone-number JID when known, as WhatsApp wants
/// for blocks) and answers the list WhatsApp returns. Stores nothing: see
/// [`DeviceBlocklist::change`].
pub async fn send_change(
    client: &Client,
    timeout: Duration,
    block: bool,
    lid: &Lid,
    phone: Option<&PhoneNumber>,
) -> Result<Blocklist, SessionError> {
    let action = if block { "block" } else { "unblock" };
    let mut item = NodeBuilder::new("item")
        .attr("action", action)
        .attr("jid", lid.jid());
    if block && let Some(phone) = phone {
        item = item.attr("pn_jid", phone.jid());
    }
    let answer = call(
        action,
        timeout,
        client.send_iq(blocklist_query(
            InfoQueryType::Set,
            Some(item.build()),
            timeout,
        )),
    )
    .await?;
    parse_blocklist(answer.get())
}

/// Who changed the list, as `privacy.blocklist` says it.
#[derive(Debug, Clone, Copy)]
pub enum ChangeSource<'a> {
    /// Read from WhatsApp: changed on the phone (or elsewhere) since the snapshot.
    Phone,
    /// A block or unblock through the API, of `target`.
    Api { block: bool, target: &'a Identity },
}

/// What changed between the snapshot and WhatsApp's answer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Change {
    prev_dhash: Option<String>,
    added: Vec<Identity>,
    /// As the snapshot knew them (a half that is missing is looked up when the event is built).
    removed: Vec<Identity>,
}

/// The change from `previous` to `list`, if anything changed. Entries match when any of their
/// identifiers does (an entry listed by LID before and by phone number now is the same user).
/// With no snapshot there is nothing to compare with: the first read is the baseline, and an
/// API change is described by its target.
fn diff(
    previous: Option<&Blocklist>,
    list: &Blocklist,
    source: &ChangeSource<'_>,
) -> Option<Change> {
    let Some(previous) = previous else {
        return match source {
            ChangeSource::Phone => None,
            ChangeSource::Api {
                block: true,
                target,
            } => Some(Change {
                added: vec![(*target).clone()],
                ..Change::default()
            }),
            ChangeSource::Api {
                block: false,
                target,
            } => Some(Change {
                removed: vec![(*target).clone()],
                ..Change::default()
            }),
        };
    };
    let listed = |entries: &[BlockedUser], identity: &Identity| {
        entries
            .iter()
            .any(|entry| entry.identity.same_user(identity))
    };
    let added: Vec<Identity> = list
        .items
        .iter()
        .filter(|item| !listed(&previous.items, &item.identity))
        .map(|item| item.identity.clone())
        .collect();
    // An entry the snapshot names by no identifier the gateway reads cannot be matched: it is
    // not reported as removed.
    let removed: Vec<Identity> = previous
        .items
        .iter()
        .filter(|entry| entry.identity.phone.is_some() || entry.identity.lid.is_some())
        .filter(|entry| !listed(&list.items, &entry.identity))
        .map(|entry| entry.identity.clone())
        .collect();
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    Some(Change {
        prev_dhash: Some(previous.dhash.clone()),
        added,
        removed,
    })
}

/// Each identity with its missing half where the device knows it (one lookup for all of them,
/// none when every identity is whole).
async fn completed(
    db: &PgPool,
    scope: &DeviceScope,
    identities: &[Identity],
) -> Result<Vec<Identity>, StoreError> {
    let halves: Vec<ContactId> = identities
        .iter()
        .filter(|identity| identity.phone.is_none() || identity.lid.is_none())
        .filter_map(|identity| {
            identity
                .lid
                .clone()
                .map(ContactId::Lid)
                .or_else(|| identity.phone.clone().map(ContactId::Phone))
        })
        .collect();
    if halves.is_empty() {
        return Ok(identities.to_vec());
    }
    let found = identities::complete(db, scope, &halves).await?;
    Ok(identities
        .iter()
        .map(|identity| {
            found
                .iter()
                .find(|known| identity.same_user(known))
                .cloned()
                .unwrap_or_else(|| identity.clone())
        })
        .collect())
}

impl Change {
    /// The event, with the phone number of every contact whose mapping is known.
    async fn event(
        self,
        db: &PgPool,
        scope: &DeviceScope,
        list: &Blocklist,
        source: &ChangeSource<'_>,
    ) -> Result<Pending, StoreError> {
        let added = completed(db, scope, &self.added).await?;
        let removed = completed(db, scope, &self.removed).await?;
        let source = match source {
            ChangeSource::Phone => "phone",
            ChangeSource::Api { .. } => "api",
        };
        Ok(Pending::new(
            EventKind::Blocklist,
            serde_json::json!({
                "source": source,
                "added": added.iter().map(outbox::contact).collect::<Vec<_>>(),
                "removed": removed.iter().map(outbox::contact).collect::<Vec<_>>(),
                "count": list.items.len(),
                "dhash": list.dhash,
                "prev_dhash": self.prev_dhash,
            }),
        ))
    }
}

impl Blocklist {
    /// The list a stored snapshot describes (each entry known by the JID it is listed under).
    fn from_snapshot(snapshot: blocklists::Snapshot) -> Self {
        Self {
            dhash: snapshot.dhash,
            items: snapshot
                .items
                .into_iter()
                .map(|jid| BlockedUser {
                    identity: ContactId::from_wire(&jid)
                        .map(Identity::from)
                        .unwrap_or_default(),
                    jid,
                })
                .collect(),
        }
    }

    fn snapshot(&self) -> blocklists::Snapshot {
        blocklists::Snapshot {
            dhash: self.dhash.clone(),
            items: self.items.iter().map(|item| item.jid.clone()).collect(),
        }
    }
}

/// A block list as answered: its hash and each item's identity with names.
pub type BlocklistView = Arc<(String, Vec<Identity>)>;

/// Longest a cached answer is served without being rebuilt, whatever happened.
const VIEW_MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct ViewEntry {
    /// Bumped by every invalidation; a view built before one is not stored.
    generation: u64,
    view: Option<(u64, Instant, BlocklistView)>,
}

/// One device's block list as last answered, kept while nothing changed it: the session's
/// contacts version (notifications, names it learned) is the same and nothing on this node
/// changed the list since. Reads then cost no database round trip.
#[derive(Default)]
pub struct BlocklistCache {
    entry: Mutex<ViewEntry>,
    /// The snapshot as this node last stored or read it, behind the device's turn: one refresh
    /// or change at a time (two notifications in a row start two refreshes, and the one that
    /// read the older list must not store it after the newer one).
    held: tokio::sync::Mutex<Held>,
}

/// What this node knows of the device's stored snapshot.
#[derive(Default)]
enum Held {
    /// Not read yet: the store says.
    #[default]
    Unread,
    /// The snapshot as stored (`None`: none is).
    Known(Option<Blocklist>),
}

impl BlocklistCache {
    fn entry(&self) -> std::sync::MutexGuard<'_, ViewEntry> {
        // A poisoned lock only means a panic while it was held; the entry is still coherent
        // enough to drop, so recover it and start from nothing.
        self.entry.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            guard.view = None;
            guard
        })
    }

    fn get(&self, version: u64) -> (Option<BlocklistView>, u64) {
        let entry = self.entry();
        let view = match &entry.view {
            Some((v, at, view)) if *v == version && at.elapsed() < VIEW_MAX_AGE => {
                Some(view.clone())
            }
            _ => None,
        };
        (view, entry.generation)
    }

    fn put(&self, version: u64, generation: u64, view: BlocklistView) {
        let mut entry = self.entry();
        if entry.generation == generation {
            entry.view = Some((version, Instant::now(), view));
        }
    }

    /// Forgets the answer: the list or the names it shows changed.
    pub fn invalidate(&self) {
        let mut entry = self.entry();
        entry.generation += 1;
        entry.view = None;
    }

    /// Forgets the snapshot as well (it was erased from the store).
    pub async fn forget(&self) {
        *self.held.lock().await = Held::Unread;
        self.invalidate();
    }
}

/// A device's block list: its snapshot in the store, its cached answer, and the client that
/// reads and changes it on WhatsApp.
pub struct DeviceBlocklist<'a> {
    pub db: &'a PgPool,
    pub wakeup: &'a Wakeup,
    pub scope: &'a DeviceScope,
    pub cache: &'a BlocklistCache,
    pub client: &'a Arc<Client>,
    pub timeout: Duration,
}

impl DeviceBlocklist<'_> {
    /// The snapshot as stored, read once per session of the node and then kept with each save.
    async fn held<'h>(&self, held: &'h mut Held) -> Result<Option<&'h Blocklist>, SessionError> {
        if matches!(held, Held::Unread) {
            let stored = blocklists::get(self.db, self.scope).await?;
            *held = Held::Known(stored.map(Blocklist::from_snapshot));
        }
        Ok(match held {
            Held::Known(list) => list.as_ref(),
            Held::Unread => None,
        })
    }

    async fn held_snapshot(&self) -> Result<Option<blocklists::Snapshot>, SessionError> {
        let mut held = self.cache.held.lock().await;
        Ok(self.held(&mut held).await?.map(Blocklist::snapshot))
    }

    /// Stores WhatsApp's answer as the device's snapshot, teaches the LID/phone pairs its
    /// items carried (through the client, so its own cache learns them too), appends the
    /// `privacy.blocklist` event for what changed since the snapshot (in the snapshot's
    /// transaction), and forgets the cached answer. The only writer of the snapshot.
    async fn save(
        &self,
        held: &mut Held,
        list: &Blocklist,
        source: ChangeSource<'_>,
    ) -> Result<(), SessionError> {
        let pairs: Vec<(String, String)> = list
            .items
            .iter()
            .filter_map(|item| {
                let identity = &item.identity;
                Some((
                    identity.lid.as_ref()?.as_str().to_owned(),
                    identity.phone.as_ref()?.as_str().to_owned(),
                ))
            })
            .collect();
        if !pairs.is_empty()
            && let Err(err) = self
                .client
                .add_lid_pn_mappings(
                    pairs,
                    whatsapp_rust::lid_pn_cache::LearningSource::BlocklistActive,
                )
                .await
        {
            tracing::warn!(error = %err, "block-list mappings not stored");
        }
        let snapshot = list.snapshot();
        // Against the snapshot this node holds, in one round trip when the store still holds
        // the same one.
        let previous = self.held(held).await?.cloned();
        let change = diff(previous.as_ref(), list, &source);
        let event = match change {
            Some(change) => Some(change.event(self.db, self.scope, list, &source).await?),
            None => None,
        };
        let expected = previous.as_ref().map(|p| p.dhash.as_str());
        let saved = blocklists::replace(
            self.db,
            self.scope,
            expected,
            &snapshot,
            event.as_ref().map(|e| (e.kind.name(), &e.data)),
        )
        .await?;
        let appended = match saved {
            blocklists::Replaced::Saved => {
                if let Some(event) = &event {
                    crate::metrics::event_created(event.kind);
                }
                event.is_some()
            }
            // Someone else wrote the snapshot (another node, during a hand-off): compare with
            // what is stored, under its lock.
            blocklists::Replaced::Stale => self.save_locked(list, &snapshot, &source).await?,
            blocklists::Replaced::Gone => false,
        };
        if appended {
            self.wakeup.committed();
        }
        *held = Held::Known(Some(list.clone()));
        self.cache.invalidate();
        Ok(())
    }

    /// The save against the stored snapshot, locked until it is replaced; answers whether an
    /// event was appended.
    async fn save_locked(
        &self,
        list: &Blocklist,
        snapshot: &blocklists::Snapshot,
        source: &ChangeSource<'_>,
    ) -> Result<bool, SessionError> {
        let mut tx = self.db.begin().await.map_err(StoreError::from)?;
        let previous = blocklists::get_for_update(&mut tx, self.scope)
            .await?
            .map(Blocklist::from_snapshot);
        let change = diff(previous.as_ref(), list, source);
        blocklists::put(&mut tx, self.scope, snapshot).await?;
        let appended = match change {
            Some(change) => {
                let event = change.event(self.db, self.scope, list, source).await?;
                outbox::append_in(&mut tx, self.scope, &[event]).await?;
                true
            }
            None => false,
        };
        tx.commit().await.map_err(StoreError::from)?;
        Ok(appended)
    }

    /// Brings the snapshot up to date with WhatsApp (one round trip with the hash it holds);
    /// answers whether the list changed.
    pub async fn refresh(&self) -> Result<bool, SessionError> {
        let mut held = self.cache.held.lock().await;
        let dhash = self.held(&mut held).await?.map(|list| list.dhash.clone());
        match fetch(self.client, self.timeout, dhash.as_deref()).await? {
            Fetched::Unchanged => Ok(false),
            Fetched::List(list) => {
                self.save(&mut held, &list, ChangeSource::Phone).await?;
                Ok(true)
            }
        }
    }

    /// Blocks or unblocks on WhatsApp; answers (and stores) the list WhatsApp returns.
    pub async fn change(
        &self,
        block: bool,
        lid: &Lid,
        phone: Option<&PhoneNumber>,
    ) -> Result<Blocklist, SessionError> {
        // In turn with refreshes: a refresh prompted by a notification of this very change must
        // find it saved (and then unchanged), or it would report it as made on the phone.
        let mut held = self.cache.held.lock().await;
        let list = send_change(self.client, self.timeout, block, lid, phone).await?;
        let target = Identity::new(phone.cloned(), Some(lid.clone()));
        self.save(
            &mut held,
            &list,
            ChangeSource::Api {
                block,
                target: &target,
            },
        )
        .await?;
        Ok(list)
    }

    /// The list with each item's identity and names: from the cache while unchanged, else
    /// from the snapshot, else (or when `refresh`) from WhatsApp. `version` is the session's
    /// contacts version.
    pub async fn view(&self, refresh: bool, version: u64) -> Result<BlocklistView, SessionError> {
        if refresh {
            self.cache.invalidate();
        }
        let (cached, generation) = self.cache.get(version);
        if let Some(view) = cached {
            return Ok(view);
        }
        let mut stored = if refresh {
            None
        } else {
            self.held_snapshot().await?
        };
        if stored.is_none() {
            self.refresh().await?;
            stored = self.held_snapshot().await?;
        }
        let snapshot = stored.unwrap_or_else(|| blocklists::Snapshot {
            dhash: String::new(),
            items: Vec::new(),
        });
        let users: Vec<ContactId> = snapshot
            .items
            .iter()
            .filter_map(|jid| ContactId::from_wire(jid))
            .collect();
        let mut items = identities::complete(self.db, self.scope, &users).await?;
        identities::attach_names(self.db, self.scope, &mut items).await?;
        let view = Arc::new((snapshot.dhash, items));
        // Stored under the generation read before the rebuild: an invalidation meanwhile wins.
        self.cache.put(version, generation, view.clone());
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_binary::marshal::{marshal, unmarshal_ref};

    fn encoded(node: &Node) -> Vec<u8> {
        marshal(node).expect("marshal")
    }

    #[test]
    fn items_carry_both_halves_of_the_identity() {
        let answer = NodeBuilder::new("iq")
            .children([NodeBuilder::new("list")
                .attr("dhash", "2:abc")
                .attr("addressing_mode", "pn")
                .children([
                    NodeBuilder::new("item")
                        .attr("jid", "5511999990000@s.whatsapp.net")
                        .attr("lid", "123456789@lid")
                        .build(),
                    NodeBuilder::new("item")
                        .attr("jid", "987654321@lid")
                        .build(),
                ])
                .build()])
            .build();
        let bytes = encoded(&answer);
        let list = parse_blocklist(&unmarshal_ref(&bytes[1..]).expect("decode")).expect("parse");
        assert_eq!(list.dhash, "2:abc");
        assert_eq!(list.items.len(), 2);
        let first = &list.items[0].identity;
        assert_eq!(first.phone_digits().as_deref(), Some("5511999990000"));
        assert_eq!(first.lid_jid().as_deref(), Some("123456789@lid"));
        assert_eq!(
            list.items[1].identity.lid_jid().as_deref(),
            Some("987654321@lid")
        );
        assert_eq!(list.items[1].identity.phone, None);
        assert!(list.contains(&Identity::new(None, Lid::from_digits("123456789").ok())));
    }

    #[test]
    fn block_list_notifications_are_recognised() {
        let notification = NodeBuilder::new("notification")
            .attr("type", "account_sync")
            .children([NodeBuilder::new("blocklist").attr("dhash", "2:def").build()])
            .build();
        let bytes = encoded(&notification);
        assert!(is_blocklist_notification(
            &unmarshal_ref(&bytes[1..]).expect("decode")
        ));
        let other = NodeBuilder::new("notification")
            .attr("type", "account_sync")
            .build();
        let bytes = encoded(&other);
        assert!(!is_blocklist_notification(
            &unmarshal_ref(&bytes[1..]).expect("decode")
        ));
    }

    #[test]
    fn a_stored_entry_without_an_identifier_is_never_reported_removed() {
        let snapshot = blocklists::Snapshot {
            dhash: "h1".to_owned(),
            items: vec![
                "not-a-jid".to_owned(),
                "5511999990000@s.whatsapp.net".to_owned(),
            ],
        };
        let previous = Blocklist::from_snapshot(snapshot);
        let list = Blocklist {
            dhash: "h2".to_owned(),
            items: Vec::new(),
        };
        let change = diff(Some(&previous), &list, &ChangeSource::Phone).expect("a change");
        assert_eq!(change.removed.len(), 1, "{change:?}");
        assert_eq!(
            change.removed[0].phone_digits().as_deref(),
            Some("5511999990000")
        );
        assert!(change.added.is_empty());
    }

    #[test]
    fn an_invalidation_during_a_rebuild_wins() {
        let cache = BlocklistCache::default();
        let (_, generation) = cache.get(1);
        cache.invalidate();
        cache.put(1, generation, Arc::new((String::new(), Vec::new())));
        assert!(cache.get(1).0.is_none());
        let (_, generation) = cache.get(1);
        cache.put(1, generation, Arc::new(("h".to_owned(), Vec::new())));
        assert!(cache.get(1).0.is_some());
        assert!(
            cache.get(2).0.is_none(),
            "another contacts version is another answer"
        );
    }
}
