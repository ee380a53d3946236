//! Starting and stopping the device's whatsapp-rust client, and the ownership lock it runs
//! under.

use std::sync::Arc;
use std::time::Duration;

use whatsapp_rust::Client;
use whatsapp_rust::bot::Bot;
use wuts_wa_store::WriteGate;

use super::DeviceActor;
use super::events::{EVENTS, wanted};
use crate::session::reconnect::JitteredReconnects;
use crate::session::state::SessionError;

/// How long a clean client stop may take before it is aborted.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl DeviceActor {
    pub(super) async fn acquire_lock(&mut self) -> Result<(), SessionError> {
        if self.owns_lock {
            return Ok(());
        }
        match self.deps.ownership.acquire(self.scope.device()).await {
            Ok(true) => {
                self.owns_lock = true;
                Ok(())
            }
            Ok(false) => Err(SessionError::NotReady(
                "the device is served by another gateway node".to_owned(),
            )),
            Err(err) => Err(SessionError::Internal(err.into())),
        }
    }

    pub(super) async fn release_lock(&mut self) {
        if self.owns_lock {
            self.deps.ownership.release(self.scope.device()).await;
            self.owns_lock = false;
        }
    }

    /// Starts a new client (stopping any previous one). `pairing`: a client for an unpaired
    /// device, whose store is wiped first so that pairing starts from fresh keys.
    ///
    /// The previous client is stopped, and its store's gate retired, before the lock and a new
    /// lease are taken: each lease (epoch) has a client and a gate of its own, and no write of
    /// an earlier epoch's client lands once the device is served under the next one. Across
    /// nodes the database's fence refuses the writes of a node that does not hold the lease.
    pub(super) async fn start_client(&mut self, pairing: bool) -> Result<(), SessionError> {
        if !self.owns_lock {
            self.stop_client().await;
        }
        self.acquire_lock().await?;
        self.stop_client().await;
        if pairing {
            self.erase_credentials().await?;
        }
        self.generation += 1;
        let generation = self.generation;
        let events = self.events_tx.clone();
        let config = &self.deps.config;
        let transport = JitteredReconnects::new(
            whatsapp_rust::transport::TokioWebSocketTransportFactory::new()
                .with_url(config.wa_url.clone()),
            config.reconnect_jitter,
            self.reconnect.clone(),
            self.state.clone(),
        );
        let gate = Arc::new(WriteGate::new());
        let mut builder = Bot::builder()
            .with_backend_arc(
                self.deps
                    .keys
                    .backend(self.scope.device(), Some(gate.clone())),
            )
            .with_transport_factory(transport)
            .with_http_client(crate::session::reconnect::ObservedHttp::new(
                self.deps.http.clone(),
                self.state.clone(),
            ))
            .skip_history_sync()
            .with_wanted_pre_key_count(crate::session::deps::PRE_KEY_BATCH)
            .with_cache_config(crate::session::deps::session_cache_config())
            .with_device_props(
                wacore::store::DevicePropsOverride::new().with_os(config.device_os.clone()),
            )
            .on_event_for(EVENTS, move |event, _client| {
                if wanted(&event) {
                    let _ = events.send((generation, event));
                }
                std::future::ready(())
            });
        if let Some(version) = config.wa_version {
            builder = builder.with_version(version);
        }
        let built = builder.build().await;
        if built.is_err() {
            gate.retire().await;
        }
        let bot = built.map_err(|err| match &err {
            whatsapp_rust::bot::BotBuilderError::Store(store) => {
                match wuts_wa_store::seal::SealError::find(store) {
                    Some(seal) => SessionError::Keys(format!(
                        "the device's stored keys cannot be read: {seal}"
                    )),
                    None => SessionError::Internal(err.into()),
                }
            }
            _ => SessionError::Internal(err.into()),
        })?;
        self.record_unnamed = bot
            .client()
            .persistence_manager()
            .get_device_snapshot()
            .push_name
            .is_empty();
        self.raw_nodes = Some(bot.client().acquire_raw_node_forwarding());
        self.gate = Some(gate);
        self.bot = Some(bot.spawn());
        crate::metrics::session_started(pairing);
        Ok(())
    }

    /// Stops the running client cleanly (flushing its state), if any.
    pub(super) async fn stop_client(&mut self) {
        self.client.send_replace(None);
        self.raw_nodes = None;
        if let Some(bot) = self.bot.take() {
            let client = bot.client();
            if tokio::time::timeout(STOP_TIMEOUT, bot.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("client did not stop in time");
            }
            self.retire_store(&client).await;
            drop(client);
        }
        // Events of the stopped client are stale from here on.
        self.generation += 1;
    }

    /// Closes a stopped client's store: whatsapp-rust's saver flushes the device record after
    /// the run loop has ended, and such a late write must not land after the keys are erased
    /// nor over the state of the client that replaces this one. The gate waits for the writes
    /// in flight and refuses later ones; the device record is then written here, as the client
    /// left it, so that a refused last flush loses nothing.
    async fn retire_store(&mut self, client: &Client) {
        let Some(gate) = self.gate.take() else {
            return;
        };
        if tokio::time::timeout(STOP_TIMEOUT, gate.retire())
            .await
            .is_err()
        {
            tracing::warn!("the client's last store writes did not finish in time");
        }
        let device = client.persistence_manager().get_device_snapshot();
        let store = self.deps.keys.backend(self.scope.device(), None);
        if let Err(err) = store.save(&device).await {
            tracing::warn!(error = %err, "could not save the device record of a stopped client");
        }
    }
}
