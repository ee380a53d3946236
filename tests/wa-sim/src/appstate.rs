//! App state (`w:sync:app:state`): each account's collections of encrypted mutations, as its
//! phone writes them, and the address book the control API fills (a contact saved on the phone
//! becomes a `contact` mutation in `critical_unblock_low`).
//!
//! What a companion reads, and where:
//!
//! - The sync request is `<iq xmlns="w:sync:app:state" type="set"><sync><collection name
//!   version [return_snapshot]/>…</sync></iq>`, one `<collection>` per name. The answer has one
//!   `<collection name version>` per collection asked: at the version the client has, nothing
//!   more; behind it, `<patches><patch>SyncdPatch</patch>…</patches>` from the client's version
//!   up (with `has_more_patches="false"`). whatsapp-rust `client/app_state.rs`
//!   `sync_collections_batched` and `wacore-appstate` `patch_decode.rs` `parse_patch_lists`;
//!   whatsmeow `appstate.go` `FetchAppState` / `appstate/decode.go` `ParsePatchList`; Baileys
//!   `chats.js` `resyncAppState` / `Utils/chat-utils.js` `extractSyncdPatches`.
//! - A patch is a `SyncdPatch` with its `version`, the mutations, the `keyId` of the app-state
//!   sync key the phone shared ([`crate::key_share`]), `snapshotMac` (HMAC-SHA256 over the
//!   collection's LTHash after the patch, the version and the name) and `patchMac` (over the
//!   snapshot MAC, each value MAC, the version and the name), under the keys HKDF expands from
//!   the sync key ("WhatsApp Mutation Keys"). A mutation's record is the index HMAC, the value
//!   AES-256-CBC-encrypted with its IV and a value MAC (HMAC-SHA512 over operation, key id and
//!   data, cut to 32 bytes), and the key id. whatsmeow `appstate/encode.go`, `hash.go`,
//!   `keys.go`, `lthash`; `wacore-appstate` `encode.rs` `encode_record`, `hash.rs`
//!   `generate_snapshot_mac` / `generate_patch_mac`, `keys.rs` (which wa-sim uses as the
//!   phone's side of the same construction); Baileys `Utils/chat-utils.js` `encodeSyncdPatch`,
//!   `decodeSyncdPatch` (which check the same MACs independently).
//! - The account's own push name is index `["setting_pushName"]` with
//!   `SyncActionValue.pushNameSetting.name`, in `critical_block`, set when the account is made:
//!   whatsmeow `appstate/keys.go` `IndexSettingPushName`; whatsapp-rust `client/app_state.rs`
//!   (`setting_pushName`, which persists the name and sends presence); Baileys
//!   `Utils/chat-utils.js` `processSyncAction` (`pushNameSetting`, a `creds.update` of
//!   `me.name`).
//! - A contact is index `["contact", PN_JID]` with `SyncActionValue.contactAction`
//!   (`fullName`, `firstName`, `lidJid`, `saveOnPrimaryAddressbook`): whatsmeow
//!   `appstate/keys.go` `IndexContact`; whatsapp-rust `wacore-appstate` `schemas.rs`
//!   `contact`; Baileys `Utils/chat-utils.js` `processSyncAction` (`contactAction`).
//!
//! Simplified: no snapshots (a client at version 0 is sent every patch from the first; a
//! snapshot would be an external blob on the media servers), collections other than
//! `critical_block` and `critical_unblock_low` stay empty, and WhatsApp's `server_sync`
//! notification of a new patch is not sent (companions learn of a contact when they sync).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use wacore::appstate::hash::{HashState, generate_patch_mac};
use wacore::appstate::{encode_record, expand_app_state_keys};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::{Message, MessageField};
use waproto::whatsapp as wa;

use crate::control::{ControlError, digits};
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::{Sim, now_secs};
use crate::stanza::{attr, child};
use crate::world::WorldState;

/// The collection address-book contacts live in.
pub const CONTACTS_COLLECTION: &str = "critical_unblock_low";
/// The collection of the settings a companion needs before it is usable, the push name among
/// them.
pub const SETTINGS_COLLECTION: &str = "critical_block";

/// The app-state sync key an account's phone shares with its companions.
#[derive(Debug, Clone)]
pub struct SyncKey {
    pub id: Vec<u8>,
    pub data: [u8; 32],
    /// When it was made (milliseconds since the epoch).
    pub timestamp_ms: i64,
    pub raw_id: u32,
}

/// A contact in the phone's address book.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressBookEntry {
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// The contact's LID JID, when the phone knows it (it does for an account on WhatsApp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lid_jid: Option<String>,
}

/// `POST /accounts/{phone}/contacts`: the phone's user saves a contact.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddContact {
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Defaults to the LID of the account with that number, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lid_jid: Option<String>,
}

/// What `POST /accounts/{phone}/contacts` answers: the collection's new version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContactAdded {
    pub collection: String,
    pub version: u64,
    pub contact: AddressBookEntry,
}

/// One collection as the server keeps it: its version, the LTHash state, each index's value
/// MAC (to take it out when the index is set again), and the encoded patches in order.
#[derive(Default)]
struct Collection {
    hash: HashState,
    value_macs: HashMap<Vec<u8>, Vec<u8>>,
    patches: Vec<Vec<u8>>,
}

/// One account's app state.
#[derive(Default)]
pub struct AccountAppState {
    key: Option<SyncKey>,
    collections: HashMap<String, Collection>,
    /// The address book, by the contact's phone number.
    pub contacts: BTreeMap<String, AddressBookEntry>,
}

impl AccountAppState {
    /// The account's sync key, made the first time it is needed.
    pub fn key(&mut self) -> SyncKey {
        self.key
            .get_or_insert_with(|| SyncKey {
                id: rand::random::<[u8; 6]>().to_vec(),
                data: rand::random(),
                timestamp_ms: i64::try_from(now_secs())
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000),
                raw_id: rand::random(),
            })
            .clone()
    }

    /// Appends one patch of SET mutations `(index JSON, value)` to a collection; answers the
    /// new version.
    fn append(&mut self, name: &str, entries: &[(Vec<u8>, wa::SyncActionValue)]) -> u64 {
        let key = self.key();
        let keys = expand_app_state_keys(&key.data);
        let collection = self.collections.entry(name.to_owned()).or_default();
        let mutations: Vec<wa::SyncdMutation> = entries
            .iter()
            .map(|(index, value)| {
                let iv: [u8; 16] = rand::random();
                let (mutation, _) = encode_record(
                    wa::syncd_mutation::SyncdOperation::SET,
                    index,
                    value,
                    &keys,
                    &key.id,
                    &iv,
                    2,
                );
                mutation
            })
            .collect();
        let previous = &collection.value_macs;
        let _ = collection.hash.update_hash(&mutations, |index_mac, _| {
            Ok(previous.get(index_mac).cloned())
        });
        for mutation in &mutations {
            if let (Some(index_mac), Some(blob)) = (
                mutation.record.index.blob.as_ref(),
                mutation.record.value.blob.as_ref(),
            ) && blob.len() >= 32
            {
                collection
                    .value_macs
                    .insert(index_mac.clone(), blob[blob.len() - 32..].to_vec());
            }
        }
        collection.hash.version += 1;
        let version = collection.hash.version;
        let snapshot_mac = collection
            .hash
            .generate_snapshot_mac(name, &keys.snapshot_mac);
        let mut patch = wa::SyncdPatch {
            version: MessageField::some(wa::SyncdVersion {
                version: Some(version),
            }),
            mutations,
            snapshot_mac: Some(snapshot_mac),
            key_id: MessageField::some(wa::KeyId {
                id: Some(key.id.clone()),
            }),
            ..Default::default()
        };
        patch.patch_mac = Some(generate_patch_mac(&patch, name, &keys.patch_mac, version));
        collection.patches.push(patch.encode_to_vec());
        version
    }

    fn version(&self, name: &str) -> u64 {
        self.collections.get(name).map_or(0, |c| c.hash.version)
    }

    /// The patches after `version`.
    fn patches_after(&self, name: &str, version: u64) -> Vec<Vec<u8>> {
        let skip = usize::try_from(version).unwrap_or(usize::MAX);
        self.collections
            .get(name)
            .map(|c| c.patches.iter().skip(skip).cloned().collect())
            .unwrap_or_default()
    }
}

/// Whether `owner`'s address book holds `phone`.
pub fn has_contact(world: &WorldState, owner: &str, phone: &str) -> bool {
    world
        .app_state
        .get(owner)
        .is_some_and(|state| state.contacts.contains_key(phone))
}

/// Saves a contact in `owner`'s address book: a `contact` mutation in `critical_unblock_low`.
pub fn add_contact(world: &mut WorldState, owner: &str, entry: AddressBookEntry) -> u64 {
    let jid = format!("{}@s.whatsapp.net", entry.phone);
    let index = serde_json::json!(["contact", jid]).to_string().into_bytes();
    let value = wa::SyncActionValue {
        timestamp: Some(action_time()),
        contact_action: MessageField::some(wa::sync_action_value::ContactAction {
            full_name: entry.full_name.clone(),
            first_name: entry.first_name.clone(),
            lid_jid: entry.lid_jid.clone(),
            save_on_primary_addressbook: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let state = world.app_state.entry(owner.to_owned()).or_default();
    state.contacts.insert(entry.phone.clone(), entry);
    state.append(CONTACTS_COLLECTION, &[(index, value)])
}

/// When a mutation is made, as `SyncActionValue.timestamp` holds it (milliseconds).
fn action_time() -> i64 {
    i64::try_from(now_secs())
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}

/// Sets the account's own push name: a `setting_pushName` mutation in `critical_block`, where
/// every companion reads it at its first sync, and again after any restart that lost it.
pub fn set_push_name(world: &mut WorldState, owner: &str, name: &str) -> u64 {
    let index = serde_json::json!(["setting_pushName"])
        .to_string()
        .into_bytes();
    let value = wa::SyncActionValue {
        timestamp: Some(action_time()),
        push_name_setting: MessageField::some(wa::sync_action_value::PushNameSetting {
            name: Some(name.to_owned()),
        }),
        ..Default::default()
    };
    let state = world.app_state.entry(owner.to_owned()).or_default();
    state.append(SETTINGS_COLLECTION, &[(index, value)])
}

/// The `w:sync:app:state` IQ.
pub fn answer(session: &mut Session, iq: &Node) -> Answer {
    let Some((phone, _)) = session.login.clone() else {
        return Answer::Error(401);
    };
    let Some(sync) = child(iq, "sync") else {
        return Answer::Error(400);
    };
    let world = session.sim.world.lock();
    let state = world.app_state.get(&phone);
    let collections: Vec<Node> = sync
        .get_children_by_tag("collection")
        .map(|c| {
            let name = attr(c, "name").unwrap_or_default();
            let asked: u64 = attr(c, "version").and_then(|v| v.parse().ok()).unwrap_or(0);
            let current = state.map_or(0, |s| s.version(&name));
            let patches = state
                .filter(|_| asked < current)
                .map(|s| s.patches_after(&name, asked))
                .unwrap_or_default();
            let mut node = NodeBuilder::new("collection").attr("name", name);
            if patches.is_empty() {
                // Nothing newer: the client's version stands (a client ahead of the server,
                // which cannot happen here, keeps its own).
                return node.attr("version", asked.max(current).to_string()).build();
            }
            node = node
                .attr("version", current.to_string())
                .attr("has_more_patches", "false");
            node.children([NodeBuilder::new("patches")
                .children(
                    patches
                        .into_iter()
                        .map(|p| NodeBuilder::new("patch").bytes(p).build()),
                )
                .build()])
                .build()
        })
        .collect();
    Answer::Result(vec![NodeBuilder::new("sync").children(collections).build()])
}

/// `POST /accounts/{phone}/contacts`.
pub async fn control_add_contact(
    State(sim): State<Arc<Sim>>,
    Path(owner): Path<String>,
    axum::Json(request): axum::Json<AddContact>,
) -> Result<(StatusCode, axum::Json<ContactAdded>), ControlError> {
    let owner = digits(&owner);
    let phone = digits(&request.phone);
    if phone.len() < 7 {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            "phone must have digits".to_owned(),
        ));
    }
    let mut world = sim.world.lock();
    if world.account(&owner).is_none() {
        return Err(ControlError(
            StatusCode::NOT_FOUND,
            "no such account".to_owned(),
        ));
    }
    let lid_jid = request
        .lid_jid
        .or_else(|| world.account(&phone).map(crate::world::Account::lid_jid));
    let entry = AddressBookEntry {
        phone,
        full_name: request.full_name,
        first_name: request.first_name,
        lid_jid,
    };
    let version = add_contact(&mut world, &owner, entry.clone());
    Ok((
        StatusCode::CREATED,
        axum::Json(ContactAdded {
            collection: CONTACTS_COLLECTION.to_owned(),
            version,
            contact: entry,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore::appstate::decode::decode_record;

    #[test]
    fn patches_decode_with_the_shared_key_and_chain_their_macs() {
        let mut world = WorldState::default();
        for (i, name) in ["Ana", "Bia"].into_iter().enumerate() {
            add_contact(
                &mut world,
                "5511900000001",
                AddressBookEntry {
                    phone: format!("551190000001{i}"),
                    full_name: Some(format!("{name} Silva")),
                    first_name: Some(name.to_owned()),
                    lid_jid: None,
                },
            );
        }
        let state = world.app_state.get_mut("5511900000001").expect("state");
        let key = state.key();
        let keys = expand_app_state_keys(&key.data);
        let patches = state.patches_after(CONTACTS_COLLECTION, 0);
        assert_eq!(patches.len(), 2);
        let mut hash = HashState::default();
        for (n, raw) in patches.iter().enumerate() {
            let patch = wa::SyncdPatch::decode_from_slice(raw).expect("patch");
            let version = patch.version.version.expect("version");
            assert_eq!(version, n as u64 + 1);
            let mutation = &patch.mutations[0];
            let (decoded, _) = decode_record(
                wa::syncd_mutation::SyncdOperation::SET,
                &mutation.record,
                &keys,
                &key.id,
                true,
            )
            .expect("decodes with the shared key");
            assert_eq!(decoded.index[0], "contact");
            let _ = hash.update_hash(&patch.mutations, |_, _| Ok(None));
            hash.version = version;
            assert_eq!(
                patch.snapshot_mac.as_deref(),
                Some(
                    hash.generate_snapshot_mac(CONTACTS_COLLECTION, &keys.snapshot_mac)
                        .as_slice()
                )
            );
            assert_eq!(
                patch.patch_mac.as_deref(),
                Some(
                    generate_patch_mac(&patch, CONTACTS_COLLECTION, &keys.patch_mac, version)
                        .as_slice()
                )
            );
        }
    }

    #[test]
    fn the_push_name_is_a_setting_in_critical_block() {
        let mut world = WorldState::default();
        let version = set_push_name(&mut world, "5511900000001", "Ana Silva");
        assert_eq!(version, 1);
        let state = world.app_state.get_mut("5511900000001").expect("state");
        let key = state.key();
        let keys = expand_app_state_keys(&key.data);
        assert!(state.patches_after(CONTACTS_COLLECTION, 0).is_empty());
        let patches = state.patches_after(SETTINGS_COLLECTION, 0);
        assert_eq!(patches.len(), 1);
        let patch = wa::SyncdPatch::decode_from_slice(&patches[0]).expect("patch");
        let (decoded, _) = decode_record(
            wa::syncd_mutation::SyncdOperation::SET,
            &patch.mutations[0].record,
            &keys,
            &key.id,
            true,
        )
        .expect("decodes with the shared key");
        assert_eq!(decoded.index, vec!["setting_pushName".to_owned()]);
        let name = decoded
            .action_value
            .as_ref()
            .and_then(|v| v.push_name_setting.as_option())
            .and_then(|p| p.name.clone());
        assert_eq!(name.as_deref(), Some("Ana Silva"));
    }
}
