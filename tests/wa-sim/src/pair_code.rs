//! Linking a companion with an 8-character pairing code instead of a QR code.

use std::sync::Arc;

use axum::http::StatusCode;
use wacore_binary::Node;

use crate::api::Paired;
use crate::control::ControlError;
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::Sim;

pub fn companion_request(_session: &mut Session, _iq: &Node, _reg: &Node) -> Answer {
    Answer::Error(501)
}

pub async fn phone_enters_code(
    _sim: &Arc<Sim>,
    _phone: &str,
    _code: &str,
) -> Result<axum::Json<Paired>, ControlError> {
    Err(ControlError(
        StatusCode::NOT_IMPLEMENTED,
        "pair code".to_owned(),
    ))
}
