//! Groups and communities (`w:g2`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use wacore_binary::Node;

use crate::api::{CreateGroup, GroupView};
use crate::control::ControlError;
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::Sim;

pub fn answer(_session: &mut Session, _iq: &Node, _kind: &str) -> Answer {
    Answer::Error(501)
}

pub async fn control_create(
    State(_sim): State<Arc<Sim>>,
    axum::Json(_request): axum::Json<CreateGroup>,
) -> Result<axum::Json<GroupView>, ControlError> {
    Err(ControlError(
        StatusCode::NOT_IMPLEMENTED,
        "groups".to_owned(),
    ))
}

pub async fn control_get(
    State(_sim): State<Arc<Sim>>,
    Path(_jid): Path<String>,
) -> Result<axum::Json<GroupView>, ControlError> {
    Err(ControlError(
        StatusCode::NOT_IMPLEMENTED,
        "groups".to_owned(),
    ))
}
