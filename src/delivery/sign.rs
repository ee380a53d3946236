//! Webhook secrets and Standard Webhooks signatures: `webhook-signature: v1,<base64 of
//! HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")>`, one per signing secret,
//! separated by spaces (two during a rotation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of secrets as shown.
pub const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and the base64 of 24 random bytes.
pub fn generate() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// Reads a secret a user chose: `whsec_` and the base64 of 24 to 64 bytes.
pub fn parse(text: &str) -> Result<(), &'static str> {
    let encoded = text
        .strip_prefix(PREFIX)
        .ok_or("must start with whsec_ (followed by the base64 of 24 to 64 random bytes)")?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| "the part after whsec_ must be base64")?;
    if !(24..=64).contains(&bytes.len()) {
        return Err("must hold 24 to 64 bytes (base64 after whsec_)");
    }
    Ok(())
}

/// The HMAC key a secret stands for (the bytes its base64 encodes).
pub fn key(secret: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(secret);
    let encoded = text.strip_prefix(PREFIX).unwrap_or(&text);
    STANDARD.decode(encoded).unwrap_or_else(|_| secret.to_vec())
}

/// The `webhook-signature` header for one attempt, signed with each secret.
pub fn signature(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)).ok()?;
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse() {
        let secret = generate();
        assert!(secret.starts_with(PREFIX));
        assert_eq!(parse(&secret), Ok(()));
        assert_eq!(key(secret.as_bytes()).len(), 24);
        assert_ne!(generate(), secret);
    }

    #[test]
    fn bad_secrets_say_why() {
        assert!(parse("abc").is_err());
        assert!(parse("whsec_!!!").is_err());
        assert!(parse(&format!("whsec_{}", STANDARD.encode([1u8; 8]))).is_err());
    }

    /// The example of the Standard Webhooks specification's reference implementations.
    #[test]
    fn signs_as_the_specification_says() {
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec();
        let body = br#"{"test": 2432232314}"#;
        let header = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_signs_twice() {
        let header = signature(
            &[generate().into_bytes(), generate().into_bytes()],
            "evt_1",
            1,
            b"{}",
        );
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    }
}
