//! The phone's side of linking a companion: the signed device identity it sends in
//! `pair-success`, and the QR string it scans.

use anyhow::{Result, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::world::Account;

/// Prefix of the message an account signs to vouch for a companion (WA Web `ADV_PREFIX`).
const ADV_PREFIX_ACCOUNT_SIGNATURE: &[u8] = &[6, 0];
/// Prefix of the message the companion signs back.
const ADV_PREFIX_DEVICE_SIGNATURE: &[u8] = &[6, 1];

/// What current companions put before the pairing data in their QR code (whatsmeow `pair.go`
/// `makeQRData`, WhatsApp Web): the phone's camera opens it as a link to its linked-devices
/// screen.
const QR_LINK_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// What the phone reads from a companion's QR code: `ref,noise,identity,adv[,type]`, bare (as
/// whatsapp-rust and Baileys show it) or after [`QR_LINK_PREFIX`] (as whatsmeow and WhatsApp Web
/// show it).
#[derive(Debug, Clone)]
pub struct ScannedQr {
    pub pairing_ref: String,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub adv_secret: [u8; 32],
}

fn key32(b64: &str, what: &str) -> Result<[u8; 32]> {
    STANDARD
        .decode(b64)
        .map_err(|e| anyhow!("{what} is not base64: {e}"))?
        .try_into()
        .map_err(|_| anyhow!("{what} is not 32 bytes"))
}

pub fn parse_qr(qr: &str) -> Result<ScannedQr> {
    let qr = qr.trim();
    let data = qr.strip_prefix(QR_LINK_PREFIX).unwrap_or(qr);
    let parts: Vec<&str> = data.split(',').collect();
    if parts.len() < 4 || parts.iter().take(4).any(|p| p.is_empty()) {
        return Err(anyhow!("not a WhatsApp pairing QR code"));
    }
    Ok(ScannedQr {
        pairing_ref: parts[0].to_owned(),
        noise_pub: key32(parts[1], "noise key")?,
        identity_pub: key32(parts[2], "identity key")?,
        adv_secret: key32(parts[3], "adv secret")?,
    })
}

/// The account's signed identity for a new companion, wrapped in the HMAC container keyed by
/// the secret the companion shared through the QR code (or the pairing-code exchange).
pub fn device_identity(
    account: &Account,
    companion_identity_pub: &[u8; 32],
    adv_secret: &[u8; 32],
    key_index: u32,
) -> Result<Vec<u8>> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(account.raw_id),
        timestamp: Some(timestamp),
        key_index: Some(key_index),
        ..Default::default()
    }
    .encode_to_vec();
    let account_signature = account
        .identity
        .private_key
        .calculate_signature_for_multipart_message(
            &[
                ADV_PREFIX_ACCOUNT_SIGNATURE,
                &details,
                companion_identity_pub,
            ],
            &mut rand::rng(),
        )
        .map_err(|e| anyhow!("signing the device identity: {e}"))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.identity.public_key.public_key_bytes().to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(adv_secret)
        .map_err(|e| anyhow!("HMAC key: {e}"))?;
    mac.update(&signed);
    let hmac = mac.finalize().into_bytes().to_vec();
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac),
        account_type: None,
    }
    .encode_to_vec())
}

/// Checks the companion's counter-signature on the identity it sends back
/// (`pair-device-sign`), as the server does before it accepts the device.
///
/// The signature covers the account's identity key, and it is checked against the key the
/// server knows for the account, never against a key the companion sends: real companions strip
/// `account_signature_key` from the identity they send back (whatsmeow `pair.go` sets
/// `AccountSignatureKey = nil` before marshalling; Baileys `validate-connection.js`
/// `encodeSignedDeviceIdentity(account, false)`); whatsapp-rust keeps it, and it is ignored.
pub fn verify_device_signature(
    signed_identity: &[u8],
    companion_identity_pub: &[u8; 32],
    account_identity_pub: &[u8],
) -> Result<()> {
    let identity = wa::ADVSignedDeviceIdentity::decode_from_slice(signed_identity)
        .map_err(|e| anyhow!("undecodable signed identity: {e}"))?;
    let details = identity.details.unwrap_or_default();
    let account_key = account_identity_pub;
    let signature = identity
        .device_signature
        .ok_or_else(|| anyhow!("no device signature"))?;
    let message = [
        ADV_PREFIX_DEVICE_SIGNATURE,
        details.as_slice(),
        companion_identity_pub.as_slice(),
        account_key,
    ]
    .concat();
    let key =
        wacore::libsignal::protocol::PublicKey::from_djb_public_key_bytes(companion_identity_pub)
            .map_err(|e| anyhow!("companion identity key: {e}"))?;
    if key.verify_signature(&message, &signature) {
        Ok(())
    } else {
        Err(anyhow!("device signature does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qr_data() -> String {
        let key = STANDARD.encode([7u8; 32]);
        format!("2@abc,{key},{key},{key}")
    }

    #[test]
    fn the_qr_is_read_bare_and_as_a_linked_devices_link() {
        let bare = parse_qr(&qr_data()).map(|q| q.pairing_ref);
        let link = parse_qr(&format!("{QR_LINK_PREFIX}{},1", qr_data())).map(|q| q.pairing_ref);
        assert_eq!(bare.ok().as_deref(), Some("2@abc"));
        assert_eq!(link.ok().as_deref(), Some("2@abc"));
        assert!(parse_qr("https://wa.me/settings/linked_devices#").is_err());
    }
}
