//! The phone's app-state key share. Once a newly linked companion has uploaded its pre-keys, the
//! primary phone sends it the account's app-state sync keys over Signal: a `Message` whose
//! `protocolMessage` is an `APP_STATE_SYNC_KEY_SHARE`, in a `pkmsg` from the account's own number
//! (device 0), built on the companion's pre-key bundle. Companions wait for it before their first
//! app-state sync, and accept it only from their own account.
//!
//! References: whatsapp-rust `client/node_io.rs` (`KEY_SHARE_GRACE_SECS`: "the auto-shared key
//! that the primary sends at pairing (the WA Web primary path)") and `message/receive.rs` (WA
//! Web's `isMeAccount(from)` gate on `app_state_sync_key_share`); whatsmeow `appstate.go`
//! `handleAppStateSyncKeyShare`; Baileys `messages-recv.js` (`APP_STATE_SYNC_KEY_SHARE`).

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore,
    KeyPair, PreKeyBundle, ProtocolAddress, PublicKey, SessionRecord, SessionStore, UsePQRatchet,
    message_encrypt, process_prekey_bundle,
};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::MessageField;
use waproto::whatsapp as wa;

use crate::world::{Account, Companion};

/// What the phone needs to encrypt to one companion, taken from the world under its lock.
pub struct Recipient {
    phone: String,
    device: u16,
    identity: KeyPair,
    registration_id: u32,
    companion_identity: [u8; 32],
    signed_prekey: (u32, Vec<u8>, Vec<u8>),
    prekey: Option<(u32, Vec<u8>)>,
    key: crate::appstate::SyncKey,
}

/// The companion's bundle, if it has uploaded one and has not had its share yet. Marks the share
/// sent and consumes the one-time pre-key it uses, as WhatsApp's key-bundle answer does.
pub fn take(
    account: &mut Account,
    device: u16,
    key: crate::appstate::SyncKey,
) -> Option<Recipient> {
    let identity = account.identity.clone();
    let phone = account.phone.clone();
    let companion: &mut Companion = account.companions.get_mut(&device)?;
    if companion.app_state_keys_shared {
        return None;
    }
    let signed_prekey = companion.signed_prekey.clone()?;
    companion.app_state_keys_shared = true;
    let prekey = companion
        .prekeys
        .keys()
        .next()
        .copied()
        .and_then(|id| companion.prekeys.remove(&id).map(|key| (id, key)));
    Some(Recipient {
        phone,
        device,
        identity,
        registration_id: companion.registration_id,
        companion_identity: companion.identity_pub,
        signed_prekey,
        prekey,
        key,
    })
}

/// The `<message>` carrying the key share to the companion.
pub async fn message(recipient: Recipient, stanza_id: String) -> anyhow::Result<Node> {
    let mut store = PhoneStore::new(&recipient.identity);
    let address = ProtocolAddress::new(&recipient.phone, u32::from(recipient.device).into());
    let key = |bytes: &[u8]| {
        PublicKey::from_djb_public_key_bytes(bytes).map_err(|e| anyhow!("a companion key: {e}"))
    };
    let (signed_id, signed_public, signature) = &recipient.signed_prekey;
    let prekey = match &recipient.prekey {
        Some((id, public)) => Some(((*id).into(), key(public)?)),
        None => None,
    };
    let bundle = PreKeyBundle::new(
        recipient.registration_id,
        u32::from(recipient.device).into(),
        prekey,
        (*signed_id).into(),
        key(signed_public)?,
        signature.clone(),
        IdentityKey::new(key(&recipient.companion_identity)?),
    )
    .context("the companion's pre-key bundle")?;
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let mut sessions = PhoneSessions::default();
    process_prekey_bundle(
        &address,
        &mut sessions,
        &mut store,
        &bundle,
        &mut rng,
        UsePQRatchet::No,
    )
    .await
    .context("a session with the companion")?;
    let plaintext =
        wacore::messages::MessageUtils::encode_and_pad(&key_share_message(&recipient.key));
    let ciphertext = message_encrypt(&plaintext, &address, &mut sessions, &mut store)
        .await
        .context("encrypting the key share")?;
    let (kind, bytes) = match ciphertext {
        CiphertextMessage::PreKeySignalMessage(m) => ("pkmsg", m.serialized().to_vec()),
        CiphertextMessage::SignalMessage(m) => ("msg", m.serialized().to_vec()),
        _ => return Err(anyhow!("unexpected ciphertext kind")),
    };
    Ok(NodeBuilder::new("message")
        .attr("from", format!("{}@s.whatsapp.net", recipient.phone))
        .attr(
            "to",
            format!("{}:{}@s.whatsapp.net", recipient.phone, recipient.device),
        )
        .attr("id", stanza_id)
        .attr("type", "text")
        .attr("category", "peer")
        .attr("t", crate::sim::now_secs().to_string())
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind)
            .bytes(bytes)
            .build()])
        .build())
}

/// The account's app-state sync key, as a phone shares it: the key id, 32 bytes of key data,
/// its fingerprint and the time it was made. Every companion gets the same key, the one the
/// account's app-state patches are encrypted under ([`crate::appstate`]).
fn key_share_message(sync_key: &crate::appstate::SyncKey) -> wa::Message {
    let key = wa::message::AppStateSyncKey {
        key_id: MessageField::some(wa::message::AppStateSyncKeyId {
            key_id: Some(sync_key.id.clone()),
        }),
        key_data: MessageField::some(wa::message::AppStateSyncKeyData {
            key_data: Some(sync_key.data.to_vec()),
            fingerprint: MessageField::some(wa::message::AppStateSyncKeyFingerprint {
                raw_id: Some(sync_key.raw_id),
                current_index: Some(0),
                device_indexes: vec![0],
            }),
            timestamp: Some(sync_key.timestamp_ms),
        }),
    };
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: MessageField::some(wa::message::AppStateSyncKeyShare {
                keys: vec![key],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The phone's Signal state for one share: its identity (the account's key) and the session it
/// builds. Nothing outlives the share; the phone sends nothing else over Signal.
struct PhoneStore {
    identity: IdentityKeyPair,
    identities: HashMap<String, IdentityKey>,
}

impl PhoneStore {
    fn new(identity: &KeyPair) -> Self {
        Self {
            identity: IdentityKeyPair::new(
                IdentityKey::new(identity.public_key),
                identity.private_key.clone(),
            ),
            identities: HashMap::new(),
        }
    }
}

#[derive(Default)]
struct PhoneSessions {
    sessions: HashMap<String, SessionRecord>,
}

#[async_trait]
impl IdentityKeyStore for PhoneStore {
    async fn get_identity_key_pair(
        &self,
    ) -> wacore::libsignal::protocol::error::Result<IdentityKeyPair> {
        Ok(self.identity.clone())
    }

    async fn get_local_registration_id(&self) -> wacore::libsignal::protocol::error::Result<u32> {
        Ok(1)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> wacore::libsignal::protocol::error::Result<IdentityChange> {
        let replaced = self
            .identities
            .insert(address.to_string(), *identity)
            .is_some_and(|old| old != *identity);
        Ok(if replaced {
            IdentityChange::ReplacedExisting
        } else {
            IdentityChange::NewOrUnchanged
        })
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> wacore::libsignal::protocol::error::Result<bool> {
        Ok(true)
    }

    async fn get_identity(
        &self,
        address: &ProtocolAddress,
    ) -> wacore::libsignal::protocol::error::Result<Option<IdentityKey>> {
        Ok(self.identities.get(&address.to_string()).copied())
    }
}

#[async_trait]
impl SessionStore for PhoneSessions {
    async fn load_session(
        &self,
        address: &ProtocolAddress,
    ) -> wacore::libsignal::protocol::error::Result<Option<SessionRecord>> {
        Ok(self.sessions.get(&address.to_string()).cloned())
    }

    async fn has_session(
        &self,
        address: &ProtocolAddress,
    ) -> wacore::libsignal::protocol::error::Result<bool> {
        Ok(self.sessions.contains_key(&address.to_string()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> wacore::libsignal::protocol::error::Result<()> {
        self.sessions.insert(address.to_string(), record);
        Ok(())
    }
}
