//! MEX (Meta's GraphQL over the WhatsApp socket, `w:mex`): the one query simulated is the
//! account's reach-out time-lock, and the control API puts an account under one.
//!
//! A MEX query is `<iq xmlns="w:mex" type="get" to="s.whatsapp.net"><query query_id=DOC_ID>
//! {"variables":{...}}</query></iq>`; the answer is `<result>` holding the GraphQL JSON
//! (`{"data":...}` or `{"errors":[{"message","extensions":{"error_code"}}]}`). whatsapp-rust
//! `wacore/src/iq/mex.rs` `MexQuerySpec` (reads `<result>` bytes or text, treats an error with
//! `error_code` as fatal and one naming a doc id as a stale persisted query).
//!
//! The reach-out time-lock: doc id `23983697327930364` (`WAWebMexFetchReachoutTimelockJobQuery`,
//! whatsapp-rust `wacore/src/iq/mex_operations.rs` `fetch_reachout_timelock`,
//! `features/mex.rs` `fetch_reachout_timelock`), answered
//! `{"data":{"xwa2_fetch_account_reachout_timelock":{"is_active","time_enforcement_ends"
//! (unix seconds, as a string),"enforcement_type"}}}`. While an account is locked WhatsApp
//! refuses its first contacts with strangers with error 463; wa-sim gives that answer through a
//! fault (`{"kind":"error","xmlns":...,"code":463}`), the lock itself only through this query.
//!
//! Other doc ids are answered with a GraphQL error naming the unknown document, as a server
//! answers a persisted query it does not know.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::control::{ControlError, digits};
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::{Sim, now_secs};
use crate::stanza::{attr, child};
use crate::world::WorldState;

/// The persisted query of the reach-out time-lock.
pub const REACHOUT_TIMELOCK_DOC: &str = "23983697327930364";

/// `POST /accounts/{phone}/reachout-timelock`: lock the account for `seconds` (0 lifts it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetTimelock {
    pub seconds: u64,
}

/// An account's time-lock as the control API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimelockView {
    pub active: bool,
    /// When it ends (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// The lock's end, if the account is locked now.
pub fn lock_until(world: &WorldState, phone: &str) -> Option<u64> {
    world
        .reachout_locks
        .get(phone)
        .copied()
        .filter(|until| *until > now_secs())
}

fn result(body: serde_json::Value) -> Answer {
    Answer::Result(vec![
        NodeBuilder::new("result")
            .bytes(body.to_string().into_bytes())
            .build(),
    ])
}

pub fn answer(session: &mut Session, iq: &Node) -> Answer {
    let Some((phone, _)) = session.login.clone() else {
        return Answer::Error(401);
    };
    let Some(query) = child(iq, "query") else {
        return Answer::Error(400);
    };
    match attr(query, "query_id").as_deref() {
        Some(REACHOUT_TIMELOCK_DOC) => {
            let until = lock_until(&session.sim.world.lock(), &phone);
            let state = match until {
                Some(until) => json!({
                    "is_active": true,
                    "time_enforcement_ends": until.to_string(),
                    "enforcement_type": "DEFAULT",
                }),
                None => json!({ "is_active": false }),
            };
            result(json!({ "data": { "xwa2_fetch_account_reachout_timelock": state } }))
        }
        other => result(json!({
            "data": null,
            "errors": [{
                "message": format!("document not found: doc_id {}", other.unwrap_or_default()),
                "extensions": { "error_code": 400, "is_summary": true, "severity": "CRITICAL" },
            }],
        })),
    }
}

/// `POST /accounts/{phone}/reachout-timelock`.
pub async fn control_set(
    State(sim): State<Arc<Sim>>,
    Path(phone): Path<String>,
    axum::Json(request): axum::Json<SetTimelock>,
) -> Result<axum::Json<TimelockView>, ControlError> {
    let phone = digits(&phone);
    let mut world = sim.world.lock();
    if world.account(&phone).is_none() {
        return Err(ControlError(
            StatusCode::NOT_FOUND,
            "no such account".to_owned(),
        ));
    }
    if request.seconds == 0 {
        world.reachout_locks.remove(&phone);
    } else {
        world
            .reachout_locks
            .insert(phone.clone(), now_secs() + request.seconds);
    }
    let until = lock_until(&world, &phone);
    Ok(axum::Json(TimelockView {
        active: until.is_some(),
        until,
    }))
}
