//! The account's pages: profile pictures (a contact's or a group's, the group's and the own one
//! set), privacy settings, and an app-state sync on demand. Every one needs the device
//! connected (`409 DEVICE_NOT_READY` at once otherwise).

use axum::extract::State;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::domain::{ContactId, DeviceId, GroupJid, PhoneNumber};
use crate::http::auth::AuthUser;
use crate::http::device::{DeviceQuery, connected_session};
use crate::http::envelope::{Data, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{GroupPath, Json, Query};
use crate::http::state::AppState;
use crate::services::app_state::{AppState as DeviceAppState, Scope};
use crate::services::pictures::{PictureInfo, PictureOf, Pictures, is_jpeg};
use crate::services::privacy::{Privacy, PrivacyChange, PrivacySettings};

#[derive(Debug, Default, Deserialize)]
pub struct PictureQuery {
    #[serde(default)]
    jid: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    preview: Option<bool>,
    #[serde(default)]
    existing_id: Option<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

fn invalid(field: &str, message: impl Into<String>, value: &str) -> ApiError {
    ApiError::fields(vec![FieldError::new(field, message).with_value(value)])
}

fn picture_target(query: &PictureQuery) -> Result<PictureOf, ApiError> {
    match (&query.jid, &query.number) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "jid",
            "give either jid or number, not both",
        )),
        (None, None) => Err(ApiError::field("jid", "a jid or a number is required")),
        (Some(jid), None) if jid.trim().ends_with("@g.us") => GroupJid::parse(jid)
            .map(PictureOf::Group)
            .map_err(|e| invalid("jid", e.to_string(), jid)),
        (Some(jid), None) => ContactId::parse(jid)
            .map(PictureOf::Contact)
            .map_err(|e| invalid("jid", e.to_string(), jid)),
        (None, Some(number)) => PhoneNumber::parse(number)
            .map(|p| PictureOf::Contact(ContactId::Phone(p)))
            .map_err(|e| invalid("number", e.to_string(), number)),
    }
}

/// A picture: WUTS's shape, or (the caller's `existing_id` still current) unchanged.
#[derive(Serialize)]
#[serde(untagged)]
pub enum PictureView {
    Current {
        jid: String,
        url: String,
        id: String,
        #[serde(rename = "type")]
        kind: String,
        direct_path: Option<String>,
    },
    Unchanged {
        jid: String,
        id: String,
        unchanged: bool,
        url: Option<String>,
    },
}

pub async fn profile_picture(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<PictureQuery>,
) -> Result<Data<PictureView>, ApiError> {
    let target = picture_target(&query)?;
    let existing = query
        .existing_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty());
    if let Some(id) = existing
        && (id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(invalid("existing_id", "not a picture id", id));
    }
    let session = connected_session(&state, &caller, query.device_id).await?;
    let pictures = Pictures { session: &session };
    let jid = target.jid();
    let view = match pictures
        .get(&target, query.preview.unwrap_or(false), existing)
        .await?
    {
        PictureInfo::Current {
            id,
            url,
            kind,
            direct_path,
        } => PictureView::Current {
            jid,
            url,
            id,
            kind,
            direct_path,
        },
        PictureInfo::Unchanged { id } => PictureView::Unchanged {
            jid,
            id,
            unchanged: true,
            url: None,
        },
    };
    Ok(Data(view))
}

#[derive(Deserialize)]
pub struct PictureBody {
    #[serde(default)]
    image_base64: Option<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

/// The JPEG in `image_base64` (a `data:` URI prefix is accepted).
fn jpeg_of(body: &PictureBody) -> Result<Vec<u8>, ApiError> {
    let raw = body
        .image_base64
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::field("image_base64", "a base64-encoded JPEG is required"))?;
    let encoded = raw
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(',').map(|(_, data)| data))
        .unwrap_or(raw);
    let image = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid("image_base64", "not valid base64", raw))?;
    if !is_jpeg(&image) {
        return Err(invalid("image_base64", "not a JPEG image", raw));
    }
    Ok(image)
}

#[derive(Serialize)]
pub struct PictureSet {
    picture_id: String,
}

pub async fn set_group_picture(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<PictureBody>,
) -> Result<Success<PictureSet>, ApiError> {
    let jpeg = jpeg_of(&body)?;
    let session = connected_session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let picture_id = Pictures { session: &session }.set_group(&jid, jpeg).await?;
    Ok(Success::ok(PictureSet { picture_id }))
}

#[derive(Serialize)]
pub struct PictureRemoved {
    jid: String,
}

pub async fn remove_group_picture(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<PictureRemoved>, ApiError> {
    let session = connected_session(&state, &caller, query.device_id).await?;
    Pictures { session: &session }.remove_group(&jid).await?;
    Ok(Success::ok(PictureRemoved { jid: jid.jid() }))
}

pub async fn set_own_picture(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<PictureBody>,
) -> Result<Success<PictureSet>, ApiError> {
    let jpeg = jpeg_of(&body)?;
    let session = connected_session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let picture_id = Pictures { session: &session }.set_own(jpeg).await?;
    Ok(Success::ok(PictureSet { picture_id }))
}

pub async fn privacy(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Data<PrivacySettings>, ApiError> {
    let session = connected_session(&state, &caller, query.device_id).await?;
    Ok(Data(Privacy { session: &session }.get().await?))
}

/// `PATCH /privacy`: settings by WUTS name (`{"LastSeen":"contacts"}`), and `device_id`.
pub async fn update_privacy(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<Data<PrivacySettings>, ApiError> {
    let mut device_id = query.device_id;
    let mut changes = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in &body {
        if name == "device_id" {
            match serde_json::from_value::<DeviceId>(value.clone()) {
                Ok(id) => device_id = Some(id),
                Err(_) => problems.push(FieldError::new("device_id", "not a device id")),
            }
            continue;
        }
        let Some(text) = value.as_str() else {
            problems
                .push(FieldError::new(name.clone(), "must be a string").with_value(value.clone()));
            continue;
        };
        match PrivacyChange::parse(name, text) {
            Ok(change) => changes.push(change),
            Err(Some(values)) => problems.push(
                FieldError::new(name.clone(), format!("one of {}", values.join(", ")))
                    .with_value(text),
            ),
            Err(None) => problems.push(FieldError::new(
                name.clone(),
                "not a privacy setting (GroupAdd, LastSeen, Status, Profile, ReadReceipts, \
                 CallAdd, Online, Messages, Defense, Stickers)",
            )),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    if changes.is_empty() {
        return Err(ApiError::field("body", "give at least one privacy setting"));
    }
    let session = connected_session(&state, &caller, device_id).await?;
    Ok(Data(Privacy { session: &session }.set(&changes).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    full: Option<bool>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct CollectionView {
    name: &'static str,
    version: u64,
}

#[derive(Serialize)]
pub struct SyncView {
    scopes: Vec<&'static str>,
    full_sync: bool,
    /// Ours: each collection synced, with the version the device now holds.
    collections: Vec<CollectionView>,
}

pub async fn sync_app_state(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<SyncRequest>,
) -> Result<Success<SyncView>, ApiError> {
    let scopes = match &body.scopes {
        None => Scope::all(),
        Some(raw) if raw.is_empty() => {
            return Err(ApiError::field("scopes", "name at least one scope"));
        }
        Some(raw) => {
            let mut scopes = Vec::new();
            let mut problems = Vec::new();
            for (i, name) in raw.iter().enumerate() {
                match Scope::parse(name) {
                    Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                    Some(_) => {}
                    None => problems.push(
                        FieldError::new(
                            format!("scopes[{i}]"),
                            "one of contacts, chats, settings, pins, critical",
                        )
                        .with_value(name.clone()),
                    ),
                }
            }
            if !problems.is_empty() {
                return Err(ApiError::fields(problems));
            }
            scopes
        }
    };
    let full = body.full.unwrap_or(false);
    let session = connected_session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let versions = DeviceAppState { session: &session }
        .sync(&scopes, full)
        .await?;
    Ok(Success::ok(SyncView {
        scopes: scopes.iter().map(Scope::name).collect(),
        full_sync: full,
        collections: versions
            .into_iter()
            .map(|c| CollectionView {
                name: c.name,
                version: c.version,
            })
            .collect(),
    }))
}
