// Contacts through Baileys: number checks, status, business profile, and the block list.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sim, iqCount } from '../lib/sim.mjs';
import { close, collect, eventually, pairByQr, pn } from '../lib/client.mjs';

let sim;
let sock;
let shop;
let plain;
before(async () => {
  sim = await Sim.start();
  await sim.createAccount({ phone: '5511920000001', push_name: 'Owner' });
  shop = await sim.createAccount({
    phone: '5511920000002',
    push_name: 'Shop',
    business_name: 'Corner Shop',
    status: 'Open 9 to 5',
    business_profile: {
      description: 'Groceries and more',
      category: 'Grocery store',
      email: 'shop@example.com',
      websites: ['https://shop.example.com'],
      address: '1 Main St',
    },
  });
  plain = await sim.createAccount({ phone: '5511920000003' });
  ({ sock } = await pairByQr(sim, '5511920000001'));
});
after(async () => {
  if (sock) await close(sock);
  sim?.stop();
});

test('onWhatsApp tells registered numbers from the others', async () => {
  const found = await sock.onWhatsApp('5511920000002', '5511920000003', '5511920009999');
  const exists = Object.fromEntries(found.map((r) => [r.jid, r.exists]));
  assert.equal(exists[pn('5511920000002')], true);
  assert.equal(exists[pn('5511920000003')], true);
  assert.notEqual(exists[pn('5511920009999')], true);
});

test('fetchStatus answers the about text, and none for a user without one', async () => {
  const answered = await sock.fetchStatus(pn(shop.phone), pn(plain.phone));
  const by = Object.fromEntries(answered.map((r) => [r.id, r.status]));
  assert.equal(by[pn(shop.phone)].status, 'Open 9 to 5');
  assert.ok(by[pn(shop.phone)].setAt.getTime() > 0);
  assert.equal(by[pn(plain.phone)].status, null);
});

test('getBusinessProfile answers a business and nothing for others', async () => {
  const profile = await sock.getBusinessProfile(pn(shop.phone));
  assert.equal(profile.wid, pn(shop.phone));
  assert.equal(profile.description, 'Groceries and more');
  assert.equal(profile.category, 'Grocery store');
  assert.equal(profile.email, 'shop@example.com');
  assert.deepEqual(profile.website, ['https://shop.example.com']);
  assert.equal(profile.address, '1 Main St');
  assert.equal(await sock.getBusinessProfile(pn(plain.phone)), undefined);
});

test('block, fetch the list, unblock', async () => {
  // Baileys resolves the LID of a number before it blocks it (a usync LID query).
  await sock.updateBlockStatus(pn(plain.phone), 'block');
  let account = await sim.account('5511920000001');
  assert.deepEqual(account.blocklist.items, [plain.lid_jid]);
  // The list is in PN addressing: Baileys reads each entry's `jid`, the phone number.
  assert.deepEqual(await sock.fetchBlocklist(), [pn(plain.phone)]);

  // By LID: an unblock needs nothing else, a block sends the number it now knows as pn_jid.
  await sock.updateBlockStatus(plain.lid_jid, 'unblock');
  assert.deepEqual(await sock.fetchBlocklist(), []);
  await sock.updateBlockStatus(plain.lid_jid, 'block');
  account = await sim.account('5511920000001');
  assert.deepEqual(account.blocklist.items, [plain.lid_jid]);

  await sock.updateBlockStatus(pn(plain.phone), 'unblock');
  assert.deepEqual(await sock.fetchBlocklist(), []);
  account = await sim.account('5511920000001');
  assert.deepEqual(account.blocklist.items, []);
});

test('a block made on the phone reaches Baileys as a blocklist update', async () => {
  const updates = collect(sock, 'blocklist.update');
  await sim.resetStats();
  await sim.phoneBlocklist('5511920000001', 'block', plain.jid);
  const update = await eventually('blocklist.update', () => updates.find((u) => u.type === 'add'));
  assert.deepEqual(update.blocklist, [plain.lid_jid]);
  // The notification is a signal to refetch; Baileys does not refetch by itself, the
  // application does, and gets the new entry with its phone number.
  assert.deepEqual(await sock.fetchBlocklist(), [pn(plain.phone)]);
  const stats = await sim.stats();
  assert.equal(iqCount(stats, 'blocklist', 'get'), 1);
  assert.ok((stats.stanzas.ack ?? 0) >= 1, 'Baileys acknowledged the notification');
});
