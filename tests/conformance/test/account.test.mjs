// The account's pages through Baileys: profile pictures (read, removed), privacy settings, and
// app-state resyncs that bring the account's own push name and a contact saved on the phone
// (Baileys checks the patch and snapshot MACs itself).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sim } from '../lib/sim.mjs';
import { close, collect, eventually, pairByQr, pn } from '../lib/client.mjs';

const OWNER = '5511940000001';
let sim;
let sock;
let friend;
let stranger;
before(async () => {
  sim = await Sim.start();
  await sim.createAccount({ phone: OWNER, push_name: 'Owner' });
  friend = await sim.createAccount({ phone: '5511940000002', push_name: 'Friend' });
  stranger = await sim.createAccount({ phone: '5511940000003' });
  ({ sock } = await pairByQr(sim, OWNER));
});
after(async () => {
  if (sock) await close(sock);
  sim?.stop();
});

test('profilePictureUrl answers a picture set on the phone, and refuses one that is not set', async () => {
  const set = await sim.call('POST', `/accounts/${friend.phone}/picture`, {});
  const url = await sock.profilePictureUrl(pn(friend.phone), 'image');
  assert.ok(url.startsWith('https://'), url);
  assert.ok(url.includes(set.id), url);
  const preview = await sock.profilePictureUrl(pn(friend.phone), 'preview');
  assert.ok(preview.includes(set.id), preview);
  // WhatsApp answers 404 item-not-found; Baileys throws it.
  await assert.rejects(sock.profilePictureUrl(pn(stranger.phone), 'image'), /item-not-found|404/);
});

test('removeProfilePicture removes the own picture', async () => {
  await sim.call('POST', `/accounts/${OWNER}/picture`, {});
  assert.ok((await sock.profilePictureUrl(pn(OWNER), 'image')).startsWith('https://'));
  await sock.removeProfilePicture(pn(OWNER));
  await assert.rejects(sim.call('GET', `/pictures/${pn(OWNER)}`), (err) => err.status === 404);
});

test('fetchPrivacySettings and the update* calls read and change stored settings', async () => {
  const settings = await sock.fetchPrivacySettings(true);
  assert.equal(settings.last, 'all');
  assert.equal(settings.status, 'contacts');
  assert.equal(settings.groupadd, 'all');
  await sock.updateLastSeenPrivacy('contacts');
  await sock.updateGroupsAddPrivacy('contacts');
  await sock.updateReadReceiptsPrivacy('none');
  const stored = await sim.call('GET', `/accounts/${OWNER}/privacy`);
  assert.equal(stored.last, 'contacts');
  assert.equal(stored.groupadd, 'contacts');
  assert.equal(stored.readreceipts, 'none');
  const again = await sock.fetchPrivacySettings(true);
  assert.equal(again.last, 'contacts');
  assert.equal(again.readreceipts, 'none');
  // A value the category does not take is refused.
  await assert.rejects(sock.updateOnlinePrivacy('contacts'), /bad-request|400/);
});

test('resyncAppState of critical_block brings the account\'s own push name', async () => {
  // pair-success names only businesses: a plain account's name is in app state alone.
  await eventually('the app-state key share', async () => sock.authState.creds.myAppStateKeyId);
  await eventually('the push name', async () => {
    if (sock.authState.creds.me?.name === 'Owner') return true;
    try {
      await sock.resyncAppState(['critical_block'], false);
    } catch {
      return false;
    }
    return sock.authState.creds.me?.name === 'Owner';
  });
  assert.equal(sock.authState.creds.me.name, 'Owner');
});

test('resyncAppState brings a contact saved on the phone, with its LID', async () => {
  // The phone's app-state key reaches the companion after its pre-key upload.
  await eventually('the app-state key share', async () => sock.authState.creds.myAppStateKeyId);
  const added = await sim.call('POST', `/accounts/${OWNER}/contacts`, {
    phone: friend.phone,
    full_name: 'Friend Costa',
  });
  assert.equal(added.collection, 'critical_unblock_low');
  const upserts = collect(sock, 'contacts.upsert');
  await eventually('the resync', async () => {
    try {
      await sock.resyncAppState(['critical_unblock_low'], false);
    } catch {
      return false;
    }
    return upserts.find((c) => c.id === pn(friend.phone));
  });
  const contact = upserts.find((c) => c.id === pn(friend.phone));
  assert.equal(contact.name, 'Friend Costa');
  assert.equal(contact.lid, friend.lid_jid);
});
