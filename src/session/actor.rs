//! The device actor: the one task that owns a device's whatsapp-rust client.
//!
//! It starts and stops the client (pairing, connecting, disconnecting, logging out), consumes
//! the client's lifecycle events, reflects them in the session state (a `watch` the handles
//! read) and in the `devices` row, and holds the device's ownership lock while a client runs.
//! WhatsApp requests do not pass through it: handles borrow the connected client from a `watch`,
//! so one slow request never holds up another.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use whatsapp_rust::Client;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::types::events::{Event, EventKind};
use wuts_wa_store::WriteGate;

use super::identity;
use super::pool::SessionDeps;
use super::reconnect::{JitteredReconnects, ReconnectSignal};
use super::state::{PairingCode, PairingQr, SessionError, SessionState, SessionStatus};
use super::whatsapp;
use crate::domain::{DeviceId, PhoneNumber, TenantId};
use crate::store::sessions::{self as session_store, SessionRecord};

/// The reply end of a command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

/// What a handle can ask of the actor.
pub(crate) enum Command {
    /// Connect with stored credentials (no QR).
    Connect(Reply<()>),
    /// Close the session, keep the credentials, and stay closed across restarts.
    Disconnect(Reply<()>),
    /// Unlink from WhatsApp and erase the credentials.
    Logout(Reply<()>),
    /// Make sure a pairing session is offering QR codes; `refresh` starts a new one.
    StartQr { refresh: bool, reply: Reply<()> },
    /// Ask WhatsApp for a pairing code for this phone number.
    PairCode {
        phone: PhoneNumber,
        reply: Reply<(PairingCode, bool)>,
    },
    /// Unlink, erase the credentials and stop for good (the device is being deleted).
    Delete(Reply<()>),
    /// Stop the client cleanly without changing what should happen at the next start.
    Shutdown(oneshot::Sender<()>),
}

/// Lifecycle events the actor listens to. Everything else the client emits is not its concern.
const EVENTS: &[EventKind] = &[
    EventKind::Connected,
    EventKind::Disconnected,
    EventKind::PairSuccess,
    EventKind::PairError,
    EventKind::LoggedOut,
    EventKind::PairingQrCode,
    EventKind::PairingCode,
    EventKind::PairingQrCodesExhausted,
    EventKind::ClientOutdated,
    EventKind::StreamReplaced,
    EventKind::TemporaryBan,
    EventKind::ConnectFailure,
    EventKind::PushNameUpdate,
    EventKind::ContactUpdate,
    EventKind::BusinessStatusUpdate,
    EventKind::RawNode,
];

/// Whether an event is worth the actor's attention. Raw stanzas are forwarded only for what
/// whatsapp-rust does not surface itself: block-list notifications, and the sender's push name
/// (`notify`) on incoming messages.
fn wanted(event: &Event) -> bool {
    match event {
        Event::RawNode(node) => {
            let node = node.get();
            match node.tag.as_ref() {
                "notification" => node.get_optional_child("blocklist").is_some(),
                "message" => node.get_attr("notify").is_some(),
                _ => false,
            }
        }
        _ => true,
    }
}

/// How long a clean client stop may take before it is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct DeviceActor {
    pub(crate) tenant: TenantId,
    pub(crate) device: DeviceId,
    pub(crate) deps: Arc<SessionDeps>,
    pub(crate) state: Arc<watch::Sender<SessionState>>,
    pub(crate) client: watch::Sender<Option<Arc<Client>>>,
    bot: Option<BotHandle>,
    /// The running client's store writes, retired when it stops (see `wuts_wa_store::WriteGate`).
    gate: Option<Arc<WriteGate>>,
    /// Keeps raw stanzas flowing to the event handler while the client runs (block-list
    /// notifications are read from them).
    raw_nodes: Option<whatsapp_rust::RawNodeLease>,
    /// Bumped for every client started, so that a stopped client's late events are ignored.
    generation: u64,
    events_tx: mpsc::UnboundedSender<(u64, Arc<Event>)>,
    events_rx: mpsc::UnboundedReceiver<(u64, Arc<Event>)>,
    owns_lock: bool,
    /// The phone number of the pairing code being requested, to label the code event.
    pending_code_phone: Option<String>,
    /// Tells the client's transport that its next connection replaces an established one.
    reconnect: ReconnectSignal,
    /// When a temporary ban ends: the session connects again by itself then.
    retry_at: Option<tokio::time::Instant>,
}

impl DeviceActor {
    pub(crate) fn new(
        tenant: TenantId,
        device: DeviceId,
        deps: Arc<SessionDeps>,
        state: Arc<watch::Sender<SessionState>>,
        client: watch::Sender<Option<Arc<Client>>>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            tenant,
            device,
            deps,
            state,
            client,
            bot: None,
            gate: None,
            raw_nodes: None,
            generation: 0,
            events_tx,
            events_rx,
            owns_lock: false,
            pending_code_phone: None,
            reconnect: ReconnectSignal::default(),
            retry_at: None,
        }
    }

    /// Serves commands and events until deleted, shut down, or every handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                biased;
                Some((generation, event)) = self.events_rx.recv() => {
                    if generation == self.generation {
                        self.on_event(&event).await;
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else {
                        self.stop_client().await;
                        break;
                    };
                    // Whatever the caller asks supersedes a pending retry.
                    self.retry_at = None;
                    if self.on_command(command).await {
                        break;
                    }
                }
                () = sleep_until_retry(self.retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    if self.status() == SessionStatus::Disconnected {
                        tracing::info!(device_id = %self.device, "temporary ban over; connecting again");
                        if let Err(err) = self.connect().await {
                            tracing::warn!(device_id = %self.device, error = %err, "reconnecting after a ban failed");
                        }
                    }
                }
            }
        }
        self.release_lock().await;
    }

    fn status(&self) -> SessionStatus {
        self.state.borrow().status
    }

    /// Returns true when the actor must end.
    async fn on_command(&mut self, command: Command) -> bool {
        match command {
            Command::Connect(reply) => {
                let result = self.connect().await;
                let _ = reply.send(result);
            }
            Command::Disconnect(reply) => {
                self.stop_client().await;
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.auto_connect = Some(false);
                })
                .await;
                let _ = reply.send(Ok(()));
            }
            Command::Logout(reply) => {
                let result = match self.has_credentials().await {
                    Ok(false) if self.bot.is_none() => Err(SessionError::NotReady(
                        "the device is not paired".to_owned(),
                    )),
                    Err(err) => Err(err),
                    Ok(_) => self.logout().await,
                };
                let _ = reply.send(result);
            }
            Command::StartQr { refresh, reply } => {
                let result = self.start_qr(refresh).await;
                let _ = reply.send(result);
            }
            Command::PairCode { phone, reply } => self.pair_code(phone, reply).await,
            Command::Delete(reply) => {
                let result = self.logout().await;
                let _ = reply.send(result);
                return true;
            }
            Command::Shutdown(done) => {
                self.stop_client().await;
                // Answer only once another node may take the device over.
                self.release_lock().await;
                let _ = done.send(());
                return true;
            }
        }
        false
    }

    async fn has_credentials(&self) -> Result<bool, SessionError> {
        self.deps
            .keys
            .has_credentials(self.device)
            .await
            .map_err(SessionError::Internal)
    }

    async fn connect(&mut self) -> Result<(), SessionError> {
        if self.bot.is_some() && self.status() != SessionStatus::Pairing {
            return Ok(());
        }
        if !self.has_credentials().await? {
            return Err(SessionError::NotReady(
                "the device is not paired: pair it with GET /qr or POST /paircode".to_owned(),
            ));
        }
        if let Err(err) = self.start_client(false).await {
            if let SessionError::Keys(reason) = &err {
                tracing::error!(device_id = %self.device, error = %reason, "cannot start the session");
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.error = Some(reason.clone());
                })
                .await;
            }
            return Err(err);
        }
        self.set_status(SessionStatus::Connecting, |r| {
            r.auto_connect = Some(true);
            r.clear_error = true;
        })
        .await;
        Ok(())
    }

    async fn start_qr(&mut self, refresh: bool) -> Result<(), SessionError> {
        if self.has_credentials().await? {
            return Err(SessionError::Conflict(
                "the device is already paired; log it out to pair again".to_owned(),
            ));
        }
        let pairing_running = self.bot.is_some() && self.status() == SessionStatus::Pairing;
        if pairing_running && !refresh {
            return Ok(());
        }
        self.state.send_modify(|s| s.qr = None);
        self.start_client(true).await?;
        self.set_status(SessionStatus::Pairing, |r| r.clear_error = true)
            .await;
        Ok(())
    }

    async fn pair_code(&mut self, phone: PhoneNumber, reply: Reply<(PairingCode, bool)>) {
        match self.has_credentials().await {
            Ok(true) => {
                let _ = reply.send(Err(SessionError::Conflict(
                    "the device is already paired; log it out to pair again".to_owned(),
                )));
                return;
            }
            Ok(false) => {}
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        }
        let cached = self.state.borrow().pairing_code.clone().filter(|code| {
            code.phone == phone.as_str()
                && code.expires_at > Utc::now() + chrono::Duration::seconds(5)
        });
        if let Some(code) = cached {
            let _ = reply.send(Ok((code, true)));
            return;
        }
        if !(self.bot.is_some() && self.status() == SessionStatus::Pairing) {
            if let Err(err) = self.start_client(true).await {
                let _ = reply.send(Err(err));
                return;
            }
            self.set_status(SessionStatus::Pairing, |r| r.clear_error = true)
                .await;
        }
        let Some(client) = self.bot.as_ref().map(BotHandle::client) else {
            let _ = reply.send(Err(SessionError::NotReady("no session".to_owned())));
            return;
        };
        self.pending_code_phone = Some(phone.as_str().to_owned());
        let state = self.state.clone();
        let timeout = self.deps.config.wa_timeout;
        // The request waits for the socket and a server round trip: off the actor's loop.
        tokio::spawn(async move {
            let result = request_pair_code(&client, &phone, timeout).await;
            let result = result.map(|code| {
                let pairing = PairingCode {
                    code,
                    phone: phone.as_str().to_owned(),
                    expires_at: Utc::now() + chrono::Duration::seconds(PAIR_CODE_TTL_SECS),
                };
                state.send_modify(|s| s.pairing_code = Some(pairing.clone()));
                (pairing, false)
            });
            let _ = reply.send(result);
        });
    }

    async fn logout(&mut self) -> Result<(), SessionError> {
        if let Some(bot) = &self.bot
            && self.status() == SessionStatus::Connected
        {
            let client = bot.client();
            if tokio::time::timeout(self.deps.config.wa_timeout, client.logout())
                .await
                .is_err()
            {
                tracing::warn!(device_id = %self.device, "logout request to WhatsApp timed out");
            }
        }
        self.stop_client().await;
        self.erase_credentials().await?;
        self.set_status(SessionStatus::LoggedOut, |r| {
            r.auto_connect = Some(false);
            r.clear_jid = true;
        })
        .await;
        Ok(())
    }

    /// Erases the keys and everything learned under the account (block list, names).
    async fn erase_credentials(&self) -> Result<(), SessionError> {
        self.deps
            .keys
            .erase(self.device)
            .await
            .map_err(SessionError::Internal)?;
        let db = &self.deps.db;
        crate::store::blocklists::erase(db, self.device)
            .await
            .map_err(|e| SessionError::Internal(e.into()))?;
        crate::store::identities::erase_names(db, self.device)
            .await
            .map_err(|e| SessionError::Internal(e.into()))
    }

    async fn acquire_lock(&mut self) -> Result<(), SessionError> {
        if self.owns_lock {
            return Ok(());
        }
        match self.deps.ownership.acquire(self.device).await {
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

    async fn release_lock(&mut self) {
        if self.owns_lock {
            self.deps.ownership.release(self.device).await;
            self.owns_lock = false;
        }
    }

    /// Starts a new client (stopping any previous one). `pairing`: a client for an unpaired
    /// device, whose store is wiped first so that pairing starts from fresh keys.
    async fn start_client(&mut self, pairing: bool) -> Result<(), SessionError> {
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
        );
        let gate = Arc::new(WriteGate::new());
        let mut builder = Bot::builder()
            .with_backend_arc(self.deps.keys.backend(self.device, Some(gate.clone())))
            .with_transport_factory(transport)
            .skip_history_sync()
            .with_cache_config(super::pool::session_cache_config())
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
        self.raw_nodes = Some(bot.client().acquire_raw_node_forwarding());
        self.gate = Some(gate);
        self.bot = Some(bot.spawn());
        crate::metrics::session_started(pairing);
        Ok(())
    }

    /// Stops the running client cleanly (flushing its state), if any.
    async fn stop_client(&mut self) {
        self.client.send_replace(None);
        self.raw_nodes = None;
        if let Some(bot) = self.bot.take() {
            let client = bot.client();
            if tokio::time::timeout(STOP_TIMEOUT, bot.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(device_id = %self.device, "client did not stop in time");
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
            tracing::warn!(device_id = %self.device, "the client's last store writes did not finish in time");
        }
        let device = client.persistence_manager().get_device_snapshot();
        let store = self.deps.keys.backend(self.device, None);
        if let Err(err) = store.save(&device).await {
            tracing::warn!(device_id = %self.device, error = %err, "could not save the device record of a stopped client");
        }
    }

    async fn on_event(&mut self, event: &Event) {
        match event {
            Event::PairingQrCode(qr) => {
                let now = Utc::now();
                let ttl = chrono::Duration::from_std(qr.timeout)
                    .unwrap_or_else(|_| chrono::Duration::seconds(60));
                self.state.send_modify(|s| {
                    s.qr = Some(PairingQr {
                        code: qr.code.clone(),
                        generated_at: now,
                        expires_at: now + ttl,
                    });
                });
                if self.status() != SessionStatus::Pairing {
                    self.set_status(SessionStatus::Pairing, |_| {}).await;
                }
            }
            Event::PairingCode(code) => {
                if let Some(phone) = self.pending_code_phone.clone() {
                    let ttl = chrono::Duration::from_std(code.timeout)
                        .unwrap_or_else(|_| chrono::Duration::seconds(PAIR_CODE_TTL_SECS));
                    self.state.send_modify(|s| {
                        s.pairing_code = Some(PairingCode {
                            code: code.code.clone(),
                            phone,
                            expires_at: Utc::now() + ttl,
                        });
                    });
                }
            }
            Event::PairSuccess(success) => {
                tracing::info!(device_id = %self.device, "device paired");
                crate::metrics::pairing_outcome("success");
                let jid = success.id.to_string();
                let lid = success.lid.to_non_ad_string();
                self.state.send_modify(|s| {
                    s.qr = None;
                    s.pairing_code = None;
                    s.jid = Some(jid.clone());
                    s.lid = Some(lid.clone());
                });
                self.set_status(SessionStatus::Connecting, |r| {
                    r.auto_connect = Some(true);
                    r.jid = Some(jid);
                    r.lid = Some(lid);
                    r.clear_error = true;
                })
                .await;
            }
            Event::PairError(err) => {
                tracing::warn!(device_id = %self.device, error = %err.error, "pairing failed");
                crate::metrics::pairing_outcome("error");
                self.stop_client().await;
                self.set_status(SessionStatus::Unpaired, |r| {
                    r.error = Some(format!("pairing failed: {}", err.error));
                })
                .await;
            }
            Event::PairingQrCodesExhausted(_) => {
                crate::metrics::pairing_outcome("expired");
                self.stop_client().await;
                self.state.send_modify(|s| s.qr = None);
                self.set_status(SessionStatus::Unpaired, |r| {
                    r.error = Some("no QR code was scanned in time".to_owned());
                })
                .await;
            }
            Event::Connected(_) => {
                let client = self.bot.as_ref().map(BotHandle::client);
                let Some(client) = client else { return };
                tracing::info!(device_id = %self.device, "connected");
                crate::metrics::connection_event("connected");
                let (jid, lid) = (
                    client.pn().map(|j| j.to_string()),
                    client.lid().map(|j| j.to_non_ad_string()),
                );
                self.state.send_modify(|s| {
                    s.jid = jid.clone().or(s.jid.take());
                    s.lid = lid.clone().or(s.lid.take());
                    s.last_seen = Some(Utc::now());
                    s.qr = None;
                    s.pairing_code = None;
                });
                self.client.send_replace(Some(client.clone()));
                self.set_status(SessionStatus::Connected, |r| {
                    r.jid = jid;
                    r.lid = lid;
                    r.seen = true;
                    r.clear_error = true;
                })
                .await;
                // Changes made while the device was away are not notified: read the list.
                self.refresh_blocklist(client);
            }
            Event::Disconnected(_) => {
                crate::metrics::connection_event("disconnected");
                if self.state.borrow().status == SessionStatus::Connected {
                    // An established session dropped: its reconnect waits a random moment.
                    self.reconnect.arm();
                }
                self.client.send_replace(None);
                self.state.send_modify(|s| s.last_seen = Some(Utc::now()));
                // whatsapp-rust reconnects by itself, with backoff.
                self.set_status(SessionStatus::Connecting, |r| r.seen = true)
                    .await;
            }
            Event::LoggedOut(out) => {
                tracing::warn!(device_id = %self.device, reason = ?out.reason, "logged out by WhatsApp");
                crate::metrics::connection_event("logged_out");
                self.stop_client().await;
                if let Err(err) = self.erase_credentials().await {
                    tracing::error!(device_id = %self.device, error = ?err, "erasing credentials failed");
                }
                self.set_status(SessionStatus::LoggedOut, |r| {
                    r.auto_connect = Some(false);
                    r.clear_jid = true;
                    r.error = Some(format!("logged out by WhatsApp ({:?})", out.reason));
                })
                .await;
            }
            Event::StreamReplaced(_) => {
                tracing::warn!(device_id = %self.device, "session replaced by another connection");
                crate::metrics::connection_event("replaced");
                self.stop_client().await;
                // Reconnecting would replace the other connection in turn, forever.
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.auto_connect = Some(false);
                    r.error =
                        Some("replaced by another connection with the same credentials".to_owned());
                })
                .await;
            }
            Event::TemporaryBan(ban) => {
                tracing::warn!(device_id = %self.device, code = ?ban.code, expire = ?ban.expire, "temporarily banned");
                crate::metrics::connection_event("temporary_ban");
                self.stop_client().await;
                // Try again once the ban is over (a little after, so as not to knock early).
                let wait =
                    ban.expire.to_std().unwrap_or_default().min(MAX_BAN_WAIT) + BAN_RETRY_MARGIN;
                self.retry_at = Some(tokio::time::Instant::now() + wait);
                // Still wanted: a restart during the ban tries once (and learns the ban again).
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.error = Some(format!(
                        "temporarily banned by WhatsApp ({:?}) for {} s",
                        ban.code,
                        ban.expire.num_seconds()
                    ));
                })
                .await;
            }
            Event::ClientOutdated(_) => {
                tracing::error!(
                    device_id = %self.device,
                    "WhatsApp says this client version is outdated: set WUTS_WA_VERSION to the current WhatsApp Web version"
                );
                crate::metrics::connection_event("client_outdated");
                self.stop_client().await;
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.error = Some(
                        "client version outdated; the operator must update WUTS_WA_VERSION"
                            .to_owned(),
                    );
                })
                .await;
            }
            Event::ConnectFailure(failure) => {
                tracing::warn!(device_id = %self.device, reason = ?failure.reason, "connection refused by WhatsApp");
                crate::metrics::connection_event("connect_failure");
                if !failure.reason.should_reconnect() {
                    // whatsapp-rust does not retry these; neither do we until asked to.
                    self.stop_client().await;
                    self.set_status(SessionStatus::Disconnected, |r| {
                        r.error = Some(format!("login refused by WhatsApp ({:?})", failure.reason));
                    })
                    .await;
                }
            }
            Event::PushNameUpdate(_) | Event::ContactUpdate(_) | Event::BusinessStatusUpdate(_) => {
                identity::record_event(&self.deps, self.device, event).await;
                self.contacts_changed();
            }
            Event::RawNode(node) if node.get().tag.as_ref() == "message" => {
                let client = self.bot.as_ref().map(BotHandle::client);
                identity::record_message_sender(
                    &self.deps,
                    self.device,
                    client,
                    &node.get().to_owned(),
                )
                .await;
                self.contacts_changed();
            }
            Event::RawNode(node) => {
                let Some(change) = whatsapp::parse_blocklist_notification(node.get()) else {
                    return;
                };
                let applied = match &change.changes {
                    Some(changes) => crate::store::blocklists::apply(
                        &self.deps.db,
                        self.device,
                        &change.dhash,
                        changes,
                    )
                    .await
                    .unwrap_or(false),
                    None => false,
                };
                if applied {
                    self.contacts_changed();
                } else if let Some(client) = self.bot.as_ref().map(BotHandle::client) {
                    self.refresh_blocklist(client);
                }
            }
            _ => {}
        }
    }

    /// Tells read-side caches that the device's contacts changed.
    fn contacts_changed(&self) {
        self.state.send_modify(|s| s.contacts_version += 1);
    }

    /// Reads the whole block list from WhatsApp into the snapshot, off the actor's loop.
    fn refresh_blocklist(&self, client: Arc<Client>) {
        let state = self.state.clone();
        let db = self.deps.db.clone();
        let device = self.device;
        let timeout = self.deps.config.wa_timeout;
        tokio::spawn(async move {
            match whatsapp::get_blocklist(&client, timeout).await {
                Ok(list) => {
                    let snapshot = crate::store::blocklists::Snapshot {
                        dhash: list.dhash,
                        items: list.items,
                    };
                    if let Err(err) = crate::store::blocklists::put(&db, device, &snapshot).await {
                        tracing::warn!(device_id = %device, error = %err, "block-list snapshot not stored");
                    }
                    state.send_modify(|s| s.contacts_version += 1);
                }
                Err(err) => {
                    tracing::debug!(device_id = %device, error = %err, "block list not read")
                }
            }
        });
    }

    /// Sets the status in the watch and writes it, with whatever else `patch` adds, to the
    /// device row.
    async fn set_status(&self, status: SessionStatus, patch: impl FnOnce(&mut SessionRecord)) {
        let mut record = SessionRecord::new(status);
        patch(&mut record);
        self.state.send_modify(|s| {
            s.status = status;
            if record.clear_jid {
                s.jid = None;
                s.lid = None;
            }
            if record.clear_error {
                s.last_error = None;
            }
            if let Some(error) = &record.error {
                s.last_error = Some(error.clone());
            }
        });
        crate::metrics::status_changed(status);
        if let Err(err) =
            session_store::record(&self.deps.db, self.tenant, self.device, &record).await
        {
            tracing::error!(device_id = %self.device, error = %err, "recording session state failed");
        }
    }
}

/// Longest a temporary ban is waited out before trying again (WhatsApp's bans last hours to days).
const MAX_BAN_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long after a ban's announced end the session tries again.
const BAN_RETRY_MARGIN: Duration = Duration::from_secs(1);

/// Sleeps until `at` (never resolves without one).
async fn sleep_until_retry(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pairing codes are valid for this long (WhatsApp's own limit is a few minutes).
const PAIR_CODE_TTL_SECS: i64 = 180;

async fn request_pair_code(
    client: &Arc<Client>,
    phone: &PhoneNumber,
    timeout: Duration,
) -> Result<String, SessionError> {
    client
        .wait_for_socket(timeout)
        .await
        .map_err(|_| SessionError::Timeout)?;
    let options = whatsapp_rust::pair_code::PairCodeOptions {
        phone_number: phone.as_str().to_owned(),
        ..Default::default()
    };
    match tokio::time::timeout(timeout, client.pair_with_code(options)).await {
        Err(_) => Err(SessionError::Timeout),
        Ok(Ok(code)) => Ok(code),
        Ok(Err(err)) => Err(SessionError::WhatsApp {
            code: 400,
            text: err.to_string(),
        }),
    }
}
