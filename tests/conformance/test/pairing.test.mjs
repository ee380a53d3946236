// Linking an unmodified Baileys client to wa-sim: by QR (Baileys 7 shows it in the linked-devices
// link form, `https://wa.me/settings/linked_devices#ref,noise,identity,adv,platform`, as WhatsApp
// Web and whatsmeow do; the bare form whatsapp-rust shows is read too), by pairing code, and
// logging in again from the saved credentials.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sim } from '../lib/sim.mjs';
import { authDir, close, connect, eventually, pairByQr, pn } from '../lib/client.mjs';

let sim;
before(async () => {
  sim = await Sim.start();
});
after(() => sim?.stop());

const LINK_PREFIX = 'https://wa.me/settings/linked_devices#';

test('pairs by QR and logs in as the new companion', async () => {
  await sim.createAccount({ phone: '5511910000001', push_name: 'Ana' });
  let shown;
  const { sock, paired } = await pairByQr(sim, '5511910000001', undefined, (qr) => (shown = qr));
  try {
    assert.ok(shown.startsWith(LINK_PREFIX), `Baileys shows the link form: ${shown.slice(0, 40)}`);
    assert.equal(paired.device, 1);
    assert.equal(sock.user.id, '5511910000001:1@s.whatsapp.net');
    assert.equal(sock.user.lid, paired.lid);
    const account = await sim.account('5511910000001');
    assert.equal(account.companions.length, 1);
    assert.equal(account.companions[0].connected, true);
    // The phone shares an app-state key with its new companion over Signal, as WhatsApp's
    // primary does: Baileys decrypts it (a peer-message receipt, no retry) and keeps the key.
    const keyId = await eventually('the shared app-state key', () => sock.authState.creds.myAppStateKeyId);
    assert.ok(keyId.length > 0);
    const stats = await eventually('the key share receipt', async () => {
      const s = await sim.stats();
      return (s.receipts.peer_msg ?? 0) >= 1 ? s : undefined;
    });
    assert.equal(stats.key_shares, 1);
    assert.equal(stats.receipts.retry ?? 0, 0);
  } finally {
    await close(sock);
  }
});

test('the phone reads the bare QR form too', async () => {
  await sim.createAccount({ phone: '5511910000002' });
  let scanned;
  const sock = await connect(sim, await authDir(), {
    onSocket: (s) =>
      s.ev.on('connection.update', ({ qr }) => {
        if (qr && !scanned) {
          const bare = qr.startsWith(LINK_PREFIX) ? qr.slice(LINK_PREFIX.length) : qr;
          scanned = sim.call('POST', '/pair/qr', { phone: '5511910000002', qr: bare });
        }
      }),
  });
  try {
    const paired = await scanned;
    assert.equal(paired.jid, '5511910000002:1@s.whatsapp.net');
    assert.equal(sock.user.id, paired.jid);
  } finally {
    await close(sock);
  }
});

test('pairs by code', async () => {
  await sim.createAccount({ phone: '5511910000003', push_name: 'Caio' });
  let entered;
  const sock = await connect(sim, await authDir(), {
    onSocket: (s) =>
      s.ev.on('connection.update', async ({ qr }) => {
        if (!qr || entered) return;
        entered = (async () => {
          const code = await s.requestPairingCode('5511910000003');
          // Baileys sends companion_hello without waiting for the answer: retry until wa-sim
          // has recorded the request.
          return eventually('the pairing code to be accepted', async () => {
            try {
              return await sim.call('POST', '/pair/code', { phone: '5511910000003', code });
            } catch (err) {
              if (err.status === 404) return undefined;
              throw err;
            }
          });
        })();
      }),
  });
  try {
    const paired = await entered;
    assert.equal(paired.device, 1);
    assert.equal(sock.user.id, '5511910000003:1@s.whatsapp.net');
  } finally {
    await close(sock);
  }
});

test('logs in again from the saved credentials, without pairing', async () => {
  await sim.createAccount({ phone: '5511910000004' });
  const { sock, dir } = await pairByQr(sim, '5511910000004');
  await close(sock);
  const before = await sim.stats();
  const again = await connect(sim, dir, {
    onSocket: (s) =>
      s.ev.on('connection.update', ({ qr }) => assert.equal(qr, undefined, 'no QR on a login')),
  });
  try {
    const stats = await sim.stats();
    assert.equal(stats.logins, before.logins + 1);
    assert.equal(stats.pairings, before.pairings);
    assert.equal(again.user.id, '5511910000004:1@s.whatsapp.net');
    const account = await sim.account('5511910000004');
    assert.equal(account.companions.length, 1);
  } finally {
    await close(again);
  }
});

test('a companion the phone unlinked is logged out', async () => {
  await sim.createAccount({ phone: '5511910000005' });
  const { sock } = await pairByQr(sim, '5511910000005');
  const closed = new Promise((resolve) =>
    sock.ev.on('connection.update', (u) => u.connection === 'close' && resolve(u.lastDisconnect?.error)),
  );
  await sim.call('DELETE', '/accounts/5511910000005/companions/1');
  const error = await closed;
  assert.equal(error?.output?.statusCode, 401);
  assert.equal(pn('5511910000005'), '5511910000005@s.whatsapp.net');
});
