//! Profile pictures: reading a contact's or a group's (with WhatsApp's "unchanged" answer when
//! the caller already holds the current one), setting and removing a group's, setting the
//! account's own.
//!
//! The read is sent as its own IQ (whatsapp-rust's `get_profile_picture` reads "unchanged" and
//! "no picture" alike), answered `<picture id type url direct_path/>`, `<picture id
//! status="304"/>` when `id` named the current picture (whatsmeow `user.go`
//! `GetProfilePictureInfo`), or the IQ errors 404 (none) and 401 (not visible to this account).

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent, Server};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::error::{Error, GroupAccess, group_failure};
use crate::domain::{ContactId, GroupJid};
use crate::session::whatsapp::call;
use crate::session::{DeviceSession, SessionError};

/// Whose picture.
#[derive(Debug, Clone)]
pub enum PictureOf {
    Contact(ContactId),
    Group(GroupJid),
}

impl PictureOf {
    pub fn jid(&self) -> String {
        match self {
            PictureOf::Contact(contact) => contact.jid(),
            PictureOf::Group(group) => group.jid(),
        }
    }

    fn to_wa(&self) -> Jid {
        match self {
            PictureOf::Contact(contact) => contact.to_wa(),
            PictureOf::Group(group) => group.to_wa(),
        }
    }
}

/// A picture as WhatsApp answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PictureInfo {
    Current {
        id: String,
        url: String,
        kind: String,
        direct_path: Option<String>,
    },
    /// The id the caller holds is still the current picture.
    Unchanged { id: String },
}

/// The pictures one device reads and sets.
pub struct Pictures<'a> {
    pub session: &'a DeviceSession,
}

impl Pictures<'_> {
    /// The picture of a contact or a group; `NotFound` when there is none (or the device may
    /// not see it).
    pub async fn get(
        &self,
        of: &PictureOf,
        preview: bool,
        existing_id: Option<&str>,
    ) -> Result<PictureInfo, Error> {
        let mut picture = NodeBuilder::new("picture")
            .attr("type", if preview { "preview" } else { "image" })
            .attr("query", "url");
        if let Some(id) = existing_id {
            picture = picture.attr("id", id);
        }
        let timeout = self.session.timeout();
        let query = InfoQuery {
            namespace: "w:profile:picture",
            query_type: InfoQueryType::Get,
            to: Jid::new("", Server::Pn),
            target: Some(of.to_wa()),
            id: None,
            content: Some(NodeContent::Nodes(vec![picture.build()])),
            timeout: Some(timeout),
        };
        let answer = call(
            "profile_picture",
            timeout,
            self.session.client().send_iq(query),
        )
        .await
        .map_err(|err| match err {
            SessionError::WhatsApp {
                code: 404 | 401, ..
            } => Error::NotFound("no profile picture (or not visible to this account)".to_owned()),
            other => Error::Session(other),
        })?;
        let answer = answer.get();
        let Some(node) = answer.get_optional_child("picture") else {
            // Nothing to say about a picture the caller named: it has not changed.
            return match existing_id {
                Some(id) => Ok(PictureInfo::Unchanged { id: id.to_owned() }),
                None => Err(Error::NotFound("no profile picture".to_owned())),
            };
        };
        let text = |name: &str| node.get_attr(name).map(|v| v.as_str().into_owned());
        let id = text("id");
        match (text("status").as_deref(), text("url"), id) {
            (Some("304"), _, id) | (_, None, id) if existing_id.is_some() => {
                Ok(PictureInfo::Unchanged {
                    id: id.or(existing_id.map(str::to_owned)).unwrap_or_default(),
                })
            }
            (_, Some(url), Some(id)) => Ok(PictureInfo::Current {
                id,
                url,
                kind: text("type")
                    .unwrap_or_else(|| if preview { "preview" } else { "image" }.to_owned()),
                direct_path: text("direct_path"),
            }),
            _ => Err(Error::NotFound("no profile picture".to_owned())),
        }
    }

    /// Sets a group's picture (a JPEG); answers the new picture id.
    pub async fn set_group(&self, group: &GroupJid, jpeg: Vec<u8>) -> Result<String, Error> {
        let done = call(
            "group_picture_set",
            self.session.timeout(),
            self.session
                .client()
                .groups()
                .set_profile_picture(group.to_wa(), jpeg),
        )
        .await
        .map_err(|e| group_failure(e, GroupAccess::Change))?;
        Ok(done.id)
    }

    /// Removes a group's picture.
    pub async fn remove_group(&self, group: &GroupJid) -> Result<(), Error> {
        call(
            "group_picture_remove",
            self.session.timeout(),
            self.session
                .client()
                .groups()
                .remove_profile_picture(group.to_wa()),
        )
        .await
        .map_err(|e| group_failure(e, GroupAccess::Change))?;
        Ok(())
    }

    /// Sets the account's own picture (a JPEG); answers the new picture id.
    pub async fn set_own(&self, jpeg: Vec<u8>) -> Result<String, Error> {
        let done = call(
            "own_picture_set",
            self.session.timeout(),
            self.session.client().profile().set_profile_picture(jpeg),
        )
        .await?;
        Ok(done.id)
    }
}

/// Whether the bytes are a JPEG: the SOI marker followed by another marker.
pub fn is_jpeg(image: &[u8]) -> bool {
    image.len() > 3 && image[0] == 0xFF && image[1] == 0xD8 && image[2] == 0xFF
}
