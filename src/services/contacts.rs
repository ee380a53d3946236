//! Contacts: resolving identifiers (phone numbers, PN JIDs, LIDs) to both halves of WhatsApp's
//! identity, checking registration, blocking and unblocking, the block list, profiles, and the
//! named contacts a device knows.
//!
//! Resolution is cheapest first: the device's identity store, then the participants of a group
//! when one is named, then one batched usync query for every phone number still unknown. Never
//! one WhatsApp query per input.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use sqlx::PgPool;

use super::error::{Error, GroupAccess, group_failure};
use crate::domain::{ContactId, GroupJid, IdentifierError, Identity, Lid, PhoneNumber};
use crate::session::DeviceSession;
use crate::session::blocklist::{Blocklist, BlocklistView};
use crate::session::device::Members;
use crate::session::whatsapp::call;
use crate::store::identities::{self, NameUpdate, NamedContact};

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
#[derive(Debug, Clone)]
pub struct BusinessProfile {
    pub description: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub websites: Vec<String>,
}

/// A block or unblock as done: the user, whether it is now blocked, and the list.
#[derive(Debug, Clone)]
pub struct BlockOutcome {
    pub identity: Identity,
    pub blocked: bool,
    pub list: Blocklist,
}

/// A device's contacts, as one request sees them.
pub struct Contacts<'a> {
    pub db: &'a PgPool,
    pub session: &'a DeviceSession,
}

impl Contacts<'_> {
    /// Members of a group as identities; teaches the identity store what they carry.
    pub(super) async fn group_members(&self, group: &GroupJid) -> Result<Members, Error> {
        let cache = &self.session.caches().group_members;
        if let Some(members) = cache.get(group) {
            return Ok(members);
        }
        let client = self.session.client();
        let metadata = call(
            "group_metadata",
            self.session.timeout(),
            client.groups().get_metadata(&group.to_wa()),
        )
        .await
        .map_err(|e| group_failure(e, GroupAccess::Read))?;
        let members: Vec<Identity> = metadata
            .participants
            .iter()
            .map(|p| member_identity(&p.jid, p.lid.as_ref(), p.phone_number.as_ref()))
            .collect();
        self.learn(&members).await;
        let members = Arc::new(members);
        cache.put(group.clone(), members.clone());
        Ok(members)
    }

    /// Stores the LID/phone pairs of `identities` through the client, so that its own cache
    /// and the store both learn them.
    pub(super) async fn learn(&self, identities: &[Identity]) {
        let pairs: Vec<(String, String)> = identities
            .iter()
            .filter_map(|i| Some((i.lid.as_ref()?.as_str().to_owned(), i.phone_digits()?)))
            .collect();
        if pairs.is_empty() {
            return;
        }
        self.session.caches().blocklist.invalidate();
        if let Err(err) = self
            .session
            .client()
            .add_lid_pn_mappings(pairs, whatsapp_rust::lid_pn_cache::LearningSource::Other)
            .await
        {
            tracing::warn!(error = %err, "learned mappings not stored");
        }
    }

    /// Resolves up to 160 inputs. Answers one resolution per input, in order, with names.
    pub async fn resolve(
        &self,
        inputs: &[String],
        group: Option<&GroupJid>,
    ) -> Result<Vec<Resolution>, Error> {
        let parsed: Vec<Result<ContactId, IdentifierError>> =
            inputs.iter().map(|raw| ContactId::parse(raw)).collect();
        let users: Vec<ContactId> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
        self.resolve_users(&parsed, &users, group, true).await
    }

    /// Resolves parsed users (no names), for participant changes.
    pub async fn resolve_ids(&self, users: &[ContactId]) -> Result<Vec<Resolution>, Error> {
        let parsed: Vec<Result<ContactId, IdentifierError>> =
            users.iter().cloned().map(Ok).collect();
        self.resolve_users(&parsed, users, None, false).await
    }

    async fn resolve_users(
        &self,
        parsed: &[Result<ContactId, IdentifierError>],
        users: &[ContactId],
        group: Option<&GroupJid>,
        names: bool,
    ) -> Result<Vec<Resolution>, Error> {
        let scope = self.session.scope();
        let unique: BTreeSet<ContactId> = users.iter().cloned().collect();
        let unique: Vec<ContactId> = unique.into_iter().collect();

        // 1. The identity store.
        let known = identities::complete(self.db, scope, &unique).await?;
        let mut lid_of: HashMap<PhoneNumber, Lid> = HashMap::new();
        let mut phone_of: HashMap<Lid, PhoneNumber> = HashMap::new();
        for identity in &known {
            if let (Some(phone), Some(lid)) = (&identity.phone, &identity.lid) {
                lid_of.insert(phone.clone(), lid.clone());
                phone_of.insert(lid.clone(), phone.clone());
            }
        }
        // A number whose LID is known has an account.
        let mut registered: BTreeSet<PhoneNumber> = lid_of.keys().cloned().collect();

        // 2. The group's participants, for what the store does not know.
        let unknown = unique.iter().any(|u| match u {
            ContactId::Phone(p) => !lid_of.contains_key(p),
            ContactId::Lid(l) => !phone_of.contains_key(l),
        });
        if let Some(group) = group
            && unknown
        {
            for member in self.group_members(group).await?.iter() {
                if let Some(phone) = &member.phone {
                    if let Some(lid) = &member.lid {
                        phone_of.entry(lid.clone()).or_insert_with(|| phone.clone());
                        lid_of.entry(phone.clone()).or_insert_with(|| lid.clone());
                    }
                    registered.insert(phone.clone());
                }
            }
        }

        // 3. One usync query for every phone number still unknown.
        let mut business: HashMap<PhoneNumber, String> = HashMap::new();
        let to_query: Vec<&PhoneNumber> = unique
            .iter()
            .filter_map(ContactId::phone)
            .filter(|p| !registered.contains(*p))
            .collect();
        if !to_query.is_empty() {
            self.session.pace().await?;
            let jids: Vec<_> = to_query.iter().map(|p| p.to_wa()).collect();
            let results = call(
                "usync_resolve",
                self.session.timeout(),
                self.session.client().contacts().is_on_whatsapp(&jids),
            )
            .await?;
            let mut learned_names = Vec::new();
            for result in results {
                if !result.is_registered {
                    continue;
                }
                let Some(phone) = ContactId::from_wa(&result.jid).and_then(|c| c.phone().cloned())
                else {
                    continue;
                };
                registered.insert(phone.clone());
                if let Some(ContactId::Lid(lid)) = result.lid.as_ref().and_then(ContactId::from_wa)
                {
                    lid_of.insert(phone.clone(), lid.clone());
                    phone_of.insert(lid, phone.clone());
                }
                if let Some(name) = result.verified_name.as_ref().and_then(|v| v.name.clone()) {
                    business.insert(phone.clone(), name.clone());
                    learned_names.push(NameUpdate {
                        jid: phone.jid(),
                        business_name: Some(name),
                        ..NameUpdate::default()
                    });
                }
            }
            if let Err(err) = identities::record_names(self.db, scope, &learned_names).await {
                tracing::warn!(error = %err, "business names not stored");
            }
            // What the usync answer taught may change how block-list items read.
            self.session.caches().blocklist.invalidate();
        }

        // 4. One answer per input.
        let mut resolutions: Vec<Resolution> = parsed
            .iter()
            .map(|parsed| match parsed {
                Err(_) => Resolution::Unresolved(UnresolvedReason::InvalidIdentifier),
                Ok(ContactId::Phone(number)) => {
                    if !registered.contains(number) {
                        return Resolution::Unresolved(UnresolvedReason::NotOnWhatsapp);
                    }
                    Resolution::Resolved {
                        input_jid: number.jid(),
                        identity: Identity::new(Some(number.clone()), lid_of.get(number).cloned()),
                    }
                }
                Ok(ContactId::Lid(lid)) => match phone_of.get(lid) {
                    Some(phone) => Resolution::Resolved {
                        input_jid: lid.jid(),
                        identity: Identity::new(Some(phone.clone()), Some(lid.clone())),
                    },
                    None => Resolution::Unresolved(UnresolvedReason::UnknownLid),
                },
            })
            .collect();
        if !names {
            return Ok(resolutions);
        }
        let mut found: Vec<&mut Identity> = resolutions
            .iter_mut()
            .filter_map(|r| match r {
                Resolution::Resolved { identity, .. } => Some(identity),
                Resolution::Unresolved(_) => None,
            })
            .collect();
        identities::attach_names_to(self.db, scope, &mut found).await?;
        for identity in found {
            if identity.names.business_name.is_none()
                && let Some(name) = identity.phone.as_ref().and_then(|p| business.get(p))
            {
                identity.names.business_name = Some(name.clone());
            }
        }
        Ok(resolutions)
    }

    /// Registration of phone numbers, in one usync query. Answers number -> registered.
    pub async fn check(&self, numbers: &[PhoneNumber]) -> Result<HashMap<String, bool>, Error> {
        self.session.pace().await?;
        let unique: BTreeSet<&PhoneNumber> = numbers.iter().collect();
        let jids: Vec<_> = unique.iter().map(|p| p.to_wa()).collect();
        let results = call(
            "usync_check",
            self.session.timeout(),
            self.session.client().contacts().is_on_whatsapp(&jids),
        )
        .await?;
        let mut answer: HashMap<String, bool> = unique
            .iter()
            .map(|p| (p.as_str().to_owned(), false))
            .collect();
        for result in results {
            if let Some(registered) = answer.get_mut(result.jid.user_base()) {
                *registered = result.is_registered;
            }
        }
        Ok(answer)
    }

    /// The LID/PN pair of one user, from the session's LID cache, the store or one usync
    /// query; `NOT_ON_WHATSAPP` for a number without an account.
    pub async fn identify(&self, target: &ContactId) -> Result<Identity, Error> {
        // The session's own LID cache first (in memory, backed by this device's key store).
        if let Ok(Some(entry)) = self
            .session
            .client()
            .get_lid_pn_entry(&target.to_wa())
            .await
        {
            let phone = PhoneNumber::from_digits(&entry.phone_number).ok();
            let lid = Lid::from_digits(&entry.lid).ok();
            if phone.is_some() && lid.is_some() {
                return Ok(Identity::new(phone, lid));
            }
        }
        let not_on_whatsapp =
            || Error::NotOnWhatsapp("the number has no WhatsApp account".to_owned());
        match self
            .resolve_ids(std::slice::from_ref(target))
            .await?
            .into_iter()
            .next()
        {
            Some(Resolution::Resolved { identity, .. }) => Ok(identity),
            Some(Resolution::Unresolved(UnresolvedReason::NotOnWhatsapp)) => Err(not_on_whatsapp()),
            // A LID whose number is unknown is still what WhatsApp knows the user by.
            _ => match target {
                ContactId::Lid(lid) => Ok(Identity::new(None, Some(lid.clone()))),
                ContactId::Phone(_) => Err(not_on_whatsapp()),
            },
        }
    }

    /// Blocks or unblocks; answers the user, whether it is now blocked, and the list.
    pub async fn set_blocked(
        &self,
        target: &ContactId,
        block: bool,
    ) -> Result<BlockOutcome, Error> {
        let identity = self.identify(target).await?;
        let Some(lid) = identity.lid.clone() else {
            return Err(Error::Session(crate::session::SessionError::WhatsApp {
                code: 400,
                text: "WhatsApp did not tell this contact's LID; it cannot be blocked".to_owned(),
            }));
        };
        let list = self
            .session
            .blocklist(self.db)
            .change(block, &lid, identity.phone.as_ref())
            .await?;
        Ok(BlockOutcome {
            blocked: list.contains(&identity),
            identity,
            list,
        })
    }

    /// The block list with each item's identity; read from WhatsApp first when `refresh`.
    /// Served from memory while nothing changed it.
    pub async fn blocklist(&self, refresh: bool) -> Result<BlocklistView, Error> {
        let version = self.session.handle().contacts_version();
        Ok(self
            .session
            .blocklist(self.db)
            .view(refresh, version)
            .await?)
    }

    /// Every contact the device has a name for.
    pub async fn named(&self) -> Result<Vec<NamedContact>, Error> {
        Ok(identities::named_contacts(self.db, self.session.scope()).await?)
    }

    /// What WhatsApp tells about one user, and its business profile if it is a business.
    pub async fn profile(&self, target: &ContactId) -> Result<Profile, Error> {
        let identity = self.identify(target).await?;
        let user = identity
            .phone
            .clone()
            .map(ContactId::Phone)
            .or_else(|| identity.lid.clone().map(ContactId::Lid))
            .ok_or_else(|| Error::NotOnWhatsapp("unknown contact".to_owned()))?;
        let jid = user.to_wa();
        let client = self.session.client();
        let info = call(
            "profile",
            self.session.timeout(),
            client.contacts().get_user_info(std::slice::from_ref(&jid)),
        )
        .await?;
        let info = info.into_values().next();
        let business = match &info {
            Some(info) if info.is_business => call(
                "business_profile",
                self.session.timeout(),
                client.get_business_profile(&jid),
            )
            .await
            .ok()
            .flatten(),
            _ => None,
        };
        Ok(Profile {
            jid: user.jid(),
            status: info.as_ref().and_then(|i| i.status.clone()),
            picture_id: info.as_ref().and_then(|i| i.picture_id.clone()),
            devices: info
                .as_ref()
                .map(|i| {
                    i.devices
                        .iter()
                        .map(|d| match d {
                            0 => jid.to_string(),
                            n => jid.with_device(*n).to_string(),
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
                websites: b.website,
            }),
        })
    }
}

/// A group member's identity from what WhatsApp's metadata says of it: the participant JID
/// (a LID or a phone number), and the other half where the answer carries it.
pub(super) fn member_identity(
    jid: &wacore_binary::Jid,
    lid: Option<&wacore_binary::Jid>,
    phone: Option<&wacore_binary::Jid>,
) -> Identity {
    let mut identity = Identity::default();
    for candidate in [Some(jid), lid, phone].into_iter().flatten() {
        match ContactId::from_wa(candidate) {
            Some(ContactId::Phone(p)) => identity.phone = identity.phone.or(Some(p)),
            Some(ContactId::Lid(l)) => identity.lid = identity.lid.or(Some(l)),
            None => {}
        }
    }
    identity
}
