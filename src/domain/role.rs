//! Roles inside a tenant.

use serde::{Deserialize, Serialize};

/// What a user may do inside its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users and every device of the tenant.
    Admin,
    /// Every device of the tenant, no user management.
    Manager,
    /// Only the devices it owns.
    User,
}

impl Role {
    /// The name stored in the database and shown in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::User => "user",
        }
    }

    /// Parses the stored name. Unknown names are `None` (the schema's CHECK makes them impossible).
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    /// Whether this role sees and acts on every device of the tenant rather than only its own.
    pub fn sees_all_devices(self) -> bool {
        matches!(self, Role::Admin | Role::Manager)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_round_trip() {
        for role in [Role::Admin, Role::Manager, Role::User] {
            assert_eq!(Role::from_db(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_db("root"), None);
    }

    #[test]
    fn only_admins_and_managers_see_every_device() {
        assert!(Role::Admin.sees_all_devices());
        assert!(Role::Manager.sees_all_devices());
        assert!(!Role::User.sees_all_devices());
    }
}
