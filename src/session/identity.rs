//! Feeding the per-device identity store from what the session learns: push names, address-book
//! contacts (app state), business names. LID <-> phone-number pairs are stored by whatsapp-rust
//! itself through the key store; names are ours.

use whatsapp_rust::types::events::Event;

use super::pool::SessionDeps;
use crate::domain::DeviceId;
use crate::store::identities::{self, NameUpdate};

/// Records the names an event carries.
pub(crate) async fn record_event(deps: &SessionDeps, device: DeviceId, event: &Event) {
    let update = match event {
        Event::PushNameUpdate(update) => NameUpdate {
            jid: update.jid.to_non_ad_string(),
            push_name: Some(update.new_push_name.clone()),
            ..NameUpdate::default()
        },
        Event::ContactUpdate(update) => NameUpdate {
            jid: update.jid.to_non_ad_string(),
            full_name: update.action.full_name.clone(),
            first_name: update.action.first_name.clone(),
            ..NameUpdate::default()
        },
        Event::BusinessStatusUpdate(update) => match &update.verified_name {
            Some(name) => NameUpdate {
                jid: update.jid.to_non_ad_string(),
                business_name: Some(name.clone()),
                ..NameUpdate::default()
            },
            None => return,
        },
        _ => return,
    };
    if update.is_empty() {
        return;
    }
    if let Err(err) = identities::record_names(&deps.db, device, &[update]).await {
        tracing::warn!(device_id = %device, error = %err, "recording contact names failed");
    }
}
