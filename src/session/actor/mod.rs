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
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use whatsapp_rust::Client;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::types::events::Event;
use wuts_wa_store::WriteGate;

use super::caches::DeviceCaches;
use super::deps::SessionDeps;
use super::outbox::{self, Pending};
use super::reconnect::ReconnectSignal;
use super::state::{PairingCode, SessionError, SessionState, SessionStatus};
use crate::domain::{DeviceScope, EventKind, PhoneNumber};
use crate::store::sessions::{self as session_store, SessionRecord};

mod client;
mod events;

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

pub(crate) struct DeviceActor {
    pub(crate) scope: DeviceScope,
    pub(crate) deps: Arc<SessionDeps>,
    /// What lives with the device (shared with its handles).
    caches: Arc<DeviceCaches>,
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
    /// The running client's device record had no push name when it started (a pairing, or a
    /// record written before the name arrived), and no record with one has been written since:
    /// it is written at the next connect and when the name arrives.
    record_unnamed: bool,
    events_tx: mpsc::UnboundedSender<(u64, Arc<Event>)>,
    events_rx: mpsc::UnboundedReceiver<(u64, Arc<Event>)>,
    owns_lock: bool,
    /// The phone number of the pairing code being requested, to label the code event.
    pending_code_phone: Option<String>,
    /// Tells the client's transport that its next connection replaces an established one.
    reconnect: ReconnectSignal,
    /// When a temporary ban ends: the session connects again by itself then.
    retry_at: Option<tokio::time::Instant>,
    /// The session's state as the client's transport and HTTP client change it: a pairing
    /// client whose connection attempt failed is stopped (see [`Self::on_state_change`]).
    watched: watch::Receiver<SessionState>,
    /// Connection failures already acted on.
    seen_failures: u64,
}

impl DeviceActor {
    pub(crate) fn new(
        scope: DeviceScope,
        deps: Arc<SessionDeps>,
        state: Arc<watch::Sender<SessionState>>,
        client: watch::Sender<Option<Arc<Client>>>,
        caches: Arc<DeviceCaches>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let watched = state.subscribe();
        Self {
            scope,
            deps,
            caches,
            watched,
            seen_failures: 0,
            state,
            client,
            bot: None,
            gate: None,
            raw_nodes: None,
            generation: 0,
            record_unnamed: false,
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
                Ok(()) = self.watched.changed() => self.on_state_change().await,
                () = sleep_until_retry(self.retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    if self.status() == SessionStatus::Disconnected {
                        tracing::info!("temporary ban over; connecting again");
                        if let Err(err) = self.connect().await {
                            tracing::warn!(error = %err, "reconnecting after a ban failed");
                        }
                    }
                }
            }
        }
        self.release_lock().await;
    }

    pub(super) fn status(&self) -> SessionStatus {
        self.state.borrow().status
    }

    /// A pairing client whose connection attempt failed (WhatsApp unreachable, or its version
    /// not fetched) is stopped: the caller waiting for a QR code or a pairing code has been told
    /// why, and nobody is pairing any more, so nothing keeps retrying in the background. The
    /// device is unpaired again with the cause in `last_error`; the next `GET /qr` starts over.
    /// A paired device keeps reconnecting (with whatsapp-rust's backoff) until WhatsApp answers.
    async fn on_state_change(&mut self) {
        let (failures, last_error) = {
            let state = self.watched.borrow_and_update();
            (state.connect_failures, state.last_error.clone())
        };
        if failures <= self.seen_failures {
            return;
        }
        self.seen_failures = failures;
        if self.bot.is_none() || self.status() != SessionStatus::Pairing {
            return;
        }
        tracing::warn!(
            error = last_error.as_deref().unwrap_or("cannot reach WhatsApp"),
            "pairing stopped: WhatsApp cannot be reached"
        );
        self.stop_client().await;
        self.state.send_modify(|s| {
            s.qr = None;
            s.pairing_code = None;
        });
        self.set_status(SessionStatus::Unpaired, |r| r.error = last_error)
            .await;
    }

    /// Returns true when the actor must end.
    async fn on_command(&mut self, command: Command) -> bool {
        match command {
            Command::Connect(reply) => {
                let result = self.connect().await;
                let _ = reply.send(result);
            }
            Command::Disconnect(reply) => {
                let closed = self.closed_event("requested");
                self.stop_client().await;
                self.transition(
                    SessionStatus::Disconnected,
                    |r| r.auto_connect = Some(false),
                    &closed,
                )
                .await;
                let _ = reply.send(Ok(()));
            }
            Command::Logout(reply) => {
                let result = match self.has_credentials().await {
                    Ok(false) if self.bot.is_none() => Err(SessionError::NotReady(
                        "the device is not paired".to_owned(),
                    )),
                    Err(err) => Err(err),
                    Ok(_) => self.logout(Some("requested")).await,
                };
                let _ = reply.send(result);
            }
            Command::StartQr { refresh, reply } => {
                let result = self.start_qr(refresh).await;
                let _ = reply.send(result);
            }
            Command::PairCode { phone, reply } => self.pair_code(phone, reply).await,
            Command::Delete(reply) => {
                let result = self.logout(None).await;
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
            .has_credentials(self.scope.device())
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
                tracing::error!(error = %reason, "cannot start the session");
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
        let failures = self.state.borrow().connect_failures;
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
            let result = request_pair_code(&client, &phone, timeout, &state, failures).await;
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

    /// Unlinks and erases the credentials; `reason` goes in the `device.logged_out` event (none
    /// when the device itself is going away).
    async fn logout(&mut self, reason: Option<&str>) -> Result<(), SessionError> {
        if let Some(bot) = &self.bot
            && self.status() == SessionStatus::Connected
        {
            let client = bot.client();
            if tokio::time::timeout(self.deps.config.wa_timeout, client.logout())
                .await
                .is_err()
            {
                tracing::warn!("logout request to WhatsApp timed out");
            }
        }
        self.stop_client().await;
        self.erase_credentials().await?;
        let events: Vec<Pending> = reason
            .map(|reason| Pending::new(EventKind::DeviceLoggedOut, json!({"reason": reason})))
            .into_iter()
            .collect();
        self.transition(
            SessionStatus::LoggedOut,
            |r| {
                r.auto_connect = Some(false);
                r.clear_jid = true;
            },
            &events,
        )
        .await;
        Ok(())
    }

    /// Erases the keys and everything learned under the account (block list, names).
    pub(super) async fn erase_credentials(&self) -> Result<(), SessionError> {
        self.deps
            .keys
            .erase(self.scope.device())
            .await
            .map_err(SessionError::Internal)?;
        let db = &self.deps.db;
        crate::store::blocklists::erase(db, &self.scope).await?;
        crate::store::identities::erase_names(db, &self.scope).await?;
        self.caches.blocklist.forget().await;
        Ok(())
    }

    /// Sets the status in the watch and writes it, with whatever else `patch` adds, to the
    /// device row.
    pub(super) async fn set_status(
        &self,
        status: SessionStatus,
        patch: impl FnOnce(&mut SessionRecord),
    ) {
        self.transition(status, patch, &[]).await;
    }

    /// [`Self::set_status`], and the events that say so, appended in the same transaction as
    /// the row's change.
    pub(super) async fn transition(
        &self,
        status: SessionStatus,
        patch: impl FnOnce(&mut SessionRecord),
        events: &[Pending],
    ) {
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
        let written = async {
            let mut tx = self.deps.db.begin().await?;
            session_store::record(&mut tx, &self.scope, &record).await?;
            outbox::append_in(&mut tx, &self.scope, events).await?;
            tx.commit().await?;
            Ok::<(), crate::store::StoreError>(())
        }
        .await;
        match written {
            Ok(()) if !events.is_empty() => self.deps.wakeup.committed(),
            Ok(()) => {}
            Err(err) => tracing::error!(error = %err, "recording session state failed"),
        }
    }

    /// `device.disconnected` with `reason`, if the session was connected (a session that was
    /// still connecting closes without one).
    pub(super) fn closed_event(&self, reason: &str) -> Vec<Pending> {
        if self.status() != SessionStatus::Connected {
            return Vec::new();
        }
        vec![Pending::new(
            EventKind::DeviceDisconnected,
            json!({"reason": reason}),
        )]
    }

    /// Appends events that change no state of the row.
    pub(super) async fn emit(&self, events: &[Pending]) {
        outbox::emit(&self.deps.db, &self.deps.wakeup, &self.scope, events).await;
    }
}

/// Longest a temporary ban is waited out before trying again (WhatsApp's bans last hours to days).
pub(super) const MAX_BAN_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long after a ban's announced end the session tries again.
pub(super) const BAN_RETRY_MARGIN: Duration = Duration::from_secs(1);

/// Sleeps until `at` (never resolves without one).
async fn sleep_until_retry(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pairing codes are valid for this long (WhatsApp's own limit is a few minutes).
pub(super) const PAIR_CODE_TTL_SECS: i64 = 180;

async fn request_pair_code(
    client: &Arc<Client>,
    phone: &PhoneNumber,
    timeout: Duration,
    state: &watch::Sender<SessionState>,
    failures: u64,
) -> Result<String, SessionError> {
    // The socket, or a failed connection attempt: no code can come without WhatsApp.
    let mut watched = state.subscribe();
    let unreachable = tokio::select! {
        socket = client.wait_for_socket(timeout) => {
            socket.map_err(|_| SessionError::Timeout)?;
            None
        }
        failed = watched.wait_for(|s| s.connect_failures > failures) => Some(
            failed
                .ok()
                .and_then(|s| s.last_error.clone())
                .unwrap_or_else(|| "cannot reach WhatsApp".to_owned()),
        ),
    };
    if let Some(reason) = unreachable {
        super::handle::stopped_pairing(&mut state.subscribe()).await;
        return Err(SessionError::Unreachable(reason));
    }
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
