//! Injected faults: slow answers, error answers and silence, by IQ namespace.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::digits;

/// A fault, as `POST /faults` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Close connections at once: all of them, or one account's companions.
    DropConnections {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<String>,
    },
    /// Answer IQs late (of one namespace, or all).
    Delay {
        ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        xmlns: Option<String>,
    },
    /// Answer IQs of a namespace with `<error code=...>`.
    Error { xmlns: String, code: u16 },
    /// Never answer IQs of a namespace.
    NoAnswer { xmlns: String },
    /// Refuse logins (of one account's companions, or all) with `<failure reason=...>`, as
    /// WhatsApp does for a temporary ban (402, with `code` and `expire` seconds), an outdated
    /// client (405) or a logged-out companion (401). Live connections are not touched: drop them
    /// to make them log in again.
    RefuseLogin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<String>,
        reason: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expire: Option<u64>,
    },
    /// Send live connections (of one account's companions, or all) a `stream:error` with this
    /// code and/or `<conflict type=...>`, then close them. Happens once; nothing stays active.
    StreamError {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conflict: Option<String>,
    },
}

/// How a login is refused: the `<failure>` attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRefusal {
    pub reason: u16,
    pub code: Option<u16>,
    pub expire: Option<u64>,
}

/// What the faults say about one IQ.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IqFault {
    pub delay: Option<Duration>,
    pub error: Option<u16>,
    pub silent: bool,
}

#[derive(Default)]
pub struct Faults {
    active: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn add(&self, fault: Fault) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fault);
    }

    pub fn clear(&self) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn list(&self) -> Vec<Fault> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How a login of `phone`'s companion is refused, if it is.
    pub fn login_refusal(&self, phone: &str) -> Option<LoginRefusal> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find_map(|active| match active {
                Fault::RefuseLogin {
                    phone: scope,
                    reason,
                    code,
                    expire,
                } if scope.as_deref().is_none_or(|s| digits(s) == phone) => Some(LoginRefusal {
                    reason: *reason,
                    code: *code,
                    expire: *expire,
                }),
                _ => None,
            })
    }

    /// The faults that apply to an IQ of `xmlns`. Keep-alive pings are never affected, so a
    /// fault on one namespace does not also look like a dead connection.
    pub fn for_iq(&self, xmlns: &str) -> IqFault {
        let mut fault = IqFault::default();
        if xmlns == "w:p" {
            return fault;
        }
        for active in self.active.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            match active {
                Fault::Delay { ms, xmlns: scope }
                    if scope.as_deref().is_none_or(|s| s == xmlns) =>
                {
                    fault.delay = Some(Duration::from_millis(*ms));
                }
                Fault::Error { xmlns: scope, code } if scope == xmlns => fault.error = Some(*code),
                Fault::NoAnswer { xmlns: scope } if scope == xmlns => fault.silent = true,
                _ => {}
            }
        }
        fault
    }
}
