//! The server side of WhatsApp's Noise handshake (XX, IK and XX-fallback) and of the encrypted
//! frame transport that follows it.
//!
//! The responder mirrors the initiator in `wacore-noise`: the same transcript, the same key
//! derivation, so that an unmodified whatsapp-rust client completes against it.
//!
//! The certificate chain is built as WhatsApp's is (whatsapp-rust `wacore-noise` `handshake.rs`
//! `verify_server_cert`, Baileys `Utils/noise-handler.js` `processHandshake`): an intermediate
//! certificate (`issuer_serial` 0) signed by a root key, and a leaf certificate naming the
//! server's static key, signed by the intermediate's key, both with real XEdDSA signatures. The
//! root is wa-sim's own (WhatsApp's root key cannot be forged), so a client that checks the chain
//! fails at the root and only there; it passes when told wa-sim's root public key
//! ([`ServerIdentity::root_public_key`]) or when it skips the chain check
//! (whatsapp-rust's `danger-skip-cert-chain-verify`).

use anyhow::{Context, Result, anyhow, bail};
use wacore::handshake::{NoiseCipher, NoiseHandshake};
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use waproto::buffa::{Message, MessageField};
use waproto::whatsapp as wa;

/// The issuer serial WhatsApp's root carries; clients check the intermediate names it.
const ROOT_SERIAL: u32 = 0;
const INTERMEDIATE_SERIAL: u32 = 1;
const LEAF_SERIAL: u32 = 2;
/// Validity window of the certificates (the clients cache the chain and check it against the
/// clock when they resume with IK).
const NOT_BEFORE: u64 = 1_700_000_000;
const NOT_AFTER: u64 = 1_900_000_000;

/// The server's long-lived identity: its static Noise key and the chain that vouches for it.
pub struct ServerIdentity {
    static_kp: KeyPair,
    static_pub: [u8; 32],
    root_pub: [u8; 32],
    cert_chain: Vec<u8>,
}

fn public_bytes(kp: &KeyPair) -> Result<[u8; 32]> {
    kp.public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| anyhow!("X25519 public key is not 32 bytes"))
}

/// One certificate: its details, signed by the issuer's key.
fn certificate(
    issuer: &KeyPair,
    serial: u32,
    issuer_serial: u32,
    key: &[u8; 32],
) -> Result<wa::cert_chain::NoiseCertificate> {
    let details = wa::cert_chain::noise_certificate::Details {
        serial: Some(serial),
        issuer_serial: Some(issuer_serial),
        key: Some(key.to_vec()),
        not_before: Some(NOT_BEFORE),
        not_after: Some(NOT_AFTER),
    }
    .encode_to_vec();
    let signature = issuer
        .private_key
        .calculate_signature(&details, &mut rand::rng())
        .map_err(|e| anyhow!("signing a certificate: {e}"))?;
    Ok(wa::cert_chain::NoiseCertificate {
        details: Some(details),
        signature: Some(signature.to_vec()),
    })
}

impl ServerIdentity {
    pub fn generate() -> Result<Self> {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let static_pub = public_bytes(&static_kp)?;
        let root = KeyPair::generate(&mut rand::rng());
        let intermediate = KeyPair::generate(&mut rand::rng());
        let cert_chain = wa::CertChain {
            intermediate: MessageField::some(certificate(
                &root,
                INTERMEDIATE_SERIAL,
                ROOT_SERIAL,
                &public_bytes(&intermediate)?,
            )?),
            leaf: MessageField::some(certificate(
                &intermediate,
                LEAF_SERIAL,
                INTERMEDIATE_SERIAL,
                &static_pub,
            )?),
        }
        .encode_to_vec();
        Ok(Self {
            static_kp,
            static_pub,
            root_pub: public_bytes(&root)?,
            cert_chain,
        })
    }

    /// The public key of wa-sim's certificate root (it stands where WhatsApp's root key is).
    pub fn root_public_key(&self) -> [u8; 32] {
        self.root_pub
    }
}

/// Which handshake a connection used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Full handshake: first connection, pairing, or no cached server key.
    Xx,
    /// Resumed: the client knew the server's static key and sent its login in the first message.
    Ik,
    /// The client tried IK with a stale key and was switched to XX.
    XxFallback,
}

impl HandshakeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeKind::Xx => "xx",
            HandshakeKind::Ik => "ik",
            HandshakeKind::XxFallback => "xx_fallback",
        }
    }
}

/// A completed handshake: who the client is and the transport ciphers.
pub struct Established {
    pub kind: HandshakeKind,
    /// The client's static Noise key (a companion's identity on the wire).
    pub client_static: [u8; 32],
    /// The login or registration payload.
    pub payload: wa::ClientPayload,
    pub transport: Transport,
}

/// What the responder needs next after reading a ClientHello.
pub enum Step {
    /// Send this ServerHello, then feed the ClientFinish to [`PendingXx::finish`].
    AwaitFinish(Vec<u8>, Box<PendingXx>),
    /// Send this ServerHello; the handshake is complete.
    Done(Vec<u8>, Box<Established>),
}

/// An XX (or XX-fallback) handshake waiting for the client's finish message.
pub struct PendingXx {
    noise: NoiseHandshake,
    server_ephemeral: KeyPair,
    kind: HandshakeKind,
}

fn to_key(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| anyhow!("expected a 32-byte key, got {} bytes", bytes.len()))
}

fn server_hello(ephemeral: &[u8], encrypted_static: Option<Vec<u8>>, payload: Vec<u8>) -> Vec<u8> {
    wa::HandshakeMessage {
        server_hello: MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

impl ServerIdentity {
    /// Reads the client's first handshake message (the frame body, after the `WA` header).
    pub fn respond(&self, client_hello: &[u8]) -> Result<Step> {
        let message = wa::HandshakeMessage::decode_from_slice(client_hello)
            .map_err(|e| anyhow!("undecodable ClientHello: {e}"))?;
        let hello = message
            .client_hello
            .into_option()
            .ok_or_else(|| anyhow!("handshake message without ClientHello"))?;
        let client_ephemeral = to_key(
            hello
                .ephemeral
                .as_deref()
                .ok_or_else(|| anyhow!("ClientHello without ephemeral"))?,
        )?;
        match (hello.r#static.as_deref(), hello.payload.as_deref()) {
            (Some(encrypted_static), Some(encrypted_payload)) => {
                match self.ik(&client_ephemeral, encrypted_static, encrypted_payload) {
                    Ok(done) => Ok(done),
                    // The client holds a server key that is not ours (say, of an earlier
                    // run): answer XX-shaped so that it falls back, keeping its ephemeral.
                    Err(err) => {
                        tracing::debug!(error = %err, "IK refused; falling back to XX");
                        self.xx(&client_ephemeral, HandshakeKind::XxFallback)
                    }
                }
            }
            _ => self.xx(&client_ephemeral, HandshakeKind::Xx),
        }
    }

    fn xx(&self, client_ephemeral: &[u8; 32], kind: HandshakeKind) -> Result<Step> {
        let pattern = match kind {
            HandshakeKind::XxFallback => NOISE_PATTERN_XXFALLBACK,
            _ => NOISE_PATTERN_XX,
        };
        let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER)?;
        noise.authenticate(client_ephemeral);
        let server_ephemeral = KeyPair::generate(&mut rand::rng());
        let ephemeral_pub = server_ephemeral.public_key.public_key_bytes().to_vec();
        noise.authenticate(&ephemeral_pub);
        noise.mix_shared_secret(server_ephemeral.private_key.serialize(), client_ephemeral)?;
        let encrypted_static = noise.encrypt(&self.static_pub)?;
        noise.mix_shared_secret(self.static_kp.private_key.serialize(), client_ephemeral)?;
        let encrypted_chain = noise.encrypt(&self.cert_chain)?;
        Ok(Step::AwaitFinish(
            server_hello(&ephemeral_pub, Some(encrypted_static), encrypted_chain),
            Box::new(PendingXx {
                noise,
                server_ephemeral,
                kind,
            }),
        ))
    }

    fn ik(
        &self,
        client_ephemeral: &[u8; 32],
        encrypted_static: &[u8],
        encrypted_payload: &[u8],
    ) -> Result<Step> {
        let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
        noise.authenticate(&self.static_pub);
        noise.authenticate(client_ephemeral);
        noise.mix_shared_secret(self.static_kp.private_key.serialize(), client_ephemeral)?;
        let client_static = to_key(&noise.decrypt(encrypted_static)?)?;
        noise.mix_shared_secret(self.static_kp.private_key.serialize(), &client_static)?;
        let payload_bytes = noise.decrypt(encrypted_payload)?;
        let payload = wa::ClientPayload::decode_from_slice(&payload_bytes)
            .map_err(|e| anyhow!("undecodable ClientPayload: {e}"))?;

        let server_ephemeral = KeyPair::generate(&mut rand::rng());
        let ephemeral_pub = server_ephemeral.public_key.public_key_bytes().to_vec();
        noise.authenticate(&ephemeral_pub);
        noise.mix_shared_secret(server_ephemeral.private_key.serialize(), client_ephemeral)?;
        noise.mix_shared_secret(server_ephemeral.private_key.serialize(), &client_static)?;
        let encrypted_chain = noise.encrypt(&self.cert_chain)?;
        let hello = server_hello(&ephemeral_pub, None, encrypted_chain);
        let (client_write, client_read) = noise.finish()?;
        Ok(Step::Done(
            hello,
            Box::new(Established {
                kind: HandshakeKind::Ik,
                client_static,
                payload,
                transport: Transport::new(client_write, client_read),
            }),
        ))
    }
}

impl PendingXx {
    /// Reads the ClientFinish and completes the handshake.
    pub fn finish(mut self, client_finish: &[u8]) -> Result<Established> {
        let message = wa::HandshakeMessage::decode_from_slice(client_finish)
            .map_err(|e| anyhow!("undecodable ClientFinish: {e}"))?;
        let finish = message
            .client_finish
            .into_option()
            .ok_or_else(|| anyhow!("handshake message without ClientFinish"))?;
        let encrypted_static = finish
            .r#static
            .ok_or_else(|| anyhow!("ClientFinish without static"))?;
        let encrypted_payload = finish
            .payload
            .ok_or_else(|| anyhow!("ClientFinish without payload"))?;
        let client_static = to_key(&self.noise.decrypt(&encrypted_static)?)?;
        self.noise.mix_shared_secret(
            self.server_ephemeral.private_key.serialize(),
            &client_static,
        )?;
        let payload_bytes = self.noise.decrypt(&encrypted_payload)?;
        let payload = wa::ClientPayload::decode_from_slice(&payload_bytes)
            .map_err(|e| anyhow!("undecodable ClientPayload: {e}"))?;
        let (client_write, client_read) = self.noise.finish()?;
        Ok(Established {
            kind: self.kind,
            client_static,
            payload,
            transport: Transport::new(client_write, client_read),
        })
    }
}

/// The encrypted frame transport after the handshake: one cipher and counter per direction.
pub struct Transport {
    /// Decrypts what the client sends (the client's write key).
    read: NoiseCipher,
    read_counter: u32,
    /// Encrypts what the server sends (the client's read key).
    write: NoiseCipher,
    write_counter: u32,
}

impl Transport {
    fn new(client_write: NoiseCipher, client_read: NoiseCipher) -> Self {
        Self {
            read: client_write,
            read_counter: 0,
            write: client_read,
            write_counter: 0,
        }
    }

    /// Splits into the reading and the writing half, for a reader task and a writer task.
    pub fn split(self) -> (Decryptor, Encryptor) {
        (
            Decryptor {
                cipher: self.read,
                counter: self.read_counter,
            },
            Encryptor {
                cipher: self.write,
                counter: self.write_counter,
            },
        )
    }
}

pub struct Decryptor {
    cipher: NoiseCipher,
    counter: u32,
}

impl Decryptor {
    pub fn decrypt(&mut self, mut frame: Vec<u8>) -> Result<Vec<u8>> {
        let counter = self.counter;
        self.counter = counter
            .checked_add(1)
            .ok_or_else(|| anyhow!("read counter exhausted"))?;
        self.cipher
            .decrypt_in_place_with_counter(counter, &mut frame)
            .context("decrypting a client frame")?;
        Ok(frame)
    }
}

pub struct Encryptor {
    cipher: NoiseCipher,
    counter: u32,
}

impl Encryptor {
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let counter = self.counter;
        if counter == u32::MAX {
            bail!("write counter exhausted");
        }
        self.counter += 1;
        Ok(self.cipher.encrypt_with_counter(counter, plaintext)?)
    }
}
