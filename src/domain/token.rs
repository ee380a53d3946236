//! Bearer tokens: random UUID v4 values shown once and stored only as SHA-256 hashes.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A bearer token as handed to a client. Never logged, never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ApiToken(Uuid);

impl ApiToken {
    /// A new random token.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses a token as a client sent it. Any UUID spelling is accepted; the hash is taken over
    /// the 16 bytes so that case or hyphenation do not matter.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s.trim()).ok().map(Self)
    }

    /// The hash stored in the database and used as the cache key.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The token's text, for the one answer that reveals it.
    pub fn reveal(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The bytes stored in `users.token_hash`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_does_not_change_the_hash() {
        let token = ApiToken::generate();
        let text = token.reveal();
        let upper = ApiToken::parse(&text.to_uppercase()).expect("uppercase parses");
        let simple = ApiToken::parse(&text.replace('-', "")).expect("simple form parses");
        assert_eq!(upper.hash(), token.hash());
        assert_eq!(simple.hash(), token.hash());
    }

    #[test]
    fn different_tokens_hash_differently() {
        assert_ne!(ApiToken::generate().hash(), ApiToken::generate().hash());
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert!(ApiToken::parse("not-a-token").is_none());
        assert!(ApiToken::parse("").is_none());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ApiToken::generate();
        assert!(!format!("{token:?}").contains(&token.reveal()));
    }

    proptest::proptest! {
        #[test]
        fn any_uuid_spelling_parses_and_garbage_does_not_panic(bytes in proptest::array::uniform16(0u8..), raw in "\\PC{0,48}") {
            let uuid = Uuid::from_bytes(bytes);
            for text in [uuid.hyphenated().to_string(), uuid.simple().to_string().to_uppercase()] {
                let parsed = ApiToken::parse(&text).map(|t| t.hash());
                proptest::prop_assert_eq!(parsed, Some(ApiToken(uuid).hash()));
            }
            let _ = ApiToken::parse(&raw);
        }
    }
}
