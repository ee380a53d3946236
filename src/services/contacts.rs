//! Contacts: resolving identifiers (phone numbers, PN JIDs, LIDs) to both halves of WhatsApp's
//! identity, checking registration, blocking and unblocking, the block list, profiles, and the
//! named contacts a device knows.
//!
//! Resolution is cheapest first: the device's identity store, then the participants of a group
//! when one is named, then one batched usync query for every phone number still unknown. Never
//! one WhatsApp query per input.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wacore_binary::Jid;
use whatsapp_rust::Client;

use crate::domain::{ContactId, DeviceId, GroupJid, IdentifierError, PhoneNumber, TenantId};
use crate::http::error::ApiError;
use crate::session::whatsapp::{self, call};
use crate::session::{DeviceHandle, SessionError};
use crate::store::identities::{self, NameUpdate, Names};
use crate::store::{StoreError, blocklists};

/// A device's contacts, as one request sees them.
pub struct Contacts<'a> {
    pub db: &'a sqlx::PgPool,
    pub tenant: TenantId,
    pub device: DeviceId,
    pub handle: DeviceHandle,
    pub views: &'a BlocklistViews,
}

/// A block list as answered: its hash and each item's identity.
pub type BlocklistView = Arc<(String, Vec<Identity>)>;

/// Longest a cached block list is served without being rebuilt, whatever happened.
const VIEW_MAX_AGE: Duration = Duration::from_secs(5);

struct ViewEntry {
    /// Bumped by every invalidation; a view built before one is not stored.
    generation: u64,
    view: Option<(u64, Instant, BlocklistView)>,
}

/// Block lists as answered, per device, kept while nothing changed them: the session's
/// contacts version (block-list notifications, names it learned) is the same and this node did
/// not change them since (block, unblock, refresh, mappings learned). Reads of the block list
/// then cost no database round trip.
#[derive(Default)]
pub struct BlocklistViews {
    entries: std::sync::Mutex<HashMap<DeviceId, ViewEntry>>,
}

impl BlocklistViews {
    /// The current view, and the generation to store a rebuilt one under.
    fn get(&self, device: DeviceId, version: u64) -> (Option<BlocklistView>, u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return (None, 0);
        };
        let entry = entries.entry(device).or_insert(ViewEntry {
            generation: 0,
            view: None,
        });
        let view = match &entry.view {
            Some((v, at, view)) if *v == version && at.elapsed() < VIEW_MAX_AGE => {
                Some(view.clone())
            }
            _ => None,
        };
        (view, entry.generation)
    }

    fn put(&self, device: DeviceId, version: u64, generation: u64, view: BlocklistView) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&device)
            && entry.generation == generation
        {
            entry.view = Some((version, Instant::now(), view));
        }
    }

    /// Forgets the device's view: something on this node changed its block list or names.
    pub fn invalidate(&self, device: DeviceId) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&device)
        {
            entry.generation += 1;
            entry.view = None;
        }
    }

    /// Drops a device's entry altogether (its session ended).
    pub fn forget(&self, device: DeviceId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&device);
        }
    }
}

/// One user with both halves of its identity where known, and its names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub names: Names,
}

impl Identity {
    /// The JID to show: the phone-number JID when the number is known, else the LID JID.
    pub fn jid(&self) -> Option<String> {
        match (&self.phone, &self.lid) {
            (Some(phone), _) => Some(format!("{phone}@s.whatsapp.net")),
            (None, Some(lid)) => Some(format!("{lid}@lid")),
            (None, None) => None,
        }
    }

    pub fn lid_jid(&self) -> Option<String> {
        self.lid.as_ref().map(|lid| format!("{lid}@lid"))
    }
}

/// Why an input did not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnresolvedReason {
    InvalidIdentifier,
    NotOnWhatsapp,
    UnknownLid,
}

/// The outcome for one input of a resolve.
#[derive(Debug, Clone)]
pub enum Resolution {
    Resolved {
        input_jid: String,
        identity: Identity,
    },
    Unresolved(UnresolvedReason),
}

/// How long a group's participant list is trusted for resolving.
const GROUP_CACHE_TTL: Duration = Duration::from_secs(60);

type GroupKey = (DeviceId, String);

/// A group's members: (LID or phone user, phone number when known).
type Members = Arc<Vec<(String, Option<String>)>>;

/// Participants of groups, cached briefly per device: resolving many inputs against one group
/// in a row should not cost a group query each time.
#[derive(Default)]
pub struct GroupParticipantsCache {
    entries: std::sync::Mutex<HashMap<GroupKey, (Instant, Members)>>,
}

impl GroupParticipantsCache {
    fn get(&self, key: &GroupKey) -> Option<Members> {
        let entries = self.entries.lock().ok()?;
        let (at, members) = entries.get(key)?;
        (at.elapsed() < GROUP_CACHE_TTL).then(|| members.clone())
    }

    fn put(&self, key: GroupKey, members: Members) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (at, _)| at.elapsed() < GROUP_CACHE_TTL);
            entries.insert(key, (Instant::now(), members));
        }
    }
}

fn store_err(err: StoreError) -> ApiError {
    err.into()
}

impl Contacts<'_> {
    fn client(&self) -> Result<Arc<Client>, ApiError> {
        Ok(self.handle.client()?)
    }

    fn timeout(&self) -> Duration {
        self.handle.wa_timeout()
    }

    /// Names for identities, merged from what is stored under their phone and LID JIDs.
    async fn attach_names(&self, identities: &mut [&mut Identity]) -> Result<(), ApiError> {
        let mut jids = Vec::new();
        for identity in identities.iter() {
            jids.extend(
                identity
                    .phone
                    .as_ref()
                    .map(|p| format!("{p}@s.whatsapp.net")),
            );
            jids.extend(identity.lid_jid());
        }
        let names = identities::names_of(self.db, self.tenant, self.device, &jids)
            .await
            .map_err(store_err)?;
        for identity in identities.iter_mut() {
            let pn_jid = identity
                .phone
                .as_ref()
                .map(|p| format!("{p}@s.whatsapp.net"));
            for jid in [pn_jid, identity.lid_jid()].into_iter().flatten() {
                if let Some(found) = names.get(&jid) {
                    identity.names.merge(found);
                }
            }
        }
        Ok(())
    }

    /// Participants of a group as (LID or phone user, phone) pairs; teaches the identity store.
    async fn group_members(
        &self,
        cache: &GroupParticipantsCache,
        group: &GroupJid,
    ) -> Result<Members, ApiError> {
        let key = (self.device, group.jid());
        if let Some(members) = cache.get(&key) {
            return Ok(members);
        }
        let client = self.client()?;
        let jid: Jid = group
            .jid()
            .parse()
            .map_err(|_| ApiError::field("group_jid", "not a group JID"))?;
        let metadata = call(
            "group_metadata",
            self.timeout(),
            client.groups().get_metadata(&jid),
        )
        .await
        .map_err(group_error)?;
        let mut members = Vec::with_capacity(metadata.participants.len());
        let mut learned = Vec::new();
        for participant in &metadata.participants {
            let lid = participant
                .lid
                .as_ref()
                .or(participant.jid.is_lid().then_some(&participant.jid))
                .map(|j| j.user.to_string());
            let phone = participant
                .phone_number
                .as_ref()
                .or(participant.jid.is_pn().then_some(&participant.jid))
                .map(|j| j.user.to_string());
            if let (Some(lid), Some(phone)) = (&lid, &phone) {
                learned.push((lid.clone(), phone.clone()));
            }
            if let Some(id) = lid.clone().or_else(|| phone.clone()) {
                members.push((id, phone));
            }
        }
        if !learned.is_empty() {
            // Through the client, so that its own cache and the store both learn the pairs.
            if let Err(err) = client
                .add_lid_pn_mappings(learned, whatsapp_rust::lid_pn_cache::LearningSource::Other)
                .await
            {
                tracing::warn!(error = %err, "group mappings not stored");
            }
        }
        let members = Arc::new(members);
        cache.put(key, members.clone());
        Ok(members)
    }

    /// Resolves up to 160 inputs. Answers one resolution per input, in order, with names.
    pub async fn resolve(
        &self,
        inputs: &[String],
        group: Option<&GroupJid>,
        cache: &GroupParticipantsCache,
    ) -> Result<Vec<Resolution>, ApiError> {
        self.resolve_with(inputs, group, cache, true).await
    }

    /// [`Self::resolve`], with names only when `names`.
    pub async fn resolve_with(
        &self,
        inputs: &[String],
        group: Option<&GroupJid>,
        cache: &GroupParticipantsCache,
        names: bool,
    ) -> Result<Vec<Resolution>, ApiError> {
        let parsed: Vec<Result<ContactId, IdentifierError>> =
            inputs.iter().map(|raw| ContactId::parse(raw)).collect();
        let phones: BTreeSet<String> = parsed
            .iter()
            .filter_map(|p| match p {
                Ok(ContactId::Phone(n)) => Some(n.as_str().to_owned()),
                _ => None,
            })
            .collect();
        let lids: BTreeSet<String> = parsed
            .iter()
            .filter_map(|p| match p {
                Ok(ContactId::Lid(l)) => Some(l.as_str().to_owned()),
                _ => None,
            })
            .collect();

        // 1. The identity store.
        let phones_list: Vec<String> = phones.iter().cloned().collect();
        let lids_list: Vec<String> = lids.iter().cloned().collect();
        let mut lid_of =
            identities::lids_of_phones(self.db, self.tenant, self.device, &phones_list)
                .await
                .map_err(store_err)?;
        let mut phone_of =
            identities::phones_of_lids(self.db, self.tenant, self.device, &lids_list)
                .await
                .map_err(store_err)?;
        let mut registered: BTreeSet<String> = lid_of.keys().cloned().collect();

        // 2. The group's participants, for what the store does not know.
        let unknown_lids = lids.iter().any(|l| !phone_of.contains_key(l));
        let unknown_phones = phones.iter().any(|p| !lid_of.contains_key(p));
        if let Some(group) = group
            && (unknown_lids || unknown_phones)
        {
            self.views.invalidate(self.device);
            for (id, phone) in self.group_members(cache, group).await?.iter() {
                if let Some(phone) = phone {
                    if id != phone {
                        phone_of.entry(id.clone()).or_insert_with(|| phone.clone());
                        lid_of.entry(phone.clone()).or_insert_with(|| id.clone());
                    }
                    registered.insert(phone.clone());
                }
            }
        }

        // 3. One usync query for every phone number still unknown.
        let mut business = HashMap::new();
        let to_query: Vec<String> = phones
            .iter()
            .filter(|p| !registered.contains(*p))
            .cloned()
            .collect();
        if !to_query.is_empty() {
            let client = self.client()?;
            self.handle.pace().await?;
            let jids: Vec<Jid> = to_query.iter().map(Jid::pn).collect();
            let results = call(
                "usync_resolve",
                self.timeout(),
                client.contacts().is_on_whatsapp(&jids),
            )
            .await?;
            let mut names = Vec::new();
            for result in results {
                if !result.is_registered {
                    continue;
                }
                let phone = result.jid.user.to_string();
                registered.insert(phone.clone());
                if let Some(lid) = &result.lid {
                    lid_of.insert(phone.clone(), lid.user.to_string());
                    phone_of.insert(lid.user.to_string(), phone.clone());
                }
                if let Some(name) = result.verified_name.as_ref().and_then(|v| v.name.clone()) {
                    business.insert(phone.clone(), name.clone());
                    names.push(NameUpdate {
                        jid: format!("{phone}@s.whatsapp.net"),
                        business_name: Some(name),
                        ..NameUpdate::default()
                    });
                }
            }
            if let Err(err) = identities::record_names(self.db, self.device, &names).await {
                tracing::warn!(error = %err, "business names not stored");
            }
            // What the usync answer taught may change how block-list items read.
            self.views.invalidate(self.device);
        }

        // 4. One answer per input.
        let mut resolutions: Vec<Resolution> = parsed
            .into_iter()
            .map(|parsed| match parsed {
                Err(_) => Resolution::Unresolved(UnresolvedReason::InvalidIdentifier),
                Ok(ContactId::Phone(number)) => {
                    let phone = number.as_str().to_owned();
                    if !registered.contains(&phone) {
                        return Resolution::Unresolved(UnresolvedReason::NotOnWhatsapp);
                    }
                    Resolution::Resolved {
                        input_jid: number.jid(),
                        identity: Identity {
                            lid: lid_of.get(&phone).cloned(),
                            phone: Some(phone),
                            names: Names::default(),
                        },
                    }
                }
                Ok(ContactId::Lid(lid)) => match phone_of.get(lid.as_str()) {
                    Some(phone) => Resolution::Resolved {
                        input_jid: lid.jid(),
                        identity: Identity {
                            phone: Some(phone.clone()),
                            lid: Some(lid.as_str().to_owned()),
                            names: Names::default(),
                        },
                    },
                    None => Resolution::Unresolved(UnresolvedReason::UnknownLid),
                },
            })
            .collect();
        if !names {
            return Ok(resolutions);
        }
        let mut identities: Vec<&mut Identity> = resolutions
            .iter_mut()
            .filter_map(|r| match r {
                Resolution::Resolved { identity, .. } => Some(identity),
                Resolution::Unresolved(_) => None,
            })
            .collect();
        self.attach_names(&mut identities).await?;
        for identity in identities {
            if identity.names.business_name.is_none()
                && let Some(name) = identity.phone.as_ref().and_then(|p| business.get(p))
            {
                identity.names.business_name = Some(name.clone());
            }
        }
        Ok(resolutions)
    }

    /// Registration of phone numbers, in one usync query. Answers number -> registered.
    pub async fn check(&self, numbers: &[PhoneNumber]) -> Result<HashMap<String, bool>, ApiError> {
        let client = self.client()?;
        self.handle.pace().await?;
        let unique: BTreeSet<&str> = numbers.iter().map(PhoneNumber::as_str).collect();
        let jids: Vec<Jid> = unique.iter().map(|p| Jid::pn(*p)).collect();
        let results = call(
            "usync_check",
            self.timeout(),
            client.contacts().is_on_whatsapp(&jids),
        )
        .await?;
        let mut answer: HashMap<String, bool> =
            unique.iter().map(|p| ((*p).to_owned(), false)).collect();
        for result in results {
            if let Some(registered) = answer.get_mut(result.jid.user.as_str()) {
                *registered = result.is_registered;
            }
        }
        Ok(answer)
    }

    /// The LID/PN pair of one user, from the store or one usync query; `NOT_ON_WHATSAPP` for a
    /// number without an account.
    pub async fn identify(&self, target: &ContactId) -> Result<Identity, ApiError> {
        // The session's own LID cache first (in memory, backed by this device's key store).
        let client = self.client()?;
        let jid = match target {
            ContactId::Phone(p) => Jid::pn(p.as_str()),
            ContactId::Lid(l) => Jid::lid(l.as_str()),
        };
        if let Ok(Some(entry)) = client.get_lid_pn_entry(&jid).await {
            return Ok(Identity {
                phone: Some(entry.phone_number.to_string()),
                lid: Some(entry.lid.to_string()),
                names: Names::default(),
            });
        }
        let input = [match target {
            ContactId::Phone(p) => p.as_str().to_owned(),
            ContactId::Lid(l) => l.jid(),
        }];
        let cache = GroupParticipantsCache::default();
        match self
            .resolve_with(&input, None, &cache, false)
            .await?
            .into_iter()
            .next()
        {
            Some(Resolution::Resolved { identity, .. }) => Ok(identity),
            Some(Resolution::Unresolved(UnresolvedReason::NotOnWhatsapp)) => Err(
                ApiError::NotOnWhatsapp("the number has no WhatsApp account".to_owned()),
            ),
            // A LID whose number is unknown can still be blocked or unblocked by LID alone.
            _ => match target {
                ContactId::Lid(lid) => Ok(Identity {
                    lid: Some(lid.as_str().to_owned()),
                    ..Identity::default()
                }),
                ContactId::Phone(_) => Err(ApiError::NotOnWhatsapp(
                    "the number has no WhatsApp account".to_owned(),
                )),
            },
        }
    }

    /// Blocks or unblocks; answers the identity, whether it is now blocked, and the list.
    pub async fn set_blocked(
        &self,
        target: &ContactId,
        block: bool,
    ) -> Result<(Identity, bool, blocklists::Snapshot), ApiError> {
        let client = self.client()?;
        let identity = self.identify(target).await?;
        let Some(lid_jid) = identity.lid_jid() else {
            return Err(ApiError::Device(
                "WhatsApp did not tell this contact's LID; it cannot be blocked".to_owned(),
            ));
        };
        let pn_jid = identity
            .phone
            .as_ref()
            .map(|p| format!("{p}@s.whatsapp.net"));
        let list =
            whatsapp::change_blocklist(&client, self.timeout(), block, &lid_jid, pn_jid.as_deref())
                .await?;
        let snapshot = blocklists::Snapshot {
            dhash: list.dhash,
            items: list.items,
        };
        blocklists::put(self.db, self.device, &snapshot)
            .await
            .map_err(store_err)?;
        self.views.invalidate(self.device);
        let blocked = snapshot
            .items
            .iter()
            .any(|item| item == &lid_jid || pn_jid.as_deref() == Some(item.as_str()));
        Ok((identity, blocked, snapshot))
    }

    /// The block list with each item's identity; read from WhatsApp first when `refresh`.
    /// Served from memory while nothing changed it.
    pub async fn blocklist(&self, refresh: bool) -> Result<BlocklistView, ApiError> {
        if refresh {
            self.views.invalidate(self.device);
        }
        let version = self.handle.contacts_version();
        let (cached, generation) = self.views.get(self.device, version);
        if let Some(view) = cached {
            return Ok(view);
        }
        let view = Arc::new(self.read_blocklist(refresh).await?);
        self.views
            .put(self.device, version, generation, view.clone());
        Ok(view)
    }

    async fn read_blocklist(&self, refresh: bool) -> Result<(String, Vec<Identity>), ApiError> {
        let snapshot = match blocklists::get(self.db, self.tenant, self.device)
            .await
            .map_err(store_err)?
        {
            Some(snapshot) if !refresh => snapshot,
            _ => {
                let client = self.client()?;
                let list = whatsapp::get_blocklist(&client, self.timeout()).await?;
                let snapshot = blocklists::Snapshot {
                    dhash: list.dhash,
                    items: list.items,
                };
                blocklists::put(self.db, self.device, &snapshot)
                    .await
                    .map_err(store_err)?;
                snapshot
            }
        };
        let mut lids = Vec::new();
        let mut phones = Vec::new();
        for item in &snapshot.items {
            match item.split_once('@') {
                Some((user, "lid")) => lids.push(user.to_owned()),
                Some((user, _)) => phones.push(user.split(':').next().unwrap_or(user).to_owned()),
                None => {}
            }
        }
        let phone_of = identities::phones_of_lids(self.db, self.tenant, self.device, &lids)
            .await
            .map_err(store_err)?;
        let lid_of = identities::lids_of_phones(self.db, self.tenant, self.device, &phones)
            .await
            .map_err(store_err)?;
        let mut items: Vec<Identity> = snapshot
            .items
            .iter()
            .filter_map(|item| {
                let (user, server) = item.split_once('@')?;
                let user = user.split(':').next().unwrap_or(user).to_owned();
                Some(if server == "lid" {
                    Identity {
                        phone: phone_of.get(&user).cloned(),
                        lid: Some(user),
                        names: Names::default(),
                    }
                } else {
                    Identity {
                        lid: lid_of.get(&user).cloned(),
                        phone: Some(user),
                        names: Names::default(),
                    }
                })
            })
            .collect();
        let mut refs: Vec<&mut Identity> = items.iter_mut().collect();
        self.attach_names(&mut refs).await?;
        Ok((snapshot.dhash, items))
    }

    /// What WhatsApp tells about one user, and its business profile if it is a business.
    pub async fn profile(&self, target: &ContactId) -> Result<Profile, ApiError> {
        let identity = self.identify(target).await?;
        let jid_text = identity
            .jid()
            .ok_or_else(|| ApiError::NotOnWhatsapp("unknown contact".to_owned()))?;
        let jid: Jid = jid_text
            .parse()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("unparsable JID {jid_text}")))?;
        let client = self.client()?;
        let info = call(
            "profile",
            self.timeout(),
            client.contacts().get_user_info(std::slice::from_ref(&jid)),
        )
        .await?;
        let info = info.into_values().next();
        let business = match &info {
            Some(info) if info.is_business => call(
                "business_profile",
                self.timeout(),
                client.get_business_profile(&jid),
            )
            .await
            .ok()
            .flatten(),
            _ => None,
        };
        Ok(Profile {
            jid: jid_text,
            status: info.as_ref().and_then(|i| i.status.clone()),
            picture_id: info.as_ref().and_then(|i| i.picture_id.clone()),
            devices: info
                .as_ref()
                .map(|i| {
                    i.devices
                        .iter()
                        .map(|d| match d {
                            0 => jid.to_string(),
                            n => format!("{}:{n}@{}", jid.user, jid.server),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            verified_name: info
                .as_ref()
                .and_then(|i| i.verified_name.as_ref())
                .and_then(|v| v.name.clone()),
            business: business.map(|b| BusinessProfile {
                description: (!b.description.is_empty()).then(|| b.description.clone()),
                email: b.email.clone(),
                address: b.address.clone(),
                websites: b.website.clone(),
            }),
        })
    }
}

/// What `GET /contacts/profile` answers.
#[derive(Debug, Clone)]
pub struct Profile {
    pub jid: String,
    pub status: Option<String>,
    pub picture_id: Option<String>,
    pub devices: Vec<String>,
    pub verified_name: Option<String>,
    pub business: Option<BusinessProfile>,
}

/// A business account's public profile.
#[derive(Debug, Clone, Serialize)]
pub struct BusinessProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub websites: Vec<String>,
}

fn group_error(err: SessionError) -> ApiError {
    match err {
        SessionError::WhatsApp { code: 404, .. } | SessionError::WhatsApp { code: 403, .. } => {
            ApiError::NotFound("group not found".to_owned())
        }
        other => other.into(),
    }
}
