//! The handle through which the rest of the gateway uses a device session.
//!
//! Clonable. Commands go to the actor over a bounded channel (full: `RATE_LIMITED`) with a
//! deadline; the state and the connected client are read from `watch`es, so "not connected" is
//! answered at once, without a round trip to the actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use whatsapp_rust::Client;

use super::actor::{Command, Reply};
use super::caches::DeviceCaches;
use super::deps::SessionConfig;
use super::pacing::Pacer;
use super::state::{PairingCode, PairingQr, SessionError, SessionState, SessionStatus};
use crate::domain::{DeviceId, DeviceScope, PhoneNumber, TenantId};
use crate::store::events::Wakeup;

/// Slack on top of the WhatsApp timeout for commands that also stop or start a client.
const COMMAND_SLACK: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct DeviceHandle {
    scope: DeviceScope,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<SessionState>,
    client: watch::Receiver<Option<Arc<Client>>>,
    wa_timeout: Duration,
    qr_wait: Duration,
    connect_wait: Duration,
    pacer: Arc<Pacer>,
    caches: Arc<DeviceCaches>,
    wakeup: Wakeup,
    usage: Arc<Usage>,
}

/// How requests use a session: when one last did, how many use it now, and whether it is
/// closed to them (it is being handed to another node).
#[derive(Default)]
struct Usage {
    /// Milliseconds on [`clock_ms`].
    used: AtomicU64,
    in_flight: AtomicUsize,
    closed: AtomicBool,
}

/// A request's use of a session; the session is not handed over while it lasts.
pub struct InUse(Arc<Usage>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The clock of [`DeviceHandle::touch`]: milliseconds since the first reading.
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl DeviceHandle {
    pub(crate) fn new(
        scope: DeviceScope,
        commands: mpsc::Sender<Command>,
        state: watch::Receiver<SessionState>,
        client: watch::Receiver<Option<Arc<Client>>>,
        config: &SessionConfig,
        caches: Arc<DeviceCaches>,
        wakeup: Wakeup,
    ) -> Self {
        Self {
            scope,
            commands,
            state,
            client,
            wa_timeout: config.wa_timeout,
            qr_wait: config.qr_wait,
            connect_wait: config.connect_wait,
            pacer: Arc::new(Pacer::new(config.pace)),
            caches,
            wakeup,
            usage: Arc::new(Usage {
                used: AtomicU64::new(clock_ms()),
                ..Usage::default()
            }),
        }
    }

    /// A request starts using the session; `None` once it is closed to requests.
    pub fn enter(&self) -> Option<InUse> {
        // Counted before the flag is read, and the flag set before the count is read (in
        // `close_to_requests`): a request either sees the flag or is waited for.
        self.usage.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_use = InUse(self.usage.clone());
        if self.usage.closed.load(Ordering::SeqCst) {
            return None;
        }
        self.usage.used.store(clock_ms(), Ordering::Relaxed);
        Some(in_use)
    }

    /// Whether the session is closed to requests (being handed over).
    pub fn closed_to_requests(&self) -> bool {
        self.usage.closed.load(Ordering::SeqCst)
    }

    /// Closes the session to new requests and waits, at most `within`, for those using it to
    /// finish, so that a hand-off stops the session under none.
    pub async fn close_to_requests(&self, within: Duration) {
        self.usage.closed.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + within;
        while self.usage.in_flight.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How long since a request last used the session (or since it started).
    pub fn idle_for(&self) -> Duration {
        let used = self.usage.used.load(Ordering::Relaxed);
        Duration::from_millis(clock_ms().saturating_sub(used))
    }

    /// Waits for this device's turn to make a sensitive WhatsApp call (number checks, resolve
    /// queries, participant changes), or answers `RATE_LIMITED` when too many already wait.
    pub async fn pace(&self) -> Result<(), SessionError> {
        self.pacer
            .wait()
            .await
            .map_err(|refused| SessionError::Paced {
                retry_after_secs: refused.retry_after.as_secs_f64().ceil().max(1.0) as u64,
            })
    }

    pub fn device_id(&self) -> DeviceId {
        self.scope.device()
    }

    /// The device with its tenant.
    pub fn scope(&self) -> DeviceScope {
        self.scope
    }

    /// What lives with the device while its session runs.
    pub fn caches(&self) -> &DeviceCaches {
        &self.caches
    }

    /// Wakes the delivery workers after events are committed.
    pub fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        self.state.borrow().clone()
    }

    /// The tenant the device belongs to.
    pub fn tenant(&self) -> TenantId {
        self.scope.tenant()
    }

    /// See [`SessionState::contacts_version`].
    pub fn contacts_version(&self) -> u64 {
        self.state.borrow().contacts_version
    }

    /// Whether the actor has stopped.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// How long one WhatsApp request may take.
    pub fn wa_timeout(&self) -> Duration {
        self.wa_timeout
    }

    /// The connected client, or `DEVICE_NOT_READY` at once.
    pub fn client(&self) -> Result<Arc<Client>, SessionError> {
        if let Some(client) = self.client.borrow().as_ref() {
            return Ok(client.clone());
        }
        let status = self.state.borrow().status;
        Err(SessionError::NotReady(format!(
            "the device is not connected (status: {})",
            status.as_str()
        )))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.commands.try_send(make(tx)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => SessionError::Busy,
            mpsc::error::TrySendError::Closed(_) => {
                SessionError::NotReady("the device session has stopped".to_owned())
            }
        })?;
        match tokio::time::timeout(self.wa_timeout * 2 + COMMAND_SLACK, rx).await {
            Err(_) => Err(SessionError::Timeout),
            Ok(Err(_)) => Err(SessionError::NotReady(
                "the device session has stopped".to_owned(),
            )),
            Ok(Ok(result)) => result,
        }
    }

    /// Starts connecting with stored credentials and returns without waiting.
    pub async fn start(&self) -> Result<(), SessionError> {
        self.call(Command::Connect).await
    }

    /// Connects with stored credentials and waits (briefly) for the connection; answers the
    /// status reached.
    pub async fn connect(&self) -> Result<SessionStatus, SessionError> {
        self.call(Command::Connect).await?;
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(
            self.connect_wait,
            state.wait_for(|s| s.status == SessionStatus::Connected),
        )
        .await;
        Ok(self.state.borrow().status)
    }

    /// Waits (at most `timeout`) until the session is no longer connecting.
    pub async fn wait_settled(&self, timeout: Duration) {
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(
            timeout,
            state.wait_for(|s| s.status != SessionStatus::Connecting),
        )
        .await;
    }

    pub async fn disconnect(&self) -> Result<(), SessionError> {
        self.call(Command::Disconnect).await
    }

    pub async fn logout(&self) -> Result<(), SessionError> {
        self.call(Command::Logout).await
    }

    pub(crate) async fn delete(&self) -> Result<(), SessionError> {
        self.call(Command::Delete).await
    }

    /// The current pairing QR code, starting pairing when needed. `cached`: it was already out.
    pub async fn qr(&self, refresh: bool) -> Result<(PairingQr, bool), SessionError> {
        let started = Utc::now();
        if !refresh && let Some(qr) = self.state.borrow().live_qr(started).cloned() {
            return Ok((qr, true));
        }
        let failures = self.state.borrow().connect_failures;
        self.call(|reply| Command::StartQr { refresh, reply })
            .await?;
        let mut state = self.state.clone();
        // A QR code, or a failed connection attempt: no QR code can come without WhatsApp.
        let settled = move |s: &SessionState| {
            s.connect_failures > failures
                || s.live_qr(Utc::now())
                    .is_some_and(|qr| !refresh || qr.generated_at >= started)
        };
        let outcome = match tokio::time::timeout(self.qr_wait, state.wait_for(settled)).await {
            Ok(Ok(s)) => match s.live_qr(Utc::now()) {
                Some(qr) if !refresh || qr.generated_at >= started => Ok((qr.clone(), false)),
                _ => Err(SessionError::Unreachable(
                    s.last_error
                        .clone()
                        .unwrap_or_else(|| "cannot reach WhatsApp".to_owned()),
                )),
            },
            Ok(Err(_)) => Err(SessionError::NotReady(
                "the device session has stopped".to_owned(),
            )),
            Err(_) => Err(SessionError::Timeout),
        };
        if matches!(outcome, Err(SessionError::Unreachable(_))) {
            stopped_pairing(&mut self.state.clone()).await;
        }
        outcome
    }

    /// A pairing code for `phone`. `cached`: the same code was already out for this number.
    /// (A failed attempt is answered once the actor has stopped pairing, as for [`Self::qr`].)
    pub async fn pair_code(&self, phone: PhoneNumber) -> Result<(PairingCode, bool), SessionError> {
        self.call(|reply| Command::PairCode { phone, reply }).await
    }

    /// Stops the session cleanly and waits for it.
    pub async fn shutdown(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }
}

/// After a failed connection attempt, waits (briefly) for the actor to stop the pairing client,
/// so that `/status` read right after the 504 already says `unpaired` with the cause.
pub(super) async fn stopped_pairing(state: &mut watch::Receiver<SessionState>) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        state.wait_for(|s| s.status != SessionStatus::Pairing),
    )
    .await;
}
