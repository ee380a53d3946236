//! A bare whatsapp-rust client paired through wa-sim: the reference for what one WhatsApp call
//! costs without the gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use wa_sim::ControlClient;

use super::stats::elapsed_ms;

/// The bare client, and the handle that stops it.
pub type BareClient = (Arc<whatsapp_rust::Client>, whatsapp_rust::bot::BotHandle);

/// Pairs a bare client to `phone` by QR; answers once it is connected.
pub async fn bare_client(
    ws_url: String,
    control: ControlClient,
    phone: String,
) -> Result<BareClient> {
    use whatsapp_rust::bot::Bot;
    use whatsapp_rust::transport::TokioWebSocketTransportFactory;
    use whatsapp_rust::types::events::Event;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arc<Event>>();
    let bot = Bot::builder()
        .with_backend_arc(Arc::new(wacore::store::in_memory::InMemoryBackend::new()))
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(&ws_url))
        .with_version((2, 3000, 1_000_000))
        .skip_history_sync()
        .on_event(move |event, _client| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .build()
        .await?;
    let client = bot.client();
    let handle = bot.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| anyhow!("the bare client never connected"))?
            .ok_or_else(|| anyhow!("the bare client stopped"))?;
        match &*event {
            Event::PairingQrCode(qr) => {
                control
                    .scan_qr(&phone, &qr.code)
                    .await
                    .map_err(|e| anyhow!("scan: {e:?}"))?;
            }
            Event::Connected(_) => return Ok((client, handle)),
            _ => {}
        }
    }
}

/// One block or unblock straight from the bare client, as the gateway sends it; answers its
/// latency in ms.
pub async fn direct_block_once(
    client: &Arc<whatsapp_rust::Client>,
    block: bool,
    lid_jid: &str,
    pn_jid: &str,
) -> Result<f64> {
    let lid = wuts_gateway::domain::ContactId::parse(lid_jid)
        .map_err(|e| anyhow!("LID {lid_jid}: {e}"))?;
    let lid = lid.lid().ok_or_else(|| anyhow!("{lid_jid} is not a LID"))?;
    let phone = wuts_gateway::domain::ContactId::parse(pn_jid)
        .map_err(|e| anyhow!("number {pn_jid}: {e}"))?;
    let sent = Instant::now();
    wuts_gateway::session::blocklist::send_change(
        client,
        Duration::from_secs(10),
        block,
        lid,
        phone.phone(),
    )
    .await
    .map_err(|e| anyhow!("direct block: {e}"))?;
    Ok(elapsed_ms(sent))
}
