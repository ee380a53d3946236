//! # wa-sim: a WhatsApp server stand-in that speaks the real wire protocol
//!
//! An unmodified whatsapp-rust client connects to wa-sim exactly as it connects to WhatsApp:
//! WebSocket on `/ws/chat`, the `WA` connection header and length-prefixed frames, the Noise
//! handshake (XX, IK, XX-fallback), encrypted binary stanzas. wa-sim keeps a small world
//! (accounts with phone numbers, LIDs and names; their companion devices; block lists; groups
//! and communities) and answers the stanzas the WUTS gateway uses. A control API (HTTP JSON, on
//! a second address) lets tests act as the phone and read the world back. See the crate's
//! README for the API and for what is simplified.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = wa_sim::WaSim::start().await?;
//! let control = sim.control();
//! control.create_account(&wa_sim::CreateAccount { phone: "5511999990001".into(), ..Default::default() }).await?;
//! // point a whatsapp-rust client at sim.ws_url() ...
//! # Ok(()) }
//! ```

pub mod account_api;
pub mod api;
mod appstate;
mod blocklist;
mod business;
mod conn;
mod control;
pub mod faults;
mod groups;
mod iq;
mod key_share;
mod mex;
mod noise;
mod pair_code;
mod pairing;
mod picture;
mod privacy;
mod session;
mod sim;
mod stanza;
pub mod stats;
mod usync;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;

pub use account_api::*;
pub use api::*;
pub use faults::Fault;
pub use stats::StatsSnapshot;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running wa-sim: its two addresses, and the tasks serving them (stopped on drop).
pub struct WaSim {
    ws_url: String,
    control_url: String,
    root_public_key: [u8; 32],
    tasks: Vec<JoinHandle<()>>,
}

impl WaSim {
    /// Starts on two free loopback ports.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await
    }

    /// Starts on the given addresses (port 0 picks a free one).
    pub async fn start_on(listen: SocketAddr, control: SocketAddr) -> anyhow::Result<Self> {
        let sim = Arc::new(sim::Sim::new()?);
        let ws_listener = TcpListener::bind(listen).await?;
        let control_listener = TcpListener::bind(control).await?;
        let ws_url = format!("ws://{}/ws/chat", ws_listener.local_addr()?);
        let control_url = format!("http://{}", control_listener.local_addr()?);
        let root_public_key = sim.identity.root_public_key();

        let accept_sim = sim.clone();
        let accept = tokio::spawn(async move {
            loop {
                match ws_listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(conn::serve(accept_sim.clone(), stream));
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let router = control::router(sim);
        let control_task = tokio::spawn(async move {
            if let Err(err) = axum::serve(control_listener, router).await {
                tracing::error!(error = %err, "control API stopped");
            }
        });
        Ok(Self {
            ws_url,
            control_url,
            root_public_key,
            tasks: vec![accept, control_task],
        })
    }

    /// `ws://127.0.0.1:P/ws/chat`: where clients connect.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// `http://127.0.0.1:Q`: the control API.
    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    /// The public key of the root that signs wa-sim's Noise certificate chain: a client that
    /// verifies the chain against WhatsApp's root is given this key instead.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.root_public_key
    }

    /// [`Self::root_public_key`] as lowercase hex.
    pub fn root_public_key_hex(&self) -> String {
        self.root_public_key
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A client of the control API.
    pub fn control(&self) -> ControlClient {
        ControlClient::new(&self.control_url)
    }
}

impl Drop for WaSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
