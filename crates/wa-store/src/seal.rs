//! Key material sealed at rest.
//!
//! With a store key configured, every column holding secret key material (the device record,
//! Signal sessions, pre-keys, signed pre-keys, sender keys, app-state sync keys and message
//! secrets) is written as
//!
//! ```text
//! MAGIC (4) || key id (4) || nonce (24) || XChaCha20-Poly1305 ciphertext || tag (16)
//! ```
//!
//! with associated data naming the column, the device and the row, so a sealed value copied to
//! another row or another device does not open. The key id (a hash of the key, not the key)
//! says which key sealed a value, so a value sealed with a key that is not configured is
//! reported as such rather than as damage, and older keys can still be read while
//! [`PgStore::reseal`](crate::PgStore::reseal) moves every row to the current one.
//!
//! A value without the magic prefix is plaintext written before a key was configured: it is
//! read as it is and sealed the next time it is written (or by a reseal). whatsapp-rust's
//! records are protocol buffers or JSON, which never begin with a zero byte; raw 32-byte keys
//! written in clear begin with the prefix with probability 2⁻³², and would then fail to open
//! rather than be misread.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The first bytes of every sealed value: a zero byte (no plaintext record starts with one),
/// "WS" and the format version.
pub const MAGIC: [u8; 4] = [0x00, b'W', b'S', 0x01];
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;

/// Length of a store key in bytes.
pub const KEY_LEN: usize = 32;

/// A 256-bit key that seals key material at rest.
pub struct StoreKey {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
}

impl StoreKey {
    /// The key made of these bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"wuts store key id\0")
            .chain_update(bytes)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self {
            cipher: XChaCha20Poly1305::new(bytes.into()),
            id,
        }
    }

    /// Reads a key written as 64 hexadecimal digits or as base64 (standard or URL-safe,
    /// padded or not) of 32 bytes. The error never repeats the text.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let decoded: Zeroizing<Vec<u8>> = Zeroizing::new(
            if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                decode_hex(text).ok_or(KeyError)?
            } else {
                let unpadded = text.trim_end_matches('=');
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(unpadded)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
                    .map_err(|_| KeyError)?
            },
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(decoded.as_slice().try_into().map_err(|_| KeyError)?);
        Ok(Self::from_bytes(&bytes))
    }

    /// The key's id, as stored in front of what it sealed (8 hexadecimal digits). Safe to log.
    pub fn id(&self) -> String {
        hex(&self.id)
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKey").field("id", &self.id()).finish()
    }
}

/// A store key that is not 32 bytes in hexadecimal or base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyError;

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a store key is 32 bytes, written as 64 hexadecimal digits or in base64")
    }
}

impl std::error::Error for KeyError {}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    digits
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The columns whose values are sealed, named in the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Device,
    Session,
    PreKey,
    SignedPreKey,
    SenderKey,
    AppSyncKey,
    MsgSecret,
    /// A device's webhook signing secret (the gateway's `webhooks` table).
    WebhookSecret,
}

impl Column {
    /// `table.column`, as in the schema.
    pub fn name(self) -> &'static str {
        match self {
            Column::Device => "wa_devices.data",
            Column::Session => "wa_sessions.record",
            Column::PreKey => "wa_prekeys.record",
            Column::SignedPreKey => "wa_signed_prekeys.record",
            Column::SenderKey => "wa_sender_keys.record",
            Column::AppSyncKey => "wa_app_sync_keys.key_data",
            Column::MsgSecret => "wa_msg_secrets.secret",
            Column::WebhookSecret => "webhooks.secret",
        }
    }
}

/// Where a value lives: its column, device and row key. The row key is the column's primary
/// key after the device (an address, an id as 4 big-endian bytes, a key id, ...).
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub column: Column,
    pub device: Uuid,
    pub row: &'a [u8],
}

impl Place<'_> {
    fn associated_data(&self, key_id: &[u8; KEY_ID_LEN]) -> Vec<u8> {
        let name = self.column.name().as_bytes();
        let mut aad =
            Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + name.len() + 1 + 16 + self.row.len());
        aad.extend_from_slice(&MAGIC);
        aad.extend_from_slice(key_id);
        aad.extend_from_slice(name);
        aad.push(0);
        aad.extend_from_slice(self.device.as_bytes());
        aad.extend_from_slice(self.row);
        aad
    }
}

/// Why a stored value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Sealed with a key that is not configured (or with a key while none is).
    UnknownKey { column: Column, key_id: String },
    /// Sealed with a configured key but does not open: altered, truncated, or copied from
    /// another row or device.
    Damaged { column: Column, key_id: String },
    /// The value is too large to seal.
    TooLarge { column: Column },
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::UnknownKey { column, key_id } => write!(
                f,
                "{} was sealed with store key {key_id}, which is not configured \
                 (WUTS_STORE_KEY / WUTS_STORE_KEY_PREVIOUS)",
                column.name()
            ),
            SealError::Damaged { column, key_id } => write!(
                f,
                "{} does not open with store key {key_id}: altered or moved from another row",
                column.name()
            ),
            SealError::TooLarge { column } => {
                write!(f, "{} value too large to seal", column.name())
            }
        }
    }
}

impl std::error::Error for SealError {}

/// As whatsapp-rust's store error; the [`SealError`] stays reachable as its source (see
/// [`SealError::find`]).
impl From<SealError> for wacore::store::error::StoreError {
    fn from(err: SealError) -> Self {
        Self::Serialization(Box::new(err))
    }
}

impl SealError {
    /// The sealing failure behind a store error, if that is what it is.
    pub fn find(err: &wacore::store::error::StoreError) -> Option<&SealError> {
        match err {
            wacore::store::error::StoreError::Serialization(source) => source.downcast_ref(),
            _ => None,
        }
    }
}

/// Seals values on their way to the database and opens them on their way back.
///
/// Without a current key it writes plaintext (and still opens values sealed with the previous
/// keys it is given, which is how encryption is turned off: configure the old key as previous
/// and reseal).
#[derive(Debug, Default)]
pub struct Sealer {
    current: Option<StoreKey>,
    previous: Vec<StoreKey>,
}

impl Sealer {
    /// A sealer that writes plaintext and opens nothing sealed.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Seals with `current` (plaintext when `None`); opens what `current` or any of
    /// `previous` sealed.
    pub fn new(current: Option<StoreKey>, previous: Vec<StoreKey>) -> Self {
        Self { current, previous }
    }

    /// The id of the key values are sealed with, if any.
    pub fn current_key_id(&self) -> Option<String> {
        self.current.as_ref().map(StoreKey::id)
    }

    /// The value to store for `plain` at `place`.
    pub fn seal<'a>(&self, place: Place<'_>, plain: &'a [u8]) -> Result<Cow<'a, [u8]>, SealError> {
        let Some(key) = &self.current else {
            return Ok(Cow::Borrowed(plain));
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = place.associated_data(&key.id);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLarge {
                column: place.column,
            })?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Cow::Owned(out))
    }

    /// The plaintext of the value stored at `place`.
    pub fn open(&self, place: Place<'_>, stored: Vec<u8>) -> Result<Vec<u8>, SealError> {
        if !stored.starts_with(&MAGIC) {
            return Ok(stored);
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        let Some(id_bytes) = stored.get(MAGIC.len()..MAGIC.len() + KEY_ID_LEN) else {
            return Err(SealError::Damaged {
                column: place.column,
                key_id: hex(&stored[MAGIC.len()..]),
            });
        };
        key_id.copy_from_slice(id_bytes);
        let key = self
            .current
            .iter()
            .chain(self.previous.iter())
            .find(|key| key.id == key_id)
            .ok_or_else(|| SealError::UnknownKey {
                column: place.column,
                key_id: hex(&key_id),
            })?;
        let damaged = || SealError::Damaged {
            column: place.column,
            key_id: hex(&key_id),
        };
        if stored.len() < HEADER_LEN + TAG_LEN {
            return Err(damaged());
        }
        let mut nonce = XNonce::default();
        nonce.copy_from_slice(&stored[MAGIC.len() + KEY_ID_LEN..HEADER_LEN]);
        let aad = place.associated_data(&key_id);
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &stored[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| damaged())
    }

    /// Whether `stored` is already as this sealer would write it: sealed with the current key,
    /// or plaintext when there is none.
    pub fn is_current(&self, stored: &[u8]) -> bool {
        match &self.current {
            None => !stored.starts_with(&MAGIC),
            Some(key) => {
                stored.starts_with(&MAGIC)
                    && stored.get(MAGIC.len()..MAGIC.len() + KEY_ID_LEN) == Some(&key.id[..])
            }
        }
    }
}

/// Whether a stored value is sealed (by any key).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(&MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StoreKey {
        StoreKey::from_bytes(&[byte; KEY_LEN])
    }

    fn place(row: &[u8]) -> Place<'_> {
        Place {
            column: Column::Session,
            device: Uuid::from_u128(7),
            row,
        }
    }

    fn sealing(byte: u8) -> Sealer {
        Sealer::new(Some(key(byte)), Vec::new())
    }

    #[test]
    fn sealed_values_open_and_hide_the_plaintext() -> Result<(), SealError> {
        let sealer = sealing(1);
        let plain = b"\x0a\x20session record with secret chain keys".to_vec();
        let stored = sealer.seal(place(b"123@lid"), &plain)?.into_owned();
        assert!(is_sealed(&stored));
        assert!(sealer.is_current(&stored));
        assert_eq!(stored.len(), HEADER_LEN + plain.len() + TAG_LEN);
        assert!(!stored.windows(8).any(|w| plain.windows(8).any(|p| p == w)));
        assert_eq!(sealer.open(place(b"123@lid"), stored)?, plain);
        Ok(())
    }

    #[test]
    fn sealing_twice_gives_different_values() -> Result<(), SealError> {
        let sealer = sealing(1);
        let a = sealer.seal(place(b"r"), b"same")?.into_owned();
        let b = sealer.seal(place(b"r"), b"same")?.into_owned();
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn a_value_moved_to_another_row_device_or_column_does_not_open() -> Result<(), SealError> {
        let sealer = sealing(1);
        let stored = sealer.seal(place(b"a@lid"), b"secret")?.into_owned();
        let other_row = sealer.open(place(b"b@lid"), stored.clone());
        assert!(matches!(other_row, Err(SealError::Damaged { .. })));
        let other_device = Place {
            device: Uuid::from_u128(8),
            ..place(b"a@lid")
        };
        assert!(sealer.open(other_device, stored.clone()).is_err());
        let other_column = Place {
            column: Column::SenderKey,
            ..place(b"a@lid")
        };
        assert!(sealer.open(other_column, stored).is_err());
        Ok(())
    }

    #[test]
    fn altered_or_truncated_values_are_damaged() -> Result<(), SealError> {
        let sealer = sealing(1);
        let stored = sealer.seal(place(b"r"), b"secret")?.into_owned();
        for at in [HEADER_LEN - 1, HEADER_LEN, stored.len() - 1] {
            let mut altered = stored.clone();
            altered[at] ^= 1;
            assert!(matches!(
                sealer.open(place(b"r"), altered),
                Err(SealError::Damaged { .. })
            ));
        }
        for len in [MAGIC.len(), MAGIC.len() + 2, HEADER_LEN + TAG_LEN - 1] {
            let truncated = stored[..len].to_vec();
            assert!(sealer.open(place(b"r"), truncated).is_err(), "length {len}");
        }
        Ok(())
    }

    #[test]
    fn another_key_is_named_not_taken_for_damage() -> Result<(), SealError> {
        let stored = sealing(1).seal(place(b"r"), b"secret")?.into_owned();
        let err = sealing(2).open(place(b"r"), stored.clone());
        assert_eq!(
            err,
            Err(SealError::UnknownKey {
                column: Column::Session,
                key_id: key(1).id()
            })
        );
        assert!(matches!(
            Sealer::plain().open(place(b"r"), stored.clone()),
            Err(SealError::UnknownKey { .. })
        ));
        // Kept as a previous key, it still opens; new values use the current key.
        let rotated = Sealer::new(Some(key(2)), vec![key(1)]);
        assert_eq!(rotated.open(place(b"r"), stored.clone())?, b"secret");
        assert!(!rotated.is_current(&stored));
        let resealed = rotated.seal(place(b"r"), b"secret")?.into_owned();
        assert!(rotated.is_current(&resealed));
        assert!(sealing(2).open(place(b"r"), resealed).is_ok());
        Ok(())
    }

    #[test]
    fn plaintext_rows_are_read_as_they_are() -> Result<(), SealError> {
        let plain = br#"{"pn":null}"#.to_vec();
        assert_eq!(sealing(1).open(place(b"r"), plain.clone())?, plain);
        assert!(!sealing(1).is_current(&plain));
        assert!(Sealer::plain().is_current(&plain));
        assert_eq!(
            Sealer::plain().seal(place(b"r"), &plain)?,
            Cow::Borrowed(&plain[..])
        );
        Ok(())
    }

    #[test]
    fn keys_parse_from_hex_and_base64_only_at_32_bytes() -> Result<(), KeyError> {
        let bytes: Vec<u8> = (0u8..32).collect();
        let hex_text = hex(&bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let id = StoreKey::parse(&hex_text)?.id();
        assert_ne!(id, StoreKey::from_bytes(&[0u8; KEY_LEN]).id());
        assert_eq!(StoreKey::parse(&hex_text.to_uppercase())?.id(), id);
        assert_eq!(StoreKey::parse(&b64)?.id(), id);
        assert_eq!(StoreKey::parse(&format!(" {url}\n"))?.id(), id);
        for bad in ["", "short", &hex_text[..62], &format!("{hex_text}00"), "zz"] {
            assert_eq!(
                StoreKey::parse(bad).map(|k| k.id()),
                Err(KeyError),
                "{bad:?}"
            );
        }
        // The error never repeats the key.
        assert!(!KeyError.to_string().contains(&hex_text[..8]));
        Ok(())
    }

    #[test]
    fn debug_shows_the_id_only() {
        let k = key(9);
        let shown = format!("{k:?}");
        assert!(shown.contains(&k.id()));
        assert!(!shown.contains("0909"));
    }
}
