//! The account's privacy settings: read, and changed one category at a time as WhatsApp takes
//! them (`privacy` IQ; whatsapp-rust `fetch_privacy_settings` / `set_privacy_setting`).

use std::collections::BTreeMap;

use wacore::iq::privacy::{PrivacyCategory, PrivacyValue};

use super::error::Error;
use crate::session::DeviceSession;
use crate::session::whatsapp::call;

/// Every setting: its name in WUTS's answer, WhatsApp's category, and the values WhatsApp
/// takes for it (`WAWebPrivacySettings`, as whatsapp-rust's `is_valid_value` lists them;
/// `stickers` as whatsmeow's types name them).
pub const SETTINGS: &[(&str, &str, &[&str])] = &[
    (
        "GroupAdd",
        "groupadd",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    (
        "LastSeen",
        "last",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    (
        "Status",
        "status",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    (
        "Profile",
        "profile",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    ("ReadReceipts", "readreceipts", &["all", "none"]),
    ("CallAdd", "calladd", &["all", "known", "contacts"]),
    ("Online", "online", &["all", "match_last_seen"]),
    ("Messages", "messages", &["all", "contacts"]),
    ("Defense", "defense", &["off", "on_standard"]),
    (
        "Stickers",
        "stickers",
        &["contacts", "contact_allowlist", "none"],
    ),
];

/// One change: a setting (by its WUTS name) and its new value, checked against [`SETTINGS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyChange {
    category: &'static str,
    value: String,
}

impl PrivacyChange {
    /// The change, if `name` is a setting and `value` one it takes; else the values it takes
    /// (or `None` for an unknown setting).
    pub fn parse(name: &str, value: &str) -> Result<Self, Option<&'static [&'static str]>> {
        let (_, category, values) = SETTINGS
            .iter()
            .find(|(wuts, _, _)| *wuts == name)
            .ok_or(None)?;
        if !values.contains(&value) {
            return Err(Some(values));
        }
        Ok(Self {
            category,
            value: value.to_owned(),
        })
    }
}

/// The settings by WUTS name, as WhatsApp answered them.
pub type PrivacySettings = BTreeMap<&'static str, String>;

pub struct Privacy<'a> {
    pub session: &'a DeviceSession,
}

impl Privacy<'_> {
    pub async fn get(&self) -> Result<PrivacySettings, Error> {
        let answer = call(
            "privacy_get",
            self.session.timeout(),
            self.session.client().fetch_privacy_settings(),
        )
        .await?;
        Ok(SETTINGS
            .iter()
            .filter_map(|(wuts, category, _)| {
                let value = answer.get_value(&PrivacyCategory::from(*category))?;
                Some((*wuts, value.as_str().to_owned()))
            })
            .collect())
    }

    /// Applies the changes in order (WhatsApp takes one category per IQ), then answers the
    /// settings as they now are.
    pub async fn set(&self, changes: &[PrivacyChange]) -> Result<PrivacySettings, Error> {
        for change in changes {
            call(
                "privacy_set",
                self.session.timeout(),
                self.session.client().set_privacy_setting(
                    PrivacyCategory::from(change.category),
                    PrivacyValue::from(change.value.as_str()),
                ),
            )
            .await?;
        }
        self.get().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_per_setting() {
        assert!(PrivacyChange::parse("LastSeen", "contacts").is_ok());
        assert!(PrivacyChange::parse("Online", "match_last_seen").is_ok());
        assert_eq!(
            PrivacyChange::parse("Online", "contacts"),
            Err(Some(&["all", "match_last_seen"][..]))
        );
        assert_eq!(PrivacyChange::parse("Nope", "all"), Err(None));
    }

    #[test]
    fn every_known_value_is_one_whatsapp_rust_accepts() {
        for (_, category, values) in SETTINGS {
            let category = PrivacyCategory::from(*category);
            for value in *values {
                assert!(
                    category.is_valid_value(&PrivacyValue::from(*value)),
                    "{category:?} {value}"
                );
            }
        }
    }
}
