//! Profile pictures of accounts and groups (`w:profile:picture`), and the control API's way to
//! give an account one (as its phone would).
//!
//! What WhatsApp answers, and where that is read:
//!
//! - A get is `<iq xmlns="w:profile:picture" type="get" to="s.whatsapp.net" target=JID>` with
//!   `<picture type="preview"|"image" query="url" [id=KNOWN]>`; the target is a user (PN or LID)
//!   or a group. With a picture: `<picture id type url direct_path/>`. When `id` names the
//!   picture the target still has, the answer says it is unchanged: `<picture id type
//!   status="304"/>` without a URL. whatsmeow `user.go` `GetProfilePictureInfo` (`ExistingID`;
//!   `status == 304` reads as "not changed"; `ErrIQNotFound` is `ErrProfilePictureNotSet`,
//!   `ErrIQNotAuthorized` is `ErrProfilePictureUnauthorized`); whatsapp-rust
//!   `wacore/src/iq/contacts.rs` `ProfilePictureSpec` (a `<picture id>` with no `url` is a cache
//!   hit; 404 and 401 are "no picture"); Baileys `chats.js` `profilePictureUrl` (reads `url`).
//! - No picture: the IQ error 404 `item-not-found`. A picture the requester may not see (the
//!   target's `profile` privacy is `none`, or `contacts` and the requester is not in the
//!   target's address book), or a group the requester is not in: 401 `not-authorized`.
//! - A set is `<iq type="set" to="s.whatsapp.net" [target=GROUP]><picture type="image">JPEG
//!   </picture></iq>`, answered `<picture id=NEW/>`; an IQ with no `<picture>` removes the
//!   picture, answered empty. whatsapp-rust `wacore/src/iq/contacts.rs` `SetProfilePictureSpec`
//!   (`WAWebSendProfilePictureJob`), `features/groups.rs` `set_profile_picture` /
//!   `remove_profile_picture` (which name the group in `to`; both are accepted),
//!   `features/profile.rs`; whatsmeow `group.go` `SetGroupPhoto` (target = group, empty
//!   content removes); Baileys `chats.js` `updateProfilePicture` / `removeProfilePicture`.
//!   A group's picture is changed by its admins, or by any member of an unlocked group (as its
//!   subject is); otherwise 403. Not a JPEG: 400.
//!
//! Chosen by wa-sim: ids are increasing decimal numbers (WhatsApp's are too, opaque to
//! clients); URLs point at `pps.whatsapp.net` paths that carry the id and are not served.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::control::{ControlError, digits};
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::Sim;
use crate::stanza::{attr, bytes, child, split_jid};
use crate::world::WorldState;

/// A stored picture: its id and the image as it was uploaded.
#[derive(Debug, Clone)]
pub struct Picture {
    pub id: String,
    pub image: Vec<u8>,
}

/// What the control API shows of a picture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PictureView {
    pub jid: String,
    pub id: String,
    /// Hex SHA-256 of the stored image.
    pub sha256: String,
    pub size: usize,
}

/// `POST /accounts/{phone}/picture`: the phone sets the account's picture (a small JPEG made
/// up by wa-sim when no image is given).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetPicture {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_base64: Option<String>,
}

/// Whether the bytes are a JPEG (SOI marker, then a marker segment).
pub fn is_jpeg(image: &[u8]) -> bool {
    image.len() > 3 && image[0] == 0xFF && image[1] == 0xD8 && image[2] == 0xFF
}

/// The key a target is stored under: the phone of a user (PN or LID), the id of a group.
fn target_key(world: &WorldState, jid: &str) -> Option<(String, bool)> {
    let (user, server) = split_jid(jid);
    match server.as_str() {
        "g.us" => world.groups.contains_key(&user).then_some((user, true)),
        _ => world.phone_of(&user, &server).map(|phone| (phone, false)),
    }
}

fn store(world: &mut WorldState, key: &str, image: Vec<u8>) -> String {
    world.next_picture += 1;
    let id = format!("{}", 1_700_000_000 + world.next_picture);
    world.pictures.insert(
        key.to_owned(),
        Picture {
            id: id.clone(),
            image,
        },
    );
    id
}

pub fn answer(session: &mut Session, iq: &Node, kind: &str) -> Answer {
    let Some((phone, _)) = session.login.clone() else {
        return Answer::Error(401);
    };
    // whatsapp-rust names a group in `to`; the others in `target`.
    let to = attr(iq, "to").filter(|to| to.ends_with("@g.us"));
    let target = attr(iq, "target").or(to);
    let mut world = session.sim.world.lock();
    match kind {
        "get" => get(&world, &phone, target.as_deref(), child(iq, "picture")),
        "set" => set(&mut world, &phone, target.as_deref(), child(iq, "picture")),
        _ => Answer::Error(400),
    }
}

fn get(world: &WorldState, phone: &str, target: Option<&str>, picture: Option<&Node>) -> Answer {
    let (Some(target), Some(request)) = (target, picture) else {
        return Answer::Error(400);
    };
    let Some((key, is_group)) = target_key(world, target) else {
        return Answer::Error(404);
    };
    if is_group {
        let visible = world
            .groups
            .get(&key)
            .is_some_and(|g| !g.deactivated && g.member(phone).is_some());
        if !visible {
            return Answer::Error(401);
        }
    } else if key != phone && !crate::privacy::may_see_picture(world, &key, phone) {
        return Answer::Error(401);
    }
    let Some(stored) = world.pictures.get(&key) else {
        return Answer::Error(404);
    };
    let kind = match attr(request, "type").as_deref() {
        Some("preview") => "preview",
        _ => "image",
    };
    let mut node = NodeBuilder::new("picture")
        .attr("id", stored.id.clone())
        .attr("type", kind);
    if attr(request, "id").as_deref() == Some(stored.id.as_str()) {
        return Answer::Result(vec![node.attr("status", "304").build()]);
    }
    // Previews and full images live at different paths, as WhatsApp's do.
    let (segment, size) = match kind {
        "preview" => ("t61.24694-24", "s96x96"),
        _ => ("t61.24694-24", "s640x640"),
    };
    let digest = hex(&Sha256::digest(&stored.image)[..8]);
    let direct_path = format!(
        "/v/{segment}/{}_{digest}_n.jpg?stp=dst-jpg_{size}&ccb=11-4&oh=01_{digest}&oe=0",
        stored.id
    );
    node = node
        .attr(
            "url",
            format!("https://pps.whatsapp.net{direct_path}&_nc_sid=wa-sim"),
        )
        .attr("direct_path", direct_path);
    Answer::Result(vec![node.build()])
}

fn set(
    world: &mut WorldState,
    phone: &str,
    target: Option<&str>,
    picture: Option<&Node>,
) -> Answer {
    let key = match target {
        None => phone.to_owned(),
        Some(target) => {
            let Some((key, is_group)) = target_key(world, target) else {
                return Answer::Error(404);
            };
            if !is_group {
                // Only one's own picture, or a group's, can be set.
                if key != phone {
                    return Answer::Error(403);
                }
            } else {
                let Some(group) = world.groups.get(&key) else {
                    return Answer::Error(404);
                };
                if group.deactivated {
                    return Answer::Error(404);
                }
                let Some(member) = group.member(phone) else {
                    return Answer::Error(403);
                };
                if group.locked && !member.role.is_admin() {
                    return Answer::Error(403);
                }
            }
            key
        }
    };
    match picture {
        None => {
            world.pictures.remove(&key);
            Answer::Result(Vec::new())
        }
        Some(picture) => {
            let image = bytes(picture).map(<[u8]>::to_vec).unwrap_or_default();
            if !is_jpeg(&image) {
                return Answer::Error(400);
            }
            let id = store(world, &key, image);
            Answer::Result(vec![NodeBuilder::new("picture").attr("id", id).build()])
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tiny valid JPEG (SOI, an APP0 segment, EOI), with a varying comment so that each one made
/// up differs.
pub fn made_up_jpeg(seed: u64) -> Vec<u8> {
    let mut image = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xFE, 0x00, 0x0A,
    ];
    image.extend_from_slice(&seed.to_be_bytes());
    image.extend_from_slice(&[0xFF, 0xD9]);
    image
}

/// `POST /accounts/{phone}/picture`.
pub async fn control_set(
    State(sim): State<Arc<Sim>>,
    Path(phone): Path<String>,
    body: Option<axum::Json<SetPicture>>,
) -> Result<axum::Json<PictureView>, ControlError> {
    let phone = digits(&phone);
    let image = match body.and_then(|b| b.0.image_base64) {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| ControlError(StatusCode::BAD_REQUEST, format!("image_base64: {e}")))?,
        None => made_up_jpeg(rand::random()),
    };
    if !is_jpeg(&image) {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            "image_base64: not a JPEG".to_owned(),
        ));
    }
    let mut world = sim.world.lock();
    let jid = world
        .account(&phone)
        .map(crate::world::Account::jid)
        .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, "no such account".to_owned()))?;
    store(&mut world, &phone, image);
    view(&world, &jid).map(axum::Json)
}

/// `DELETE /accounts/{phone}/picture`.
pub async fn control_delete(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> StatusCode {
    let phone = digits(&phone);
    match sim.world.lock().pictures.remove(&phone) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

/// `GET /pictures/{jid}`: the picture an account (PN or LID JID) or a group has now.
pub async fn control_get(
    State(sim): State<Arc<Sim>>,
    Path(jid): Path<String>,
) -> Result<axum::Json<PictureView>, ControlError> {
    let world = sim.world.lock();
    view(&world, &jid).map(axum::Json)
}

fn view(world: &WorldState, jid: &str) -> Result<PictureView, ControlError> {
    let not_found = || ControlError(StatusCode::NOT_FOUND, "no picture".to_owned());
    let (key, _) = target_key(world, jid).ok_or_else(not_found)?;
    let stored = world.pictures.get(&key).ok_or_else(not_found)?;
    Ok(PictureView {
        jid: jid.to_owned(),
        id: stored.id.clone(),
        sha256: hex(&Sha256::digest(&stored.image)),
        size: stored.image.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_pictures_are_jpegs_and_differ() {
        assert!(is_jpeg(&made_up_jpeg(1)));
        assert_ne!(made_up_jpeg(1), made_up_jpeg(2));
        assert!(!is_jpeg(b"\x89PNG\r\n"));
    }
}
