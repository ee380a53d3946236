//! Contacts routes: block list, block and unblock, resolve, check, profile, named contacts.
//! Every one needs the device connected (`409 DEVICE_NOT_READY` at once otherwise).

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::domain::{ContactId, DeviceId, GroupJid, Identity, PhoneNumber};
use crate::http::auth::AuthUser;
use crate::http::device::{DeviceQuery, connected_session};
use crate::http::envelope::{Data, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{Json, OptionalJson, Query, parse_items};
use crate::http::state::AppState;
use crate::services::contacts::{BusinessProfile, Contacts, Resolution, UnresolvedReason};

/// Most inputs one resolve takes.
pub const MAX_RESOLVE: usize = 160;
/// Most numbers one check takes.
pub const MAX_CHECK: usize = 500;

/// A user in an answer: the phone-number JID when known, else the LID JID.
#[derive(Serialize)]
pub struct ContactView {
    jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lid_jid: Option<String>,
}

impl ContactView {
    pub(super) fn of(identity: &Identity) -> Option<Self> {
        Some(Self {
            jid: identity.jid()?,
            phone_number: identity.phone_digits(),
            lid_jid: identity.lid_jid(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct BlocklistQuery {
    #[serde(default)]
    device_id: Option<DeviceId>,
    #[serde(default)]
    refresh: Option<bool>,
}

#[derive(Serialize)]
pub struct BlocklistView {
    items: Vec<ContactView>,
    count: usize,
    dhash: String,
}

pub async fn blocklist(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<BlocklistQuery>,
) -> Result<Data<BlocklistView>, ApiError> {
    let session = connected_session(&state, &caller, query.device_id).await?;
    let contacts = Contacts {
        db: &state.db,
        session: &session,
    };
    let view = contacts.blocklist(query.refresh.unwrap_or(false)).await?;
    let (dhash, identities) = &*view;
    let items: Vec<ContactView> = identities.iter().filter_map(ContactView::of).collect();
    Ok(Data(BlocklistView {
        count: items.len(),
        items,
        dhash: dhash.clone(),
    }))
}

/// A block or unblock target, from the body or (without one) the query string.
#[derive(Debug, Default, Deserialize)]
pub struct Target {
    #[serde(default)]
    jid: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

fn parse_target(target: &Target) -> Result<ContactId, ApiError> {
    match (&target.jid, &target.number) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "jid",
            "give either jid or number, not both",
        )),
        (None, None) => Err(ApiError::field("jid", "a jid or a number is required")),
        (Some(jid), None) => ContactId::parse(jid).map_err(|e| {
            ApiError::fields(vec![
                FieldError::new("jid", e.to_string()).with_value(jid.clone()),
            ])
        }),
        (None, Some(number)) => PhoneNumber::parse(number)
            .map(ContactId::Phone)
            .map_err(|e| {
                ApiError::fields(vec![
                    FieldError::new("number", e.to_string()).with_value(number.clone()),
                ])
            }),
    }
}

#[derive(Serialize)]
pub struct BlockView {
    jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lid_jid: Option<String>,
    action: &'static str,
    blocked: bool,
    count: usize,
    dhash: String,
}

async fn change_block(
    caller: AuthUser,
    state: AppState,
    query: Target,
    body: Option<Target>,
    block: bool,
) -> Result<Data<BlockView>, ApiError> {
    // The body wins when it names a target; otherwise the query string does.
    let target = match body {
        Some(body) if body.jid.is_some() || body.number.is_some() => body,
        Some(body) => Target {
            device_id: body.device_id.or(query.device_id),
            ..query
        },
        None => query,
    };
    let contact = parse_target(&target)?;
    let session = connected_session(&state, &caller, target.device_id).await?;
    let contacts = Contacts {
        db: &state.db,
        session: &session,
    };
    let done = contacts.set_blocked(&contact, block).await?;
    let jid = done
        .identity
        .jid()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("resolved contact without JID")))?;
    Ok(Data(BlockView {
        jid,
        phone_number: done.identity.phone_digits(),
        lid_jid: done.identity.lid_jid(),
        action: if block { "block" } else { "unblock" },
        blocked: done.blocked,
        count: done.list.items.len(),
        dhash: done.list.dhash,
    }))
}

pub async fn block(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<Target>,
    OptionalJson(body): OptionalJson<Target>,
) -> Result<Data<BlockView>, ApiError> {
    change_block(caller, state, query, body, true).await
}

pub async fn unblock(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<Target>,
    OptionalJson(body): OptionalJson<Target>,
) -> Result<Data<BlockView>, ApiError> {
    change_block(caller, state, query, body, false).await
}

#[derive(Deserialize)]
pub struct ResolveRequest {
    jids: Vec<String>,
    #[serde(default)]
    group_jid: Option<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct ResolvedItem {
    input: String,
    input_jid: String,
    resolved_jid: String,
    jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lid_jid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_name: Option<String>,
}

#[derive(Serialize)]
pub struct UnresolvedItem {
    input: String,
    reason: UnresolvedReason,
}

#[derive(Serialize)]
pub struct ResolveView {
    count: usize,
    items: Vec<ResolvedItem>,
    unresolved: Vec<UnresolvedItem>,
}

pub async fn resolve(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<ResolveRequest>,
) -> Result<Success<ResolveView>, ApiError> {
    if body.jids.is_empty() || body.jids.len() > MAX_RESOLVE {
        return Err(ApiError::fields(vec![
            FieldError::new("jids", format!("give 1 to {MAX_RESOLVE} identifiers"))
                .with_value(body.jids.len()),
        ]));
    }
    let group = body
        .group_jid
        .as_deref()
        .map(|g| {
            GroupJid::parse(g).map_err(|e| {
                ApiError::fields(vec![
                    FieldError::new("group_jid", e.to_string()).with_value(g),
                ])
            })
        })
        .transpose()?;
    let session = connected_session(&state, &caller, body.device_id).await?;
    let contacts = Contacts {
        db: &state.db,
        session: &session,
    };
    let resolutions = contacts.resolve(&body.jids, group.as_ref()).await?;
    let mut items = Vec::new();
    let mut unresolved = Vec::new();
    for (input, resolution) in body.jids.iter().zip(resolutions) {
        match resolution {
            Resolution::Resolved {
                input_jid,
                identity,
            } => {
                let Some(jid) = identity.jid() else { continue };
                items.push(ResolvedItem {
                    input: input.clone(),
                    input_jid,
                    resolved_jid: jid.clone(),
                    jid,
                    lid_jid: identity.lid_jid(),
                    phone_number: identity.phone_digits(),
                    full_name: identity.names.full_name,
                    first_name: identity.names.first_name,
                    push_name: identity.names.push_name,
                    business_name: identity.names.business_name,
                });
            }
            Resolution::Unresolved(reason) => unresolved.push(UnresolvedItem {
                input: input.clone(),
                reason,
            }),
        }
    }
    Ok(Success::ok(ResolveView {
        count: items.len(),
        items,
        unresolved,
    }))
}

#[derive(Deserialize)]
pub struct CheckRequest {
    numbers: Vec<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

pub async fn check(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<CheckRequest>,
) -> Result<Data<BTreeMap<String, bool>>, ApiError> {
    if body.numbers.is_empty() || body.numbers.len() > MAX_CHECK {
        return Err(ApiError::fields(vec![
            FieldError::new("numbers", format!("give 1 to {MAX_CHECK} numbers"))
                .with_value(body.numbers.len()),
        ]));
    }
    let numbers = parse_items("numbers", &body.numbers, PhoneNumber::parse)?;
    let session = connected_session(&state, &caller, body.device_id).await?;
    let contacts = Contacts {
        db: &state.db,
        session: &session,
    };
    let answer = contacts.check(&numbers).await?;
    Ok(Data(answer.into_iter().collect()))
}

#[derive(Debug, Default, Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    jid: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

/// `user_info` keeps the published API's PascalCase keys.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserInfoView {
    status: Option<String>,
    #[serde(rename = "PictureID")]
    picture_id: Option<String>,
    devices: Vec<String>,
    verified_name: Option<String>,
}

#[derive(Serialize)]
pub struct ProfileView {
    jid: String,
    user_info: UserInfoView,
    business_profile: Option<BusinessProfileView>,
}

/// A business account's public profile.
#[derive(Serialize)]
pub struct BusinessProfileView {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    websites: Vec<String>,
}

impl From<BusinessProfile> for BusinessProfileView {
    fn from(b: BusinessProfile) -> Self {
        Self {
            description: b.description,
            email: b.email,
            address: b.address,
            websites: b.websites,
        }
    }
}

pub async fn profile(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<ProfileQuery>,
) -> Result<Data<ProfileView>, ApiError> {
    let target = parse_target(&Target {
        jid: query.jid,
        number: query.number,
        device_id: query.device_id,
    })?;
    let session = connected_session(&state, &caller, query.device_id).await?;
    let contacts = Contacts {
        db: &state.db,
        session: &session,
    };
    let profile = contacts.profile(&target).await?;
    Ok(Data(ProfileView {
        jid: profile.jid,
        user_info: UserInfoView {
            status: profile.status,
            picture_id: profile.picture_id,
            devices: profile.devices,
            verified_name: profile.verified_name,
        },
        business_profile: profile.business.map(BusinessProfileView::from),
    }))
}

#[derive(Serialize)]
pub struct NamedContactView {
    jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lid_jid: Option<String>,
}

#[derive(Serialize)]
pub struct ContactList {
    count: usize,
    contacts: Vec<NamedContactView>,
}

pub async fn list(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<ContactList>, ApiError> {
    let session = connected_session(&state, &caller, query.device_id).await?;
    let contacts = Contacts {
        db: &state.db,
        session: &session,
    };
    let named = contacts.named().await?;
    // One entry per person: names stored under the phone-number JID and under the LID JID
    // are the same contact.
    let mut merged: BTreeMap<String, NamedContactView> = BTreeMap::new();
    for contact in named {
        let identity = contact.identity;
        let jid = identity.jid().unwrap_or(contact.jid);
        let entry = merged
            .entry(jid.clone())
            .or_insert_with(|| NamedContactView {
                jid,
                first_name: None,
                full_name: None,
                push_name: None,
                business_name: None,
                lid_jid: identity.lid_jid(),
            });
        for (into, from) in [
            (&mut entry.first_name, &identity.names.first_name),
            (&mut entry.full_name, &identity.names.full_name),
            (&mut entry.push_name, &identity.names.push_name),
            (&mut entry.business_name, &identity.names.business_name),
        ] {
            if into.is_none() {
                into.clone_from(from);
            }
        }
    }
    let contacts: Vec<NamedContactView> = merged.into_values().collect();
    Ok(Success::ok(ContactList {
        count: contacts.len(),
        contacts,
    }))
}
