//! A WhatsApp user as the gateway answers it: both halves of its identity where known (phone
//! number and LID) and the names learned for it.

use super::jid::{ContactId, Lid, PhoneNumber};

/// Names known for a user. Empty fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub push_name: Option<String>,
    pub business_name: Option<String>,
}

impl Names {
    /// Fills what `self` lacks from `other`.
    pub fn merge(&mut self, other: &Names) {
        for (into, from) in [
            (&mut self.full_name, &other.full_name),
            (&mut self.first_name, &other.first_name),
            (&mut self.push_name, &other.push_name),
            (&mut self.business_name, &other.business_name),
        ] {
            if into.is_none() {
                into.clone_from(from);
            }
        }
    }
}

/// One user with both halves of its identity where known, and its names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub phone: Option<PhoneNumber>,
    pub lid: Option<Lid>,
    pub names: Names,
}

impl From<ContactId> for Identity {
    /// The half of the identity one identifier gives.
    fn from(id: ContactId) -> Self {
        match id {
            ContactId::Phone(phone) => Self::new(Some(phone), None),
            ContactId::Lid(lid) => Self::new(None, Some(lid)),
        }
    }
}

impl Identity {
    pub fn new(phone: Option<PhoneNumber>, lid: Option<Lid>) -> Self {
        Self {
            phone,
            lid,
            names: Names::default(),
        }
    }

    /// The JID to show: the phone-number JID when the number is known, else the LID JID.
    pub fn jid(&self) -> Option<String> {
        match (&self.phone, &self.lid) {
            (Some(phone), _) => Some(phone.jid()),
            (None, Some(lid)) => Some(lid.jid()),
            (None, None) => None,
        }
    }

    /// `<digits>@s.whatsapp.net`, when the number is known.
    pub fn pn_jid(&self) -> Option<String> {
        self.phone.as_ref().map(PhoneNumber::jid)
    }

    /// `<digits>@lid`, when the LID is known.
    pub fn lid_jid(&self) -> Option<String> {
        self.lid.as_ref().map(Lid::jid)
    }

    /// The phone number's digits, when known.
    pub fn phone_digits(&self) -> Option<String> {
        self.phone.as_ref().map(|p| p.as_str().to_owned())
    }

    /// Whether `other` names the same user (by number or by LID).
    pub fn same_user(&self, other: &Identity) -> bool {
        (self.phone.is_some() && self.phone == other.phone)
            || (self.lid.is_some() && self.lid == other.lid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_jid_prefers_the_phone_number() {
        let phone = PhoneNumber::from_digits("5511999990000").ok();
        let lid = Lid::from_digits("123456789").ok();
        let both = Identity::new(phone.clone(), lid.clone());
        assert_eq!(both.jid().as_deref(), Some("5511999990000@s.whatsapp.net"));
        assert_eq!(both.lid_jid().as_deref(), Some("123456789@lid"));
        let lid_only = Identity::new(None, lid);
        assert_eq!(lid_only.jid().as_deref(), Some("123456789@lid"));
        assert!(both.same_user(&lid_only));
        assert_eq!(Identity::default().jid(), None);
        assert!(!Identity::default().same_user(&Identity::default()));
    }

    #[test]
    fn merging_names_keeps_what_is_there() {
        let mut names = Names {
            push_name: Some("Ana".to_owned()),
            ..Names::default()
        };
        names.merge(&Names {
            push_name: Some("Other".to_owned()),
            full_name: Some("Ana Lima".to_owned()),
            ..Names::default()
        });
        assert_eq!(names.push_name.as_deref(), Some("Ana"));
        assert_eq!(names.full_name.as_deref(), Some("Ana Lima"));
    }
}
