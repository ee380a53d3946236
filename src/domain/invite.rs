//! Group invites: the code of an invite link (`https://chat.whatsapp.com/<code>`), and the
//! disappearing-message timers a group may have.

use std::fmt;

/// The longest invite code accepted (WhatsApp's links carry 22 characters; private invites 16).
const MAX_CODE: usize = 64;

/// The code of a group's invite link, or of a private invite, parsed from a link or given bare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode(String);

impl InviteCode {
    /// A link (`https://chat.whatsapp.com/<code>`, with or without the scheme, `http`, `www.` or
    /// an `invite/` segment) or a bare code: letters and digits (and `-`, `_`), at most 64.
    pub fn from_link(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .unwrap_or(raw);
        let rest = rest.strip_prefix("www.").unwrap_or(rest);
        let code = match rest.strip_prefix("chat.whatsapp.com/") {
            Some(path) => {
                let path = path.strip_prefix("invite/").unwrap_or(path);
                path.split(['?', '#']).next().unwrap_or_default()
            }
            None if rest.contains('/') => {
                return Err("must be a https://chat.whatsapp.com/<code> link".to_owned());
            }
            None => rest,
        };
        Self::parse(code.trim_end_matches('/'))
    }

    /// A bare code.
    pub fn parse(code: &str) -> Result<Self, String> {
        if code.is_empty() {
            return Err("the invite code is empty".to_owned());
        }
        if code.len() > MAX_CODE {
            return Err(format!("an invite code has at most {MAX_CODE} characters"));
        }
        if !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("an invite code has only letters and digits".to_owned());
        }
        Ok(Self(code.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The link that carries this code.
    pub fn link(&self) -> String {
        format!("https://chat.whatsapp.com/{}", self.0)
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group's disappearing-message timer: off, 24 hours, 7 days or 90 days (the timers
/// WhatsApp offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EphemeralTimer(u32);

impl EphemeralTimer {
    /// The accepted durations, in seconds.
    pub const ALLOWED: [u32; 4] = [0, 86_400, 604_800, 7_776_000];

    pub fn from_seconds(seconds: u64) -> Result<Self, String> {
        u32::try_from(seconds)
            .ok()
            .filter(|s| Self::ALLOWED.contains(s))
            .map(Self)
            .ok_or_else(|| {
                "must be 0 (off), 86400 (24 h), 604800 (7 days) or 7776000 (90 days)".to_owned()
            })
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_bare_codes_give_the_code() {
        for raw in [
            "https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv",
            "chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv",
            "http://www.chat.whatsapp.com/invite/AbCdEfGhIjKlMnOpQrStUv/",
            " AbCdEfGhIjKlMnOpQrStUv ",
            "https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv?utm=x",
        ] {
            assert_eq!(
                InviteCode::from_link(raw).map(|c| c.to_string()),
                Ok("AbCdEfGhIjKlMnOpQrStUv".to_owned()),
                "{raw}"
            );
        }
        let code = InviteCode::parse("Xy7Kp9LmQ2vR8sTa").expect("code");
        assert_eq!(code.link(), "https://chat.whatsapp.com/Xy7Kp9LmQ2vR8sTa");
    }

    #[test]
    fn other_links_and_junk_are_refused() {
        for raw in [
            "",
            "https://example.com/AbCd",
            "https://chat.whatsapp.com/",
            "Ab Cd",
            "Ab<script>",
            &"A".repeat(65),
        ] {
            assert!(InviteCode::from_link(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn only_whatsapps_timers_are_accepted() {
        for ok in [0, 86_400, 604_800, 7_776_000] {
            assert_eq!(
                EphemeralTimer::from_seconds(ok).map(|t| t.seconds() as u64),
                Ok(ok)
            );
        }
        for bad in [1, 3_600, 86_401, 2_592_000, u64::MAX] {
            assert!(EphemeralTimer::from_seconds(bad).is_err(), "{bad}");
        }
    }
}
