//! One companion connection: WebSocket upgrade on `/ws/chat`, the Noise handshake, then
//! encrypted binary stanzas in both directions.
//!
//! Each connection is two tasks: this reader, which answers stanzas as they come, and a writer
//! that owns the socket's sending half and the write cipher. Everything else (the control API,
//! other connections) reaches the connection through its [`ConnHandle`].

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_websockets::{Message, WebSocketStream};
use wacore_binary::consts::WA_CONN_HEADER;
use wacore_binary::{Node, marshal::marshal, marshal::unmarshal_ref, util::unpack};
use wacore_noise::framing::{FrameDecoder, encode_frame};

use crate::noise::{Encryptor, Step};
use crate::session::Session;
use crate::sim::Sim;
use crate::world::{ConnHandle, Outbound};

/// Stanzas queued for one connection before it counts as stuck and is dropped.
const OUTBOUND_QUEUE: usize = 512;
/// How long the closing handshake may take before the socket is dropped anyway. Clients wait for
/// the server to close the TCP connection after the close frames (the `ws` library Baileys uses
/// waits 30 s otherwise).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

type Source = futures::stream::SplitStream<WebSocketStream<TcpStream>>;
type Sink = futures::stream::SplitSink<WebSocketStream<TcpStream>, Message>;

/// Reads whole frames off the socket, stripping the client's `WA` header once.
struct FrameReader {
    source: Source,
    decoder: FrameDecoder,
    header_pending: bool,
    pending: Vec<u8>,
}

impl FrameReader {
    fn new(source: Source) -> Self {
        Self {
            source,
            decoder: FrameDecoder::new(),
            header_pending: true,
            pending: Vec::new(),
        }
    }

    /// The next frame, or `None` when the client closed the connection.
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if !self.header_pending
                && let Some(frame) = self.decoder.decode_frame()
            {
                return Ok(Some(frame.to_vec()));
            }
            let Some(message) = self.source.next().await else {
                return Ok(None);
            };
            let message = message.context("reading the WebSocket")?;
            if message.is_close() {
                return Ok(None);
            }
            if !message.is_binary() {
                continue;
            }
            let payload: Bytes = message.into_payload().into();
            if self.header_pending {
                self.pending.extend_from_slice(&payload);
                if self.pending.len() < WA_CONN_HEADER.len() {
                    continue;
                }
                if self.pending[..WA_CONN_HEADER.len()] != WA_CONN_HEADER {
                    bail!("connection does not start with the WhatsApp header");
                }
                self.decoder.feed(&self.pending[WA_CONN_HEADER.len()..]);
                self.pending = Vec::new();
                self.header_pending = false;
            } else {
                self.decoder.feed(&payload);
            }
        }
    }
}

async fn send_frame(sink: &mut Sink, payload: &[u8]) -> Result<()> {
    let frame = encode_frame(payload, None)?;
    sink.send(Message::binary(frame)).await?;
    Ok(())
}

/// Serves one TCP connection until it closes.
pub async fn serve(sim: Arc<Sim>, stream: TcpStream) {
    if let Err(err) = serve_inner(sim, stream).await {
        tracing::debug!(error = %format!("{err:#}"), "connection ended");
    }
}

async fn serve_inner(sim: Arc<Sim>, stream: TcpStream) -> Result<()> {
    let (request, ws) = tokio_websockets::ServerBuilder::new()
        .accept(stream)
        .await
        .map_err(|e| anyhow!("WebSocket upgrade failed: {e}"))?;
    if request.uri().path() != "/ws/chat" {
        bail!("unexpected path {}", request.uri().path());
    }
    let (mut sink, source) = ws.split();
    let mut reader = FrameReader::new(source);

    let hello = reader
        .next()
        .await?
        .ok_or_else(|| anyhow!("closed before the handshake"))?;
    let established = match sim.identity.respond(&hello)? {
        Step::Done(server_hello, established) => {
            send_frame(&mut sink, &server_hello).await?;
            *established
        }
        Step::AwaitFinish(server_hello, pending) => {
            send_frame(&mut sink, &server_hello).await?;
            let finish = reader
                .next()
                .await?
                .ok_or_else(|| anyhow!("closed during the handshake"))?;
            pending.finish(&finish)?
        }
    };
    sim.stats.handshake(established.kind);

    let (mut decryptor, encryptor) = established.transport.split();
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let handle = ConnHandle {
        id: sim.next_connection_id(),
        tx,
    };
    let writer = handle.clone();
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    tokio::spawn(write_loop(sink, encryptor, rx, closed_tx));

    let mut session = Session::new(sim.clone(), handle);
    session
        .on_established(established.payload, established.client_static)
        .await;

    let result = loop {
        let frame = tokio::select! {
            frame = reader.next() => frame,
            _ = &mut closed_rx => break Ok(()),
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        };
        let node = match decryptor
            .decrypt(frame)
            .and_then(|plain| decode_node(&plain))
        {
            Ok(node) => node,
            Err(err) => break Err(err),
        };
        session.handle(node).await;
    };
    session.on_closed();
    // The writer holds the socket's other half: stop it, so the TCP connection closes now rather
    // than when the last handle to this connection goes away.
    writer.send(Outbound::Drop);
    result
}

fn decode_node(plaintext: &[u8]) -> Result<Node> {
    let unpacked = unpack(plaintext).map_err(|e| anyhow!("bad frame: {e}"))?;
    let node = unmarshal_ref(&unpacked).map_err(|e| anyhow!("bad stanza: {e}"))?;
    Ok(node.to_owned())
}

async fn write_loop(
    mut sink: Sink,
    mut encryptor: Encryptor,
    mut rx: mpsc::Receiver<Outbound>,
    closed: oneshot::Sender<()>,
) {
    while let Some(outbound) = rx.recv().await {
        let (node, then_close) = match outbound {
            Outbound::Node(node) => (node, false),
            Outbound::StreamError(node) => (node, true),
            Outbound::Drop => break,
        };
        let sent = async {
            let plaintext = marshal(&node).map_err(|e| anyhow!("encoding a stanza: {e}"))?;
            let ciphertext = encryptor.encrypt(&plaintext)?;
            send_frame(&mut sink, &ciphertext).await
        }
        .await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, "write failed");
            break;
        }
        if then_close {
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
            break;
        }
    }
    let _ = closed.send(());
}
