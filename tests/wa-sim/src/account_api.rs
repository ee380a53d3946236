//! The control client's calls for the account pages: pictures, the phone's address book, the
//! reach-out time-lock, privacy settings.

use std::collections::BTreeMap;

pub use crate::appstate::{AddContact, AddressBookEntry, ContactAdded};
pub use crate::mex::{SetTimelock, TimelockView};
pub use crate::picture::{PictureView, SetPicture};

use crate::api::{ControlClient, ControlError};

impl ControlClient {
    /// The phone sets the account's profile picture (a made-up JPEG without `image_base64`).
    pub async fn set_picture(
        &self,
        phone: &str,
        picture: &SetPicture,
    ) -> Result<PictureView, ControlError> {
        self.call(
            self.http()
                .post(self.url(&format!("/accounts/{phone}/picture")))
                .json(picture),
        )
        .await
    }

    /// The picture an account (by PN or LID JID) or a group has now.
    pub async fn picture(&self, jid: &str) -> Result<PictureView, ControlError> {
        self.call(self.http().get(self.url(&format!("/pictures/{jid}"))))
            .await
    }

    /// The phone's user saves a contact: a `contact` mutation in the account's app state.
    pub async fn add_contact(
        &self,
        phone: &str,
        contact: &AddContact,
    ) -> Result<ContactAdded, ControlError> {
        self.call(
            self.http()
                .post(self.url(&format!("/accounts/{phone}/contacts")))
                .json(contact),
        )
        .await
    }

    /// Puts the account under a reach-out time-lock for `seconds` (0 lifts it).
    pub async fn set_reachout_timelock(
        &self,
        phone: &str,
        seconds: u64,
    ) -> Result<TimelockView, ControlError> {
        self.call(
            self.http()
                .post(self.url(&format!("/accounts/{phone}/reachout-timelock")))
                .json(&SetTimelock { seconds }),
        )
        .await
    }

    /// The account's privacy settings, every category.
    pub async fn privacy(&self, phone: &str) -> Result<BTreeMap<String, String>, ControlError> {
        self.call(
            self.http()
                .get(self.url(&format!("/accounts/{phone}/privacy"))),
        )
        .await
    }
}
