//! WhatsApp identifiers as clients give them: bare phone numbers, phone-number JIDs, LIDs and
//! group JIDs.
//!
//! - A phone number is normalized by removing spaces, dashes, dots, parentheses and one leading
//!   `+`; what remains must be 10 to 15 digits.
//! - A phone-number (PN) JID is `<digits>@s.whatsapp.net`; `@c.us` is accepted as an alias.
//! - A LID (WhatsApp's privacy identifier) is `<digits>@lid`.
//! - A group or community is `<digits>@g.us` (older groups: `<digits>-<digits>@g.us`).
//! - A device suffix (`5511999999999:12@s.whatsapp.net`) or agent suffix (`_1`) is accepted and
//!   dropped: the gateway talks about users, not their devices.

use std::fmt;

use wacore_binary::{Jid as WaJid, Server};

/// Server part of phone-number JIDs.
pub const PN_SERVER: &str = "s.whatsapp.net";
/// Legacy alias of [`PN_SERVER`], accepted on input.
pub const LEGACY_PN_SERVER: &str = "c.us";
/// Server part of LID JIDs.
pub const LID_SERVER: &str = "lid";
/// Server part of group and community JIDs.
pub const GROUP_SERVER: &str = "g.us";

/// Longest LID user part accepted.
const MAX_LID_DIGITS: usize = 24;

/// A normalized phone number: 10 to 15 digits, no `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Normalizes and checks a number as a person would type it (`"+55 11 98888-8888"`).
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let trimmed = raw.trim();
        let without_plus = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let mut digits = String::with_capacity(without_plus.len());
        for c in without_plus.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(IdentifierError::NotAPhoneNumber),
            }
        }
        Self::from_digits(&digits)
    }

    /// Checks a string that should already be bare digits (a JID's user part).
    pub fn from_digits(digits: &str) -> Result<Self, IdentifierError> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentifierError::NotAPhoneNumber);
        }
        if !(10..=15).contains(&digits.len()) {
            return Err(IdentifierError::PhoneLength);
        }
        Ok(Self(digits.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<digits>@s.whatsapp.net`.
    pub fn jid(&self) -> String {
        format!("{}@{PN_SERVER}", self.0)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A LID: the digits of `<digits>@lid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lid(String);

impl Lid {
    pub fn from_digits(digits: &str) -> Result<Self, IdentifierError> {
        if digits.is_empty()
            || digits.len() > MAX_LID_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(IdentifierError::NotALid);
        }
        Ok(Self(digits.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<digits>@lid`.
    pub fn jid(&self) -> String {
        format!("{}@{LID_SERVER}", self.0)
    }
}

impl fmt::Display for Lid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group or community JID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupJid(String);

impl GroupJid {
    /// Parses `<id>@g.us`. A bare id (no server) is not accepted: it would be ambiguous with a
    /// phone number.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let (user, server) = split_jid(raw.trim()).ok_or(IdentifierError::NotAGroup)?;
        if server != GROUP_SERVER {
            return Err(IdentifierError::NotAGroup);
        }
        let valid = match user.split_once('-') {
            Some((creator, stamp)) => is_digits(creator) && is_digits(stamp),
            None => is_digits(user),
        };
        if !valid || user.len() > 64 {
            return Err(IdentifierError::NotAGroup);
        }
        Ok(Self(user.to_owned()))
    }

    /// The id before `@g.us`.
    pub fn user(&self) -> &str {
        &self.0
    }

    /// `<id>@g.us`.
    pub fn jid(&self) -> String {
        format!("{}@{GROUP_SERVER}", self.0)
    }
}

impl fmt::Display for GroupJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{GROUP_SERVER}", self.0)
    }
}

/// A person on WhatsApp, named by phone number or by LID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactId {
    Phone(PhoneNumber),
    Lid(Lid),
}

impl ContactId {
    /// Parses a bare number, a PN JID (`@s.whatsapp.net` or `@c.us`) or a LID JID, dropping any
    /// device or agent suffix.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(IdentifierError::Empty);
        }
        let Some((user, server)) = split_jid(raw) else {
            return PhoneNumber::parse(raw).map(ContactId::Phone);
        };
        let user = strip_device(user);
        match server {
            PN_SERVER | LEGACY_PN_SERVER => PhoneNumber::from_digits(user).map(ContactId::Phone),
            LID_SERVER => Lid::from_digits(user).map(ContactId::Lid),
            GROUP_SERVER => Err(IdentifierError::GroupNotAllowed),
            _ => Err(IdentifierError::UnknownServer),
        }
    }

    /// The canonical JID: `<digits>@s.whatsapp.net` or `<digits>@lid`.
    pub fn jid(&self) -> String {
        match self {
            ContactId::Phone(phone) => phone.jid(),
            ContactId::Lid(lid) => lid.jid(),
        }
    }
}

/// Splits `user@server`; `None` when there is no `@` or either side is empty.
fn split_jid(raw: &str) -> Option<(&str, &str)> {
    let (user, server) = raw.split_once('@')?;
    if user.is_empty() || server.is_empty() || server.contains('@') {
        return None;
    }
    Some((user, server))
}

/// Drops `:device` and `_agent` suffixes (`5511999999999.0:12` becomes `5511999999999`).
fn strip_device(user: &str) -> &str {
    let end = user.find([':', '_', '.']).unwrap_or(user.len());
    &user[..end]
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

// --- whatsapp-rust's JIDs: the edge where typed identifiers meet the wire ---------------------

impl PhoneNumber {
    /// The phone-number JID whatsapp-rust sends.
    pub fn to_wa(&self) -> WaJid {
        WaJid::pn(self.0.as_str())
    }
}

impl Lid {
    /// The LID JID whatsapp-rust sends.
    pub fn to_wa(&self) -> WaJid {
        WaJid::lid(self.0.as_str())
    }
}

impl GroupJid {
    /// The group JID whatsapp-rust sends.
    pub fn to_wa(&self) -> WaJid {
        WaJid::group(self.0.as_str())
    }

    /// A group as a stanza attribute names it: `<id>@g.us`, or the bare id some answers carry.
    pub fn from_wire(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw.contains('@') {
            return Self::parse(raw).ok();
        }
        Self::parse(&format!("{raw}@{GROUP_SERVER}")).ok()
    }

    /// A group JID as WhatsApp answered it; `None` for anything that is not a group.
    pub fn from_wa(jid: &WaJid) -> Option<Self> {
        if jid.server != Server::Group {
            return None;
        }
        Self::parse(&format!("{}@{GROUP_SERVER}", jid.user)).ok()
    }
}

impl ContactId {
    /// The user JID whatsapp-rust sends.
    pub fn to_wa(&self) -> WaJid {
        match self {
            ContactId::Phone(phone) => phone.to_wa(),
            ContactId::Lid(lid) => lid.to_wa(),
        }
    }

    /// A user JID as WhatsApp answered it (device suffix dropped); `None` for groups,
    /// broadcasts and anything else that is not a person.
    pub fn from_wa(jid: &WaJid) -> Option<Self> {
        let user = jid.user_base();
        if jid.is_lid() {
            Lid::from_digits(user).ok().map(ContactId::Lid)
        } else if jid.is_pn() {
            PhoneNumber::from_digits(user).ok().map(ContactId::Phone)
        } else {
            None
        }
    }

    /// A user JID as WhatsApp writes it in a stanza attribute (`123:4@s.whatsapp.net`).
    pub fn from_wire(raw: &str) -> Option<Self> {
        let (user, server) = split_jid(raw.trim())?;
        let user = strip_device(user);
        match server {
            PN_SERVER | LEGACY_PN_SERVER => {
                PhoneNumber::from_digits(user).ok().map(ContactId::Phone)
            }
            LID_SERVER => Lid::from_digits(user).ok().map(ContactId::Lid),
            _ => None,
        }
    }

    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            ContactId::Phone(phone) => Some(phone),
            ContactId::Lid(_) => None,
        }
    }

    pub fn lid(&self) -> Option<&Lid> {
        match self {
            ContactId::Lid(lid) => Some(lid),
            ContactId::Phone(_) => None,
        }
    }
}

/// Why a string is not the identifier that was expected. The messages are written for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must not be empty")]
    Empty,
    #[error("not a phone number, PN JID or LID")]
    NotAPhoneNumber,
    #[error("a phone number must have 10 to 15 digits")]
    PhoneLength,
    #[error("not a LID (digits@lid)")]
    NotALid,
    #[error("not a group JID (digits@g.us)")]
    NotAGroup,
    #[error("a group JID is not allowed here")]
    GroupNotAllowed,
    #[error("unknown JID server (expected s.whatsapp.net, c.us or lid)")]
    UnknownServer,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn phone(s: &str) -> ContactId {
        ContactId::Phone(PhoneNumber(s.to_owned()))
    }

    #[test]
    fn numbers_are_normalized_as_the_contract_says() {
        assert_eq!(
            PhoneNumber::parse("+55 11 88888-8888").map(|p| p.0),
            Ok("5511888888888".to_owned())
        );
        assert_eq!(
            PhoneNumber::parse("(555) 123.4567 890").map(|p| p.0),
            Ok("5551234567890".to_owned())
        );
        assert_eq!(
            PhoneNumber::parse("123456789"),
            Err(IdentifierError::PhoneLength)
        );
        assert_eq!(
            PhoneNumber::parse("1234567890123456"),
            Err(IdentifierError::PhoneLength)
        );
        assert_eq!(
            PhoneNumber::parse("++5511999999999"),
            Err(IdentifierError::NotAPhoneNumber)
        );
        assert_eq!(
            PhoneNumber::parse("55119999abcd"),
            Err(IdentifierError::NotAPhoneNumber)
        );
        assert_eq!(
            PhoneNumber::parse(""),
            Err(IdentifierError::NotAPhoneNumber)
        );
    }

    #[test]
    fn user_ids_in_every_accepted_form() {
        let expected = phone("5511999999999");
        for input in [
            "5511999999999",
            "+55 11 99999-9999",
            "5511999999999@s.whatsapp.net",
            "5511999999999@c.us",
            "5511999999999:12@s.whatsapp.net",
            " 5511999999999.0:3@s.whatsapp.net ",
        ] {
            assert_eq!(ContactId::parse(input), Ok(expected.clone()), "{input}");
        }
        assert_eq!(
            ContactId::parse("123456789012345@lid"),
            Ok(ContactId::Lid(Lid("123456789012345".to_owned())))
        );
        assert_eq!(
            ContactId::parse("123456789012345:7@lid").map(|u| u.jid()),
            Ok("123456789012345@lid".to_owned())
        );
    }

    #[test]
    fn user_ids_refuse_what_they_are_not() {
        assert_eq!(
            ContactId::parse("abc"),
            Err(IdentifierError::NotAPhoneNumber)
        );
        assert_eq!(ContactId::parse(" "), Err(IdentifierError::Empty));
        assert_eq!(
            ContactId::parse("123@g.us"),
            Err(IdentifierError::GroupNotAllowed)
        );
        assert_eq!(
            ContactId::parse("123@example.com"),
            Err(IdentifierError::UnknownServer)
        );
        assert_eq!(ContactId::parse("abc@lid"), Err(IdentifierError::NotALid));
        assert_eq!(
            ContactId::parse("@lid"),
            Err(IdentifierError::NotAPhoneNumber)
        );
        assert_eq!(
            ContactId::parse("12345@s.whatsapp.net"),
            Err(IdentifierError::PhoneLength)
        );
    }

    #[test]
    fn group_jids() {
        assert_eq!(
            GroupJid::parse("120363025246125486@g.us").map(|g| g.jid()),
            Ok("120363025246125486@g.us".to_owned())
        );
        assert!(GroupJid::parse("5511999999999-1609459200@g.us").is_ok());
        for bad in [
            "120363025246125486",
            "1203@s.whatsapp.net",
            "x@g.us",
            "-1@g.us",
            "1-@g.us",
        ] {
            assert_eq!(
                GroupJid::parse(bad),
                Err(IdentifierError::NotAGroup),
                "{bad}"
            );
        }
    }

    #[test]
    fn whatsapp_jids_convert_both_ways() {
        let lid = WaJid::lid("123456789012345");
        assert_eq!(
            ContactId::from_wa(&lid),
            Some(ContactId::Lid(Lid("123456789012345".to_owned())))
        );
        let device = WaJid::pn_device("5511999999999", 12);
        assert_eq!(ContactId::from_wa(&device), Some(phone("5511999999999")));
        assert_eq!(
            phone("5511999999999").to_wa().to_string(),
            "5511999999999@s.whatsapp.net"
        );
        assert_eq!(ContactId::from_wa(&WaJid::group("1203")), None);
        let group = WaJid::group("120363025246125486");
        assert_eq!(
            GroupJid::from_wa(&group).map(|g| g.to_wa().to_string()),
            Some("120363025246125486@g.us".to_owned())
        );
        assert_eq!(GroupJid::from_wa(&WaJid::pn("5511999999999")), None);
        assert_eq!(
            ContactId::from_wire("5511999999999:3@s.whatsapp.net"),
            Some(phone("5511999999999"))
        );
        assert_eq!(ContactId::from_wire("status@broadcast"), None);
        assert_eq!(
            GroupJid::from_wire("120363025246125486").map(|g| g.jid()),
            Some("120363025246125486@g.us".to_owned())
        );
        assert_eq!(
            GroupJid::from_wire("120363025246125486@g.us").map(|g| g.jid()),
            Some("120363025246125486@g.us".to_owned())
        );
        assert_eq!(GroupJid::from_wire("5511999999999@s.whatsapp.net"), None);
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(raw in "[+]?[0-9 ().-]{0,24}") {
            if let Ok(number) = PhoneNumber::parse(&raw) {
                prop_assert_eq!(PhoneNumber::parse(number.as_str()), Ok(number.clone()));
                prop_assert!((10..=15).contains(&number.as_str().len()));
            }
        }

        #[test]
        fn accepted_user_ids_round_trip_through_their_jid(raw in "\\PC{0,40}") {
            if let Ok(id) = ContactId::parse(&raw) {
                prop_assert_eq!(ContactId::parse(&id.jid()), Ok(id.clone()));
            }
        }

        #[test]
        fn every_valid_number_is_accepted_in_every_form(digits in "[1-9][0-9]{9,14}", device in 0u32..100) {
            let id = phone(&digits);
            prop_assert_eq!(ContactId::parse(&digits), Ok(id.clone()));
            prop_assert_eq!(ContactId::parse(&format!("+{digits}")), Ok(id.clone()));
            prop_assert_eq!(ContactId::parse(&format!("{digits}@c.us")), Ok(id.clone()));
            prop_assert_eq!(ContactId::parse(&format!("{digits}:{device}@s.whatsapp.net")), Ok(id));
        }

        #[test]
        fn group_parsing_round_trips(raw in "\\PC{0,40}") {
            if let Ok(group) = GroupJid::parse(&raw) {
                prop_assert_eq!(GroupJid::parse(&group.jid()), Ok(group.clone()));
            }
        }
    }
}
