// Groups through Baileys: create, metadata, participants, subject, description, settings, join
// requests, invite links (read, reset, preview, join), private invites after a privacy-refused
// add, disappearing messages and member add mode, leave; and the w:gp2 notifications of changes made by other accounts, which Baileys
// turns into `group-participants.update` and `groups.update` events.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sim } from '../lib/sim.mjs';
import { close, collect, eventually, pairByQr, pn } from '../lib/client.mjs';

let sim;
let sock;
const people = {};
before(async () => {
  sim = await Sim.start();
  for (const [name, phone] of [
    ['owner', '5511930000001'],
    ['ana', '5511930000002'],
    ['bia', '5511930000003'],
    ['caio', '5511930000004'],
  ]) {
    // The owner lets only contacts add it to groups: an add by someone else is a private invite.
    people[name] = await sim.createAccount({ phone, push_name: name, restrict_group_add: name === 'owner' });
  }
  ({ sock } = await pairByQr(sim, people.owner.phone));
});
after(async () => {
  if (sock) await close(sock);
  sim?.stop();
});

const participantIds = (metadata) => metadata.participants.map((p) => p.id).sort();

test('create, read, change and leave a group', async () => {
  const { ana, bia, owner } = people;
  const created = await sock.groupCreate('Team', [pn(ana.phone)]);
  assert.equal(created.subject, 'Team');
  assert.equal(created.addressingMode, 'lid');
  assert.equal(created.owner, owner.lid_jid);
  assert.equal(created.ownerPn, pn(owner.phone));
  assert.deepEqual(participantIds(created), [ana.lid_jid, owner.lid_jid].sort());
  const anaEntry = created.participants.find((p) => p.id === ana.lid_jid);
  assert.equal(anaEntry.phoneNumber, pn(ana.phone));
  const jid = created.id;

  const added = await sock.groupParticipantsUpdate(jid, [pn(bia.phone), pn('5511930009999')], 'add');
  assert.deepEqual(
    added.map((r) => r.status),
    ['200', '404'],
  );
  const promoted = await sock.groupParticipantsUpdate(jid, [pn(bia.phone)], 'promote');
  assert.equal(promoted[0].status, '200');
  const demoted = await sock.groupParticipantsUpdate(jid, [pn(bia.phone)], 'demote');
  assert.equal(demoted[0].status, '200');
  const removed = await sock.groupParticipantsUpdate(jid, [pn(ana.phone)], 'remove');
  assert.equal(removed[0].status, '200');

  await sock.groupUpdateSubject(jid, 'Team 2');
  await sock.groupUpdateDescription(jid, 'What we do');
  await sock.groupSettingUpdate(jid, 'announcement');
  await sock.groupSettingUpdate(jid, 'locked');

  const metadata = await sock.groupMetadata(jid);
  assert.equal(metadata.subject, 'Team 2');
  assert.equal(metadata.desc, 'What we do');
  assert.equal(metadata.announce, true);
  assert.equal(metadata.restrict, true);
  assert.deepEqual(participantIds(metadata), [bia.lid_jid, owner.lid_jid].sort());
  assert.equal(metadata.participants.find((p) => p.id === bia.lid_jid).admin, null);
  assert.equal(metadata.participants.find((p) => p.id === owner.lid_jid).admin, 'superadmin');

  // A second description change names the one it replaces.
  await sock.groupUpdateDescription(jid, 'What we do now');
  assert.equal((await sim.group(jid)).description, 'What we do now');

  const all = await sock.groupFetchAllParticipating();
  assert.ok(all[jid], 'the group is in the participating list');

  await sock.groupLeave(jid);
  // Baileys raises the IQ error with the code in `data`.
  await assert.rejects(sock.groupMetadata(jid), (err) => err.data === 403);
});

test('members hear changes made by other accounts', async () => {
  const { ana, bia, caio, owner } = people;
  const participantsUpdates = collect(sock, 'group-participants.update');
  const groupUpdates = collect(sock, 'groups.update');
  const upserts = collect(sock, 'groups.upsert');
  // The notifications as they came over the wire (Baileys emits every stanza on its socket).
  const wire = [];
  sock.ws.on('CB:notification,type:w:gp2', (node) => wire.push(node));

  // Ana creates a group with the owner in it: Baileys learns of it.
  const group = await sim.createGroup({ owner_phone: ana.phone, subject: 'Ana\'s', participants: [owner.phone] });
  const upsert = await eventually('groups.upsert', () => upserts.find((g) => g.id === group.jid));
  assert.equal(upsert.subject, 'Ana\'s');
  assert.equal(upsert.author, ana.lid_jid);

  const act = (actor, action, extra = {}) =>
    sim.groupAction(group.jid, { actor_phone: actor.phone, action, ...extra });
  const nextParticipants = (action) =>
    eventually(`group-participants.update ${action}`, () =>
      participantsUpdates.find((u) => u.id === group.jid && u.action === action),
    );

  await act(ana, 'add', { participants: [bia.phone] });
  let update = await nextParticipants('add');
  assert.equal(update.author, ana.lid_jid);
  // Known Baileys bug (7.0.0-rc14): `authorPn` is always undefined, because
  // `messages-recv.js` puts the actor's number in `key.participantAlt` and
  // `proto.WebMessageInfo.fromObject` drops that field (WAProto's MessageKey has none). The
  // wire carries it: check the notification itself.
  const addNotification = wire.find((n) => n.content?.[0]?.tag === 'add');
  assert.equal(addNotification.attrs.participant, ana.lid_jid);
  assert.equal(addNotification.attrs.participant_pn, pn(ana.phone));
  assert.equal(addNotification.attrs.addressing_mode, 'lid');
  assert.deepEqual(
    update.participants.map((p) => [p.id, p.phoneNumber]),
    [[bia.lid_jid, pn(bia.phone)]],
  );

  await act(ana, 'promote', { participants: [bia.phone] });
  update = await nextParticipants('promote');
  assert.deepEqual(update.participants.map((p) => p.id), [bia.lid_jid]);

  await act(bia, 'demote', { participants: [bia.phone] });
  update = await nextParticipants('demote');
  assert.equal(update.author, bia.lid_jid);

  // Known Baileys bug (7.0.0-rc14): while its event buffer is open, a second `groups.update`
  // for a group already in the buffer is dropped (`Utils/event-buffer.js` only assigns the
  // first), so back-to-back changes lose events. Each change is made once the previous one was
  // seen; the wire carries them all either way.
  const nextGroupUpdate = (key) =>
    eventually(`groups.update ${key}`, () =>
      groupUpdates.find((u) => u.id === group.jid && key in u),
    );
  await act(ana, 'subject', { subject: 'Renamed' });
  assert.equal((await nextGroupUpdate('subject')).subject, 'Renamed');
  await act(ana, 'description', { description: 'About us' });
  assert.equal((await nextGroupUpdate('desc')).desc, 'About us');
  await act(ana, 'announcement');
  assert.equal((await nextGroupUpdate('announce')).announce, true);
  await act(ana, 'locked');
  const locked = await nextGroupUpdate('restrict');
  assert.equal(locked.restrict, true);
  assert.equal(locked.author, ana.lid_jid);
  assert.deepEqual(
    wire.map((n) => n.content?.[0]?.tag),
    ['create', 'add', 'promote', 'demote', 'subject', 'description', 'announcement', 'locked'],
  );

  // Caio joins by the group's invite link: an add by himself.
  await act(caio, 'join_link');
  update = await eventually('the join', () =>
    participantsUpdates.find(
      (u) => u.id === group.jid && u.action === 'add' && u.participants.some((p) => p.id === caio.lid_jid),
    ),
  );
  assert.equal(update.author, caio.lid_jid);

  await act(ana, 'remove', { participants: [bia.phone] });
  update = await nextParticipants('remove');
  assert.deepEqual(update.participants.map((p) => p.id), [bia.lid_jid]);

  await act(caio, 'leave');
  update = await eventually('the leave', () =>
    participantsUpdates.find(
      (u) => u.id === group.jid && u.action === 'remove' && u.author === caio.lid_jid,
    ),
  );
  assert.deepEqual(update.participants.map((p) => p.id), [caio.lid_jid]);

  const view = await sim.group(group.jid);
  assert.deepEqual(view.participants.map((p) => p.phone).sort(), [ana.phone, owner.phone].sort());
});

test('join requests: an account asks, the admin sees and approves it', async () => {
  const { caio, owner } = people;
  const requests = collect(sock, 'group.join-request');
  const created = await sock.groupCreate('Approval', []);
  await sock.groupJoinApprovalMode(created.id, 'on');
  await sim.groupAction(created.id, { actor_phone: caio.phone, action: 'join_link' });
  const request = await eventually('group.join-request', () => requests.find((r) => r.id === created.id));
  assert.equal(request.participant, caio.lid_jid);
  assert.equal(request.participantPn, pn(caio.phone));
  assert.equal(request.action, 'created');

  const pending = await sock.groupRequestParticipantsList(created.id);
  assert.deepEqual(pending.map((p) => p.jid), [caio.lid_jid]);
  const answered = await sock.groupRequestParticipantsUpdate(created.id, [caio.lid_jid], 'approve');
  assert.deepEqual(answered.map((a) => a.status), ['200']);
  const metadata = await sock.groupMetadata(created.id);
  assert.deepEqual(participantIds(metadata), [caio.lid_jid, owner.lid_jid].sort());
  assert.equal(metadata.joinApprovalMode, true);
});

test('invite links: read, reset, preview and join', async () => {
  const { ana, bia, caio, owner } = people;
  const created = await sock.groupCreate('Linked', [pn(ana.phone)]);
  const code = await sock.groupInviteCode(created.id);
  assert.equal(code, (await sim.group(created.id)).invite_code);
  assert.equal(await sock.groupInviteCode(created.id), code, 'reading does not regenerate');
  const fresh = await sock.groupRevokeInvite(created.id);
  assert.notEqual(fresh, code);
  assert.equal(fresh, (await sim.group(created.id)).invite_code);
  // The old link is gone (whatsapp-rust `InviteInfoError::Gone`).
  await assert.rejects(sock.groupGetInviteInfo(code), (err) => err.data === 410);

  // Someone else's group: previewed without joining, then joined by its link.
  const theirs = await sim.createGroup({ owner_phone: bia.phone, subject: 'Bia\'s', participants: [caio.phone] });
  const info = await sock.groupGetInviteInfo(theirs.invite_code);
  assert.equal(info.id, theirs.jid);
  assert.equal(info.subject, 'Bia\'s');
  assert.equal(info.size, 2);
  assert.ok(!(await sim.group(theirs.jid)).participants.some((p) => p.phone === owner.phone));
  assert.equal(await sock.groupAcceptInvite(theirs.invite_code), theirs.jid);
  assert.ok((await sim.group(theirs.jid)).participants.some((p) => p.phone === owner.phone));
  await assert.rejects(sock.groupAcceptInvite('NoSuchCode0000000000AB'), (err) => err.data === 404);
});

test('a privacy-refused add answers a private invite, accepted with groupAcceptInviteV4', async () => {
  const { ana, owner } = people;
  const group = await sim.createGroup({ owner_phone: ana.phone, subject: 'Invite only', participants: [] });
  const refused = await sim.groupAction(group.jid, { actor_phone: ana.phone, action: 'add', participants: [owner.phone] });
  const [outcome] = refused.outcomes;
  assert.equal(outcome.error, '403');
  assert.equal(outcome.jid, owner.lid_jid);
  assert.equal(outcome.invite_code.length, 16);
  assert.ok(outcome.invite_expiration > Date.now() / 1000);
  const from = await sock.groupAcceptInviteV4(pn(ana.phone), {
    groupJid: group.jid,
    inviteCode: outcome.invite_code,
    inviteExpiration: outcome.invite_expiration,
  });
  assert.equal(from, group.jid);
  const view = await sim.group(group.jid);
  assert.ok(view.participants.some((p) => p.phone === owner.phone));
  assert.deepEqual(view.invited, []);
});

test('disappearing messages, member add mode and rejected join requests', async () => {
  const { bia } = people;
  const created = await sock.groupCreate('Settings', []);
  await sock.groupToggleEphemeral(created.id, 86400);
  assert.equal((await sim.group(created.id)).ephemeral, 86400);
  assert.equal((await sock.groupMetadata(created.id)).ephemeralDuration, 86400);
  await assert.rejects(sock.groupToggleEphemeral(created.id, 3600), (err) => err.data === 400);
  await sock.groupToggleEphemeral(created.id, 0);
  assert.equal((await sock.groupMetadata(created.id)).ephemeralDuration, undefined);

  await sock.groupMemberAddMode(created.id, 'admin_add');
  assert.equal((await sim.group(created.id)).all_member_add, false);
  assert.equal((await sock.groupMetadata(created.id)).memberAddMode, false);
  await sock.groupMemberAddMode(created.id, 'all_member_add');
  assert.equal((await sock.groupMetadata(created.id)).memberAddMode, true);

  await sock.groupJoinApprovalMode(created.id, 'on');
  await sim.groupAction(created.id, { actor_phone: bia.phone, action: 'request_join' });
  const pending = await sock.groupRequestParticipantsList(created.id);
  assert.deepEqual(pending.map((p) => [p.jid, p.phone_number]), [[bia.lid_jid, pn(bia.phone)]]);
  const rejected = await sock.groupRequestParticipantsUpdate(created.id, [bia.lid_jid], 'reject');
  assert.deepEqual(rejected.map((r) => r.status), ['200']);
  const again = await sock.groupRequestParticipantsUpdate(created.id, [bia.lid_jid], 'reject');
  assert.deepEqual(again.map((r) => r.status), ['404']);
  const view = await sim.group(created.id);
  assert.deepEqual(view.pending_requests, []);
  assert.ok(!view.participants.some((p) => p.phone === bia.phone));
});
