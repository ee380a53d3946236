//! The control API's JSON shapes, and a typed client for it (used by wa-sim's own tests and by
//! the gateway's tests and benchmarks).

use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::stats::StatsSnapshot;

/// `POST /accounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateAccount {
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A business account's profile, answered to `w:biz` queries. An account with a
    /// `business_name` and no profile has an empty one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_profile: Option<BusinessProfile>,
    /// The account's privacy setting lets only its contacts add it to groups: a group add
    /// answers 403 with an invite instead.
    #[serde(default)]
    pub restrict_group_add: bool,
}

/// What a business shows on its profile (`w:biz` `business_profile`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BusinessProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The business category's name (WhatsApp's category list, e.g. "Shopping & retail").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websites: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Answer of `POST /accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreatedAccount {
    pub phone: String,
    pub jid: String,
    pub lid: String,
    pub lid_jid: String,
}

/// A linked companion, in `GET /accounts/{phone}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompanionView {
    pub device: u16,
    pub jid: String,
    pub platform: String,
    pub key_index: u32,
    pub connected: bool,
}

/// An account's block list: blocked users' JIDs (LID JIDs) and the list's hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlocklistView {
    pub items: Vec<String>,
    pub dhash: String,
}

/// `GET /accounts/{phone}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    pub phone: String,
    pub jid: String,
    pub lid: String,
    pub lid_jid: String,
    pub push_name: Option<String>,
    pub business_name: Option<String>,
    pub companions: Vec<CompanionView>,
    pub blocklist: BlocklistView,
    /// Groups and communities the account is in.
    pub groups: Vec<String>,
}

/// `POST /accounts/{phone}/blocklist`: a change made on the phone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlocklistChange {
    /// `block` or `unblock`.
    pub action: String,
    /// The user, as a phone-number JID or a LID JID.
    pub jid: String,
}

/// `POST /accounts/{phone}/messages`: another account sends this account a message. Its
/// companions receive the stanza (carrying the sender's push name in `notify`, its LID in
/// `from` and its phone number in `sender_pn`); the content is opaque ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingMessage {
    pub from_phone: String,
}

/// `POST /pair/qr`: the phone scans this QR code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanQr {
    pub phone: String,
    pub qr: String,
}

/// `POST /pair/code`: the phone enters this pairing code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnterCode {
    pub phone: String,
    pub code: String,
}

/// A linked companion, as answered by the pairing routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Paired {
    pub phone: String,
    pub jid: String,
    pub lid: String,
    pub device: u16,
}

/// `POST /groups`: a group created by some account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateGroup {
    pub owner_phone: String,
    pub subject: String,
    #[serde(default)]
    pub participants: Vec<String>,
    #[serde(default)]
    pub community: bool,
}

/// A group member in `GET /groups/{jid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberView {
    pub phone: String,
    pub jid: String,
    pub lid_jid: String,
    pub admin: bool,
    pub super_admin: bool,
}

/// `GET /groups/{jid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupView {
    pub jid: String,
    pub subject: String,
    pub description: Option<String>,
    pub owner: String,
    pub parent: Option<String>,
    pub is_community: bool,
    pub is_announcement: bool,
    pub announce: bool,
    pub locked: bool,
    pub join_approval: bool,
    /// Every member may add members (`all_member_add`), not only admins (`admin_add`).
    pub all_member_add: bool,
    pub deactivated: bool,
    pub linked_groups: Vec<String>,
    /// The code of the group's invite link.
    pub invite_code: String,
    /// Phone numbers of the accounts waiting for an admin to approve their join request.
    pub pending_requests: Vec<String>,
    pub participants: Vec<MemberView>,
    /// The disappearing-message timer in seconds, 0 when off.
    #[serde(default)]
    pub ephemeral: u32,
    /// A community whose members (not only admins) may add groups to it.
    #[serde(default)]
    pub allow_sub_group_creation: bool,
    /// Phone numbers holding an unexpired private invite (issued when their privacy setting
    /// refused an add).
    #[serde(default)]
    pub invited: Vec<String>,
}

/// `POST /groups/{jid}/actions`: what another account does to the group on its phone.
///
/// `action` is one of `add`, `remove`, `promote`, `demote` (with `participants`), `subject`
/// (with `subject`), `description` (with `description`; none or empty deletes it),
/// `announcement`, `not_announcement`, `locked`, `unlocked`, `join_approval_on`,
/// `join_approval_off`, `reset_invite`, `join_link` (joins with the group's invite link),
/// `request_join` (asks to join), `approve`/`reject` (join requests, with `participants`),
/// `leave`, `link`/`unlink` (a community's sub-groups, with `groups`), `deactivate` (a
/// community).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupAction {
    pub actor_phone: String,
    pub action: String,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Group JIDs (link, unlink).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What an action did, per participant or group it named (an `error` code when it failed
/// for that one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupActionOutcome {
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub jid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The private invite of an add refused by the invitee's privacy setting
    /// (`<add_request code>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
    /// When that invite expires, in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_expiration: Option<u64>,
}

/// A typed client of the control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    http: reqwest::Client,
}

/// A control call that failed: the status and the server's message.
#[derive(Debug, thiserror::Error)]
#[error("wa-sim control API: {status}: {message}")]
pub struct ControlError {
    pub status: u16,
    pub message: String,
}

impl ControlClient {
    pub fn new(control_url: &str) -> Self {
        // Built with TLS support (as in the gateway's test builds), reqwest wants a process-wide
        // provider; this client only speaks plain HTTP to wa-sim.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: control_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ControlError> {
        let response = request.send().await.map_err(|e| ControlError {
            status: 0,
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| ControlError {
            status,
            message: e.to_string(),
        })?;
        if !(200..300).contains(&status) {
            return Err(ControlError {
                status,
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| ControlError {
            status,
            message: format!("unexpected answer: {e}"),
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create_account(
        &self,
        account: &CreateAccount,
    ) -> Result<CreatedAccount, ControlError> {
        self.call(self.http.post(self.url("/accounts")).json(account))
            .await
    }

    pub async fn account(&self, phone: &str) -> Result<AccountView, ControlError> {
        self.call(self.http.get(self.url(&format!("/accounts/{phone}"))))
            .await
    }

    pub async fn change_blocklist(
        &self,
        phone: &str,
        action: &str,
        jid: &str,
    ) -> Result<BlocklistView, ControlError> {
        let change = BlocklistChange {
            action: action.to_owned(),
            jid: jid.to_owned(),
        };
        self.call(
            self.http
                .post(self.url(&format!("/accounts/{phone}/blocklist")))
                .json(&change),
        )
        .await
    }

    pub async fn unlink(&self, phone: &str, device: u16) -> Result<(), ControlError> {
        self.call::<serde_json::Value>(
            self.http
                .delete(self.url(&format!("/accounts/{phone}/companions/{device}"))),
        )
        .await
        .map(|_| ())
    }

    pub async fn scan_qr(&self, phone: &str, qr: &str) -> Result<Paired, ControlError> {
        let scan = ScanQr {
            phone: phone.to_owned(),
            qr: qr.to_owned(),
        };
        self.call(self.http.post(self.url("/pair/qr")).json(&scan))
            .await
    }

    pub async fn enter_code(&self, phone: &str, code: &str) -> Result<Paired, ControlError> {
        let enter = EnterCode {
            phone: phone.to_owned(),
            code: code.to_owned(),
        };
        self.call(self.http.post(self.url("/pair/code")).json(&enter))
            .await
    }

    /// Another account sends `phone` a message (its companions see the sender's push name).
    pub async fn send_message(&self, phone: &str, from_phone: &str) -> Result<(), ControlError> {
        let message = IncomingMessage {
            from_phone: from_phone.to_owned(),
        };
        let _: serde_json::Value = self
            .call(
                self.http
                    .post(self.url(&format!("/accounts/{phone}/messages")))
                    .json(&message),
            )
            .await?;
        Ok(())
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn create_group(&self, group: &CreateGroup) -> Result<GroupView, ControlError> {
        self.call(self.http.post(self.url("/groups")).json(group))
            .await
    }

    /// Another account acts on a group from its phone.
    pub async fn group_action(
        &self,
        jid: &str,
        action: &GroupAction,
    ) -> Result<GroupActionOutcome, ControlError> {
        self.call(
            self.http
                .post(self.url(&format!("/groups/{jid}/actions")))
                .json(action),
        )
        .await
    }

    /// The account `phone` asks to join the group (as with its link in a group that approves
    /// members, or asking to join a community's group): the request waits for an admin, who is
    /// notified. The same as the `request_join` action.
    pub async fn request_join(
        &self,
        jid: &str,
        phone: &str,
    ) -> Result<GroupActionOutcome, ControlError> {
        let action = GroupAction {
            actor_phone: phone.to_owned(),
            action: "request_join".to_owned(),
            ..Default::default()
        };
        self.group_action(jid, &action).await
    }

    pub async fn group(&self, jid: &str) -> Result<GroupView, ControlError> {
        self.call(self.http.get(self.url(&format!("/groups/{jid}"))))
            .await
    }

    pub async fn stats(&self) -> Result<StatsSnapshot, ControlError> {
        self.call(self.http.get(self.url("/stats"))).await
    }

    pub async fn reset_stats(&self) -> Result<(), ControlError> {
        self.call::<serde_json::Value>(self.http.delete(self.url("/stats")))
            .await
            .map(|_| ())
    }

    pub async fn add_fault(&self, fault: &Fault) -> Result<(), ControlError> {
        self.call::<serde_json::Value>(self.http.post(self.url("/faults")).json(fault))
            .await
            .map(|_| ())
    }

    pub async fn clear_faults(&self) -> Result<(), ControlError> {
        self.call::<serde_json::Value>(self.http.delete(self.url("/faults")))
            .await
            .map(|_| ())
    }
}
