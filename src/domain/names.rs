//! Names and addresses typed in by clients: tenant names, e-mail addresses, device names.

use std::fmt;

/// Longest tenant or device name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest e-mail address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

fn parse_display_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("must be at most 100 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(name.to_owned())
}

macro_rules! display_name {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Trims the input and checks it is 1 to 100 printable characters.
            pub fn parse(raw: &str) -> Result<Self, &'static str> {
                parse_display_name(raw).map(Self)
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

display_name!(
    /// A tenant's name, unique across the gateway regardless of case.
    TenantName
);
display_name!(
    /// A device's display name, chosen by its owner.
    DeviceName
);

/// An e-mail address, unique per tenant regardless of case. Only its shape is checked: one `@`,
/// a non-empty local part, and a domain with a dot and no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims and checks the address.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim();
        if email.is_empty() {
            return Err("must not be empty");
        }
        if email.chars().count() > MAX_EMAIL_CHARS {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("not an e-mail address");
        };
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.');
        if local.is_empty()
            || !domain_ok
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("not an e-mail address");
        }
        Ok(Self(email.to_owned()))
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            TenantName::parse("  Acme Ltd ").map(|n| n.as_str().to_owned()),
            Ok("Acme Ltd".to_owned())
        );
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse(&"x".repeat(101)).is_err());
        assert!(TenantName::parse(&"é".repeat(100)).is_ok());
        assert!(DeviceName::parse("line\nbreak").is_err());
    }

    #[test]
    fn emails_need_a_shape() {
        for good in [
            "a@b.co",
            "first.last+tag@example.com",
            " padded@example.org ",
        ] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_is_idempotent(raw in "\\PC{0,120}") {
            if let Ok(name) = TenantName::parse(&raw) {
                prop_assert_eq!(TenantName::parse(name.as_str()), Ok(name.clone()));
            }
            if let Ok(email) = Email::parse(&raw) {
                prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            }
        }
    }
}
