//! Linking a companion with an 8-character pairing code instead of a QR code.
//!
//! 1. The companion sends `companion_hello` (its ephemeral key encrypted with the code, for the
//!    phone number it names); the server answers a pairing ref and keeps the request for that
//!    number.
//! 2. The phone's user types the code (control API): the phone decrypts the companion's key,
//!    and the server forwards the phone's own ephemeral key (encrypted with the code) and
//!    identity key to the companion in a `primary_hello` notification.
//! 3. The companion answers `companion_finish` with a key bundle encrypted under the shared
//!    secret; the phone opens it, derives the ADV secret both sides now share, and sends
//!    `pair-success` exactly as after a QR scan.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use wacore::libsignal::crypto::aes_256_gcm_decrypt;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair_code::PairCodeUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::api::Paired;
use crate::control::ControlError;
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::Sim;
use crate::stanza::{SERVER, attr, child, child_bytes, split_jid};
use crate::world::{Outbound, PendingCode, PrimaryHello};

/// How long the phone waits for the companion to finish after the code is entered.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

fn key32(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

pub fn companion_request(session: &mut Session, _iq: &Node, reg: &Node) -> Answer {
    let phone = attr(reg, "jid")
        .map(|j| split_jid(&j).0)
        .unwrap_or_default();
    match attr(reg, "stage").as_deref() {
        Some("companion_hello") => hello(session, &phone, reg),
        Some("companion_finish") => finish(session, &phone, reg),
        _ => Answer::Error(400),
    }
}

fn hello(session: &mut Session, phone: &str, reg: &Node) -> Answer {
    let Some(pairing) = session.registration.clone() else {
        // Only an unpaired companion asks for a code.
        return Answer::Error(400);
    };
    let Some(wrapped) = child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
        .filter(|b| b.len() == 80)
        .map(<[u8]>::to_vec)
    else {
        return Answer::Error(400);
    };
    let mut world = session.sim.world.lock();
    if world.account(phone).is_none() {
        return Answer::Error(404);
    }
    let random: [u8; 16] = rand::random();
    let pairing_ref: String = random.iter().map(|b| format!("{b:02x}")).collect();
    world.pending_codes.insert(
        phone.to_owned(),
        PendingCode {
            pairing,
            pairing_ref: pairing_ref.clone(),
            wrapped_companion_ephemeral: wrapped,
            primary: None,
        },
    );
    Answer::Result(vec![
        NodeBuilder::new("link_code_companion_reg")
            .children([NodeBuilder::new("link_code_pairing_ref")
                .bytes(pairing_ref.into_bytes())
                .build()])
            .build(),
    ])
}

/// Opens the companion's key bundle and derives the ADV secret, as the phone does.
fn adv_secret(
    primary: &PrimaryHello,
    account_identity: &KeyPair,
    companion_identity: &[u8; 32],
    wrapped_bundle: &[u8],
) -> Result<[u8; 32], String> {
    if wrapped_bundle.len() < 32 + 12 + 16 {
        return Err("key bundle too short".to_owned());
    }
    let companion_ephemeral = PublicKey::from_djb_public_key_bytes(&primary.companion_ephemeral)
        .map_err(|e| format!("companion ephemeral key: {e}"))?;
    let ephemeral_shared = primary
        .ephemeral
        .private_key
        .calculate_agreement(&companion_ephemeral)
        .map_err(|e| format!("ephemeral agreement: {e}"))?;
    let (salt, rest) = wrapped_bundle.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|e| format!("bundle key: {e:?}"))?;
    let iv: [u8; 12] = iv.try_into().map_err(|_| "bundle iv".to_owned())?;
    let mut bundle = Vec::with_capacity(96);
    aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|_| "the key bundle does not open: wrong code".to_owned())?;
    if bundle.len() != 96 {
        return Err("key bundle of the wrong size".to_owned());
    }
    if bundle[..32] != companion_identity[..]
        || bundle[32..64] != account_identity.public_key.public_key_bytes()[..]
    {
        return Err("key bundle names other keys".to_owned());
    }
    let companion_identity = PublicKey::from_djb_public_key_bytes(companion_identity)
        .map_err(|e| format!("companion identity key: {e}"))?;
    let identity_shared = account_identity
        .private_key
        .calculate_agreement(&companion_identity)
        .map_err(|e| format!("identity agreement: {e}"))?;
    let mut combined = Vec::with_capacity(96);
    combined.extend_from_slice(&ephemeral_shared);
    combined.extend_from_slice(&identity_shared);
    combined.extend_from_slice(&bundle[64..96]);
    let mut secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&combined, None, b"adv_secret", &mut secret)
        .map_err(|e| format!("adv secret: {e:?}"))?;
    Ok(secret)
}

fn finish(session: &mut Session, phone: &str, reg: &Node) -> Answer {
    let wrapped_bundle =
        child_bytes(reg, "link_code_pairing_wrapped_key_bundle").map(<[u8]>::to_vec);
    let companion_identity = child_bytes(reg, "companion_identity_public").and_then(key32);
    let pairing_ref = child(reg, "link_code_pairing_ref")
        .and_then(crate::stanza::bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let (Some(wrapped_bundle), Some(companion_identity), Some(pairing_ref)) =
        (wrapped_bundle, companion_identity, pairing_ref)
    else {
        return Answer::Error(400);
    };
    let mut world = session.sim.world.lock();
    let Some(identity) = world.account(phone).map(|a| a.identity.clone()) else {
        return Answer::Error(404);
    };
    let Some(pending) = world.pending_codes.get_mut(phone) else {
        return Answer::Error(404);
    };
    if pending.pairing_ref != pairing_ref || pending.pairing.identity_pub != companion_identity {
        return Answer::Error(400);
    }
    let Some(primary) = pending.primary.as_mut() else {
        return Answer::Error(400);
    };
    let outcome = adv_secret(primary, &identity, &companion_identity, &wrapped_bundle);
    if let Some(finished) = primary.finished.take() {
        let _ = finished.send(outcome.clone());
    }
    match outcome {
        Ok(_) => Answer::Result(Vec::new()),
        Err(_) => Answer::Error(400),
    }
}

/// The phone's user types `code`: the companion that asked for `phone` is linked.
pub async fn phone_enters_code(
    sim: &Arc<Sim>,
    phone: &str,
    code: &str,
) -> Result<axum::Json<Paired>, ControlError> {
    let code = code.replace('-', "").to_uppercase();
    if !PairCodeUtils::validate_code(&code) {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            "a pairing code is 8 characters".to_owned(),
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (wrapped, identity_pub) = {
        let world = sim.world.lock();
        let identity = world
            .account(phone)
            .map(|a| a.identity.public_key.public_key_bytes().to_vec())
            .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, "no such account".to_owned()))?;
        let pending = world.pending_codes.get(phone).ok_or_else(|| {
            ControlError(
                StatusCode::NOT_FOUND,
                "no companion is waiting for a code for this number".to_owned(),
            )
        })?;
        (pending.wrapped_companion_ephemeral.clone(), identity)
    };
    // PBKDF2 with 2^17 rounds: off the async threads.
    let code_for_work = code.clone();
    let (companion_ephemeral, ephemeral, wrapped_primary) =
        tokio::task::spawn_blocking(move || {
            let companion = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, &code_for_work)
                .map_err(|e| e.to_string())?;
            let ephemeral = wacore::crypto::generate_curve_key_pair();
            let mut public = [0u8; 32];
            public.copy_from_slice(ephemeral.public_key.public_key_bytes());
            let wrapped_primary = PairCodeUtils::encrypt_ephemeral_pub(&public, &code_for_work);
            Ok::<_, String>((companion, ephemeral, wrapped_primary))
        })
        .await
        .map_err(|e| ControlError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ControlError(StatusCode::BAD_REQUEST, e))?;
    let (conn, pairing_ref, pairing) = {
        let mut world = sim.world.lock();
        let pending = world
            .pending_codes
            .get_mut(phone)
            .ok_or_else(|| ControlError(StatusCode::GONE, "the companion went away".to_owned()))?;
        pending.primary = Some(PrimaryHello {
            ephemeral,
            companion_ephemeral,
            finished: Some(tx),
        });
        (
            pending.pairing.conn.clone(),
            pending.pairing_ref.clone(),
            pending.pairing.clone(),
        )
    };
    conn.send(Outbound::Node(
        NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "link_code_companion_reg")
            .attr("id", sim.stanza_id())
            .attr("t", crate::sim::now_secs().to_string())
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(pairing_ref.into_bytes())
                        .build(),
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(wrapped_primary.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(identity_pub)
                        .build(),
                ])
                .build()])
            .build(),
    ));
    let secret = match tokio::time::timeout(FINISH_TIMEOUT, rx).await {
        Ok(Ok(Ok(secret))) => secret,
        Ok(Ok(Err(reason))) => return Err(ControlError(StatusCode::BAD_REQUEST, reason)),
        _ => {
            return Err(ControlError(
                StatusCode::GATEWAY_TIMEOUT,
                "the companion did not finish".to_owned(),
            ));
        }
    };
    // Let the companion read the answer to its finish before pair-success arrives.
    tokio::time::sleep(Duration::from_millis(20)).await;
    crate::control::link(sim, phone, pairing, &secret).await
}
