// An unmodified Baileys client pointed at wa-sim.
//
// Baileys verifies the Noise certificate chain against WhatsApp's root key, which wa-sim cannot
// sign with. Baileys reads that key from its exported `WA_CERT_DETAILS` constant at each
// handshake, so the suite sets `WA_CERT_DETAILS.PUBLIC_KEY` to wa-sim's own root key at runtime;
// the rest of the chain (the intermediate's signature over the leaf, the serials) is checked
// as against WhatsApp. No Baileys file is changed.
//
// wa-sim sends no history sync (it would come from the phone, end-to-end encrypted, and wa-sim's
// phones have no Signal sessions). On a first connection Baileys buffers every event for 20 s
// waiting for it, unless its public `shouldSyncHistoryMessage` option says history is not
// wanted; the suite says so.

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import makeWASocket, { WA_CERT_DETAILS, DisconnectReason, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';

export const EVENT_WAIT_MS = 20_000;

const logger = pino({ level: process.env.BAILEYS_LOG || 'silent' });

export async function authDir() {
  return mkdtemp(path.join(tmpdir(), 'wa-sim-conformance-'));
}

/** Waits for the first `name` event whose payload `pick` maps to something other than undefined. */
export function waitFor(sock, name, pick = (x) => x, ms = EVENT_WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.ev.off(name, listener);
      reject(new Error(`timed out after ${ms} ms waiting for ${name}`));
    }, ms);
    const listener = (payload) => {
      let value;
      try {
        value = pick(payload);
      } catch (err) {
        value = undefined;
      }
      if (value !== undefined && value !== false) {
        clearTimeout(timer);
        sock.ev.off(name, listener);
        resolve(value);
      }
    };
    sock.ev.on(name, listener);
  });
}

/** Collects every `name` event from now on. */
export function collect(sock, name) {
  const seen = [];
  sock.ev.on(name, (payload) => {
    if (Array.isArray(payload)) seen.push(...payload);
    else seen.push(payload);
  });
  return seen;
}

/** Polls `check` until it returns something truthy. */
export async function eventually(what, check, ms = EVENT_WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A Baileys socket on the credentials in `dir`, following WhatsApp's restart-after-pairing
 * (stream error 515) the way Baileys' own example does: by opening a new socket on the same
 * credentials. `onSocket` is told of each socket (for the QR and pairing-code steps).
 */
export async function connect(sim, dir, { onSocket } = {}) {
  WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;
  const { state, saveCreds } = await useMultiFileAuthState(dir);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the client never opened')), 40_000);
    const open = () => {
      const sock = makeWASocket({
        auth: state,
        waWebSocketUrl: sim.wsUrl,
        logger,
        markOnlineOnConnect: false,
        syncFullHistory: false,
        shouldSyncHistoryMessage: () => false,
        fireInitQueries: true,
      });
      sock.ev.on('creds.update', saveCreds);
      sock.ev.on('connection.update', (update) => {
        if (update.connection === 'open') {
          clearTimeout(timer);
          resolve(sock);
        } else if (update.connection === 'close') {
          const code = update.lastDisconnect?.error?.output?.statusCode;
          if (code === DisconnectReason.restartRequired) {
            open();
          } else {
            clearTimeout(timer);
            reject(update.lastDisconnect?.error ?? new Error(`closed with ${code}`));
          }
        }
      });
      onSocket?.(sock);
    };
    open();
  });
}

/** Pairs a fresh client with `phone` by QR: the phone scans what Baileys shows. */
export async function pairByQr(sim, phone, dir, onQr) {
  dir ??= await authDir();
  let scanned;
  const sock = await connect(sim, dir, {
    onSocket: (s) =>
      s.ev.on('connection.update', ({ qr }) => {
        if (qr && !scanned) {
          onQr?.(qr);
          scanned = sim.call('POST', '/pair/qr', { phone, qr });
        }
      }),
  });
  const paired = await scanned;
  return { sock, dir, paired };
}

/** Closes a socket without logging out (the credentials stay valid). */
export async function close(sock) {
  const closed = new Promise((resolve) => {
    sock.ev.on('connection.update', ({ connection }) => connection === 'close' && resolve());
    setTimeout(resolve, 3000);
  });
  sock.end(undefined);
  await closed;
}

export const pn = (phone) => `${phone}@s.whatsapp.net`;
