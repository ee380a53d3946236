//! A plain whatsapp-rust client driven against wa-sim, with event waits bounded by deadlines.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wa_sim::{ControlClient, CreateAccount, WaSim};
use wacore::store::in_memory::InMemoryBackend;
use whatsapp_rust::Client;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::Event;

pub const EVENT_WAIT: Duration = Duration::from_secs(30);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// A running client and the events it emitted.
pub struct TestClient {
    pub bot: Option<BotHandle>,
    pub client: Arc<Client>,
    pub backend: Arc<InMemoryBackend>,
    events: mpsc::UnboundedReceiver<Arc<Event>>,
}

impl TestClient {
    /// Starts a client on `backend` (fresh for pairing, reused for a reconnect).
    pub async fn start(sim: &WaSim, backend: Arc<InMemoryBackend>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let bot = Bot::builder()
            .with_backend_arc(backend.clone())
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(sim.ws_url()))
            .with_version((2, 3000, 1_000_000))
            .skip_history_sync()
            .on_event(move |event, _client| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .build()
            .await
            .expect("client builds");
        let client = bot.client();
        Self {
            bot: Some(bot.spawn()),
            client,
            backend,
            events: rx,
        }
    }

    /// Waits for the first event that `pick` maps to a value.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("client stopped while waiting for {what}"));
            if let Some(value) = pick(&event) {
                return value;
            }
        }
    }

    pub async fn wait_connected(&mut self) {
        self.wait_for("Connected", |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await;
    }

    pub async fn next_qr(&mut self) -> String {
        self.wait_for("a QR code", |e| match e {
            Event::PairingQrCode(qr) => Some(qr.code.clone()),
            _ => None,
        })
        .await
    }

    pub async fn stop(&mut self) {
        if let Some(bot) = self.bot.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), bot.shutdown()).await;
        }
    }
}

/// Creates an account on the phone side.
pub async fn account(
    control: &ControlClient,
    phone: &str,
    push_name: Option<&str>,
) -> wa_sim::CreatedAccount {
    control
        .create_account(&CreateAccount {
            phone: phone.to_owned(),
            push_name: push_name.map(str::to_owned),
            ..Default::default()
        })
        .await
        .expect("account created")
}

/// A client paired to `phone` by QR and connected.
pub async fn paired_client(sim: &WaSim, phone: &str) -> TestClient {
    let mut client = TestClient::start(sim, Arc::new(InMemoryBackend::new())).await;
    let qr = client.next_qr().await;
    sim.control().scan_qr(phone, &qr).await.expect("QR scanned");
    client.wait_connected().await;
    client
}
