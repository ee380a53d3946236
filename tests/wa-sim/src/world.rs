//! The simulated WhatsApp world: accounts (phone number, LID, names, keys), their linked
//! companion devices, block lists, and groups and communities.
//!
//! One mutex guards it all; every critical section is short and never held across an await.
//! Lookups are by map key, so no stanza costs time proportional to the world's size.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;

/// Something to deliver to a live connection.
#[derive(Debug)]
pub enum Outbound {
    Node(Node),
    /// Send this `stream:error` node, then close the connection.
    StreamError(Node),
    /// Close without a word (a dropped connection).
    Drop,
}

/// A live connection, as the rest of the server reaches it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
}

impl ConnHandle {
    /// Queues something for the connection; a connection that cannot keep up is dropped.
    pub fn send(&self, outbound: Outbound) -> bool {
        self.tx.try_send(outbound).is_ok()
    }
}

/// A companion device linked to an account (what WhatsApp Web is to a phone).
#[derive(Debug, Clone)]
pub struct Companion {
    pub device: u16,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub registration_id: u32,
    pub key_index: u32,
    pub platform: String,
    /// One-time pre-keys uploaded by the companion, by id.
    pub prekeys: BTreeMap<u32, Vec<u8>>,
    /// The signed pre-key: id, public key, signature.
    pub signed_prekey: Option<(u32, Vec<u8>, Vec<u8>)>,
    /// The companion's ADVSignedDeviceIdentity, as it signed it at pairing.
    pub signed_identity: Vec<u8>,
    /// The companion was told the account's device list since it was linked.
    pub devices_announced: bool,
    /// The phone sent the companion its app-state keys (see [`crate::key_share`]).
    pub app_state_keys_shared: bool,
}

/// A WhatsApp account: the phone and everything it owns.
pub struct Account {
    pub phone: String,
    pub lid: String,
    pub push_name: Option<String>,
    pub business_name: Option<String>,
    pub status: Option<String>,
    /// When the about text was set (seconds since the epoch).
    pub status_time: u64,
    /// A business account's profile (an account with a business name is a business account).
    pub business_profile: Option<crate::api::BusinessProfile>,
    /// The account's identity key: signs device identities (ADV) and is the phone's Signal
    /// identity.
    pub identity: KeyPair,
    pub raw_id: u32,
    pub companions: BTreeMap<u16, Companion>,
    pub next_device: u16,
    pub next_key_index: u32,
    /// Blocked users, as the JIDs WhatsApp stores (LID JIDs), in the order they were blocked.
    pub blocklist: Vec<String>,
    pub blocklist_dhash: String,
    /// Only admins the account knows may add it to groups (its privacy setting).
    pub restrict_group_add: bool,
}

impl Account {
    pub fn jid(&self) -> String {
        format!("{}@s.whatsapp.net", self.phone)
    }

    pub fn lid_jid(&self) -> String {
        format!("{}@lid", self.lid)
    }
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Member,
    Admin,
    /// The creator: an admin nobody can demote.
    SuperAdmin,
}

impl Role {
    pub fn is_admin(self) -> bool {
        self != Role::Member
    }
}

/// A group member: an account, by phone number.
#[derive(Debug, Clone)]
pub struct Member {
    pub phone: String,
    pub role: Role,
}

/// A group, a community (parent group) or a community's sub-group. Groups address members by
/// LID (`addressing_mode="lid"`), as WhatsApp's groups do now.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub subject: String,
    pub subject_time: u64,
    /// Description: (id, body).
    pub description: Option<(String, String)>,
    pub creator: String,
    pub creation: u64,
    pub members: Vec<Member>,
    pub announce: bool,
    pub locked: bool,
    pub join_approval: bool,
    /// Every member may add members (`all_member_add`), not only admins.
    pub all_member_add: bool,
    /// A community: a parent group whose members live in its linked groups.
    pub is_parent: bool,
    /// The community this group is linked to.
    pub parent: Option<String>,
    /// The community's announcement group (created with it, never unlinked).
    pub default_sub_group: bool,
    /// Linked groups of a community, in link order.
    pub linked: Vec<String>,
    pub deactivated: bool,
    /// The code of the group's invite link (`https://chat.whatsapp.com/<code>`).
    pub invite_code: String,
    /// Accounts that asked to join and wait for an admin's approval.
    pub requests: Vec<JoinRequest>,
    /// Invite-link codes revoked by a reset: a join or a preview with one is answered 410.
    pub revoked_codes: Vec<String>,
    /// Disappearing messages: the timer in seconds, 0 when off.
    pub ephemeral: u32,
    /// A community whose members (not only admins) may add groups to it
    /// (`allow_non_admin_sub_group_creation`).
    pub allow_sub_group_creation: bool,
    /// Private invites issued when an add was refused by the invitee's privacy setting.
    pub add_invites: Vec<AddInvite>,
}

/// A private (v4) invite: an admin tried to add `phone`, whose privacy setting refused it, and
/// WhatsApp answered the admin with this code for a `GroupInviteMessage`.
#[derive(Debug, Clone)]
pub struct AddInvite {
    pub phone: String,
    pub code: String,
    /// Seconds since the epoch.
    pub expiration: u64,
    /// The admin who tried the add.
    pub admin: String,
}

/// A request to join a group that needs an admin's approval.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub phone: String,
    /// How the request came (`invite_link`, `non_admin_add`, `linked_group_join`).
    pub method: String,
    pub time: u64,
}

impl Group {
    pub fn jid(&self) -> String {
        format!("{}@g.us", self.id)
    }

    pub fn member(&self, phone: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.phone == phone)
    }

    pub fn is_admin(&self, phone: &str) -> bool {
        self.member(phone).is_some_and(|m| m.role.is_admin())
    }
}

/// A companion waiting for a phone to approve it (QR or pairing code).
#[derive(Debug, Clone)]
pub struct PendingPairing {
    pub conn: ConnHandle,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub registration_id: u32,
    pub platform: String,
}

/// A companion that asked to be linked by code (`companion_hello`), waiting for the phone.
pub struct PendingCode {
    pub pairing: PendingPairing,
    /// The pairing ref the server answered the companion with.
    pub pairing_ref: String,
    /// The companion's ephemeral public key, encrypted with the code (salt, iv, ciphertext).
    pub wrapped_companion_ephemeral: Vec<u8>,
    /// Once the phone entered the code: its ephemeral key pair, the companion's ephemeral public
    /// key, and where to hand the ADV secret when the companion finishes.
    pub primary: Option<PrimaryHello>,
}

pub struct PrimaryHello {
    pub ephemeral: KeyPair,
    pub companion_ephemeral: [u8; 32],
    pub finished: Option<tokio::sync::oneshot::Sender<Result<[u8; 32], String>>>,
}

/// A pair-success the server sent and is waiting to see signed.
#[derive(Debug, Clone)]
pub struct AwaitingSign {
    pub phone: String,
    pub companion: Companion,
    pub done: Option<std::sync::Arc<tokio::sync::Notify>>,
}

#[derive(Default)]
pub struct WorldState {
    pub accounts: HashMap<String, Account>,
    /// LID -> phone number.
    pub lids: HashMap<String, String>,
    /// Pairing refs offered to companions (the QR codes), by ref.
    pub pending_qr: HashMap<String, PendingPairing>,
    /// Companions waiting for a pairing code to be entered, by the phone number they named.
    pub pending_codes: HashMap<String, PendingCode>,
    /// pair-success IQ ids awaiting the companion's signature.
    pub awaiting_sign: HashMap<String, AwaitingSign>,
    /// Live companion connections, by (phone, device).
    pub sessions: HashMap<(String, u16), ConnHandle>,
    pub next_lid: u64,
    /// Groups and communities, by the user part of their JID (`120363...`).
    pub groups: HashMap<String, Group>,
    pub next_group: u64,
    /// Profile pictures of accounts (by phone) and groups (by group id).
    pub pictures: HashMap<String, crate::picture::Picture>,
    pub next_picture: u64,
    /// Privacy settings accounts changed from WhatsApp's defaults: phone -> category -> value.
    pub privacy: HashMap<String, BTreeMap<String, String>>,
    /// Accounts under a reach-out time-lock: phone -> when it ends (unix seconds).
    pub reachout_locks: HashMap<String, u64>,
    /// Each account's app state (its phone's address book among it), by phone.
    pub app_state: HashMap<String, crate::appstate::AccountAppState>,
}

impl WorldState {
    pub fn account(&self, phone: &str) -> Option<&Account> {
        self.accounts.get(phone)
    }

    pub fn account_mut(&mut self, phone: &str) -> Option<&mut Account> {
        self.accounts.get_mut(phone)
    }

    /// The phone number of a user JID or bare user part, whether PN or LID.
    pub fn phone_of(&self, user: &str, server: &str) -> Option<String> {
        match server {
            "lid" => self.lids.get(user).cloned(),
            _ => self.accounts.contains_key(user).then(|| user.to_owned()),
        }
    }

    pub fn allocate_lid(&mut self) -> String {
        loop {
            self.next_lid += 1;
            let lid = format!("{}", 100_000_000_000_000u64 + self.next_lid * 7919);
            if !self.lids.contains_key(&lid) {
                return lid;
            }
        }
    }

    /// A new group id, in the shape WhatsApp gives them (`120363` and twelve more digits).
    pub fn allocate_group_id(&mut self) -> String {
        self.next_group += 1;
        format!("120363{:012}", 100_000_000 + self.next_group * 7_919)
    }

    /// The JIDs of the live groups an account is in, sorted.
    pub fn groups_of(&self, phone: &str) -> Vec<String> {
        let mut jids: Vec<String> = self
            .groups
            .values()
            .filter(|g| !g.deactivated && g.member(phone).is_some())
            .map(Group::jid)
            .collect();
        jids.sort();
        jids
    }

    /// Tells the account's live companions (but `except`) that its device list changed.
    pub fn announce_devices(&self, phone: &str, except: Option<u16>, id: &str) {
        let Some(account) = self.account(phone) else {
            return;
        };
        let notification = crate::session::own_account_sync(account, id);
        for ((p, device), handle) in &self.sessions {
            if p == phone && Some(*device) != except {
                handle.send(Outbound::Node(notification.clone()));
            }
        }
    }

    /// Live connections of an account's companions.
    pub fn companion_sessions(&self, phone: &str) -> Vec<ConnHandle> {
        self.sessions
            .iter()
            .filter(|((p, _), _)| p == phone)
            .map(|(_, handle)| handle.clone())
            .collect()
    }
}

/// The world, shared by every connection and the control API.
#[derive(Default)]
pub struct World {
    state: Mutex<WorldState>,
}

impl World {
    pub fn lock(&self) -> MutexGuard<'_, WorldState> {
        // A panic while holding the lock leaves the state as it was at the panic; serving it is
        // better than taking every connection down.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
