//! `PgStore` against the real PostgreSQL: the same operations give the same answers as
//! whatsapp-rust's in-memory backend (randomized sequences), devices never see each other's
//! data, erasing and deleting remove everything, and what is written survives a reconnect.
//! With a store key, the same holds and no key material is stored in clear.

#![expect(
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use sqlx::PgPool;
use support::new_device;
use uuid::Uuid;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::Device;
use wacore::store::error::StoreError;
use wacore::store::in_memory::InMemoryBackend;
use wacore::store::traits::*;
use wuts_test_db::TestDatabase;
use wuts_wa_store::seal::{MAGIC, SealError};
use wuts_wa_store::{PgStore, Retired, Sealer, StoreKey, WriteGate};

mod support {
    use super::*;

    /// Inserts a tenant, a user and a device, and answers the device id.
    pub async fn new_device(pool: &PgPool) -> Uuid {
        let (tenant, user, device) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
            .bind(tenant)
            .bind(format!("t-{tenant}"))
            .execute(pool)
            .await
            .expect("tenant");
        sqlx::query(
            "INSERT INTO users (id, tenant_id, email, role, token_hash) VALUES ($1, $2, 'a@b.example', 'admin', $3)",
        )
        .bind(user)
        .bind(tenant)
        .bind(user.as_bytes().to_vec())
        .execute(pool)
        .await
        .expect("user");
        sqlx::query("INSERT INTO devices (id, tenant_id, user_id, name) VALUES ($1, $2, $3, 'd')")
            .bind(device)
            .bind(tenant)
            .bind(user)
            .execute(pool)
            .await
            .expect("device");
        device
    }
}

// ---------------------------------------------------------------------------------------------
// The operations, over small key spaces so that overwrites, deletes and misses all happen.

const ADDRESSES: [&str; 4] = [
    "5511999999999@s.whatsapp.net",
    "5511999999999:3@s.whatsapp.net",
    "100000012345678@lid",
    "551188888888_1:2@s.whatsapp.net",
];
const USERS: [&str; 4] = ["5511999999999", "100000012345678", "551188888888", "55119"];
const NAMES: [&str; 2] = ["regular", "critical_block"];
const LIDS: [&str; 3] = ["100000000000001", "100000000000002", "100000000000003"];
const PNS: [&str; 3] = ["5511900000001", "5511900000002", "5511900000003"];

#[derive(Debug, Clone)]
enum Op {
    PutIdentity(usize, u8),
    PutIdentities(Vec<(usize, u8)>),
    LoadIdentity(usize),
    DeleteIdentity(usize),
    PutSession(usize, u8),
    PutSessions(Vec<(usize, u8)>),
    GetSession(usize),
    HasSession(usize),
    DeleteSession(usize),
    HasSignalState(usize),
    StorePrekey(u32, u8, bool),
    StorePrekeys(Vec<(u32, u8)>, bool),
    LoadPrekey(u32),
    LoadPrekeys(Vec<u32>),
    MarkUploaded(Vec<u32>),
    RemovePrekey(u32),
    MaxPrekey,
    StoreSigned(u32, u8),
    LoadSigned(u32),
    LoadAllSigned,
    RemoveSigned(u32),
    PutSenderKey(usize, u8),
    PutSenderKeys(Vec<(usize, u8)>),
    GetSenderKey(usize),
    DeleteSenderKey(usize),
    SetSyncKey(u8, u8),
    GetSyncKey(u8),
    LatestSyncKey,
    SetVersion(usize, u64),
    GetVersion(usize),
    PutMacs(usize, u64, Vec<(u8, u8)>),
    GetMac(usize, u8),
    GetMacs(usize, Vec<u8>),
    DeleteMacs(usize, Vec<u8>),
    ClearMacs(usize),
    SetSenderKeyStatus(usize, Vec<(usize, bool)>),
    GetSenderKeyDevices(usize),
    ClearSenderKeyDevices(usize),
    DeleteSenderKeyRows(Vec<usize>),
    ClearAllSenderKeyDevices,
    PutLid(usize, usize, i64),
    PutLids(Vec<(usize, usize, i64)>),
    GetLid(usize),
    GetPn(usize),
    AllLids,
    SaveBaseKey(usize, u8, u8),
    SameBaseKey(usize, u8, u8),
    DeleteBaseKey(usize, u8),
    UpdateDeviceList(usize, u8),
    UpdateDeviceLists(Vec<(usize, u8)>),
    GetDevices(usize),
    DeleteDevices(usize),
    PutGroup(usize, u8),
    GetGroup(usize),
    DeleteGroup(usize),
    PutTc(usize, u8, i64, Option<i64>),
    GetTc(usize),
    DeleteTc(usize),
    AllTc,
    ExpireTc(i64, i64),
    TouchTc(usize, i64),
    ReceivedTc(usize, u8, i64),
    StoreSent(usize, u8, u8),
    TakeSent(usize, u8),
    ExpireSent(bool),
    StorePending(usize, u8, u8),
    StorePendingBatch(Vec<(usize, u8, u8)>),
    GetPending(usize, u8),
    DeletePending(usize, u8),
    DeletePendingBatch(Vec<(usize, u8)>),
    ExpirePending(bool),
    PutSecrets(Vec<(usize, u8, u8, i64, i64)>),
    GetSecret(usize, u8),
    GetSecretWithTs(usize, u8),
    ExpireSecrets(i64),
    SaveDevice(usize),
    LoadDevice,
    DeviceExists,
}

fn idx(n: usize) -> impl Strategy<Value = usize> {
    0..n
}

fn op() -> impl Strategy<Value = Op> {
    let a = || idx(ADDRESSES.len());
    let small = || 1u32..6;
    prop_oneof![
        (a(), any::<u8>()).prop_map(|(i, k)| Op::PutIdentity(i, k)),
        prop::collection::vec((a(), any::<u8>()), 0..4).prop_map(Op::PutIdentities),
        a().prop_map(Op::LoadIdentity),
        a().prop_map(Op::DeleteIdentity),
        (a(), any::<u8>()).prop_map(|(i, k)| Op::PutSession(i, k)),
        prop::collection::vec((a(), any::<u8>()), 0..4).prop_map(Op::PutSessions),
        a().prop_map(Op::GetSession),
        a().prop_map(Op::HasSession),
        a().prop_map(Op::DeleteSession),
        idx(USERS.len()).prop_map(Op::HasSignalState),
        (small(), any::<u8>(), any::<bool>()).prop_map(|(i, r, u)| Op::StorePrekey(i, r, u)),
        (
            prop::collection::vec((small(), any::<u8>()), 0..4),
            any::<bool>()
        )
            .prop_map(|(k, u)| Op::StorePrekeys(k, u)),
        small().prop_map(Op::LoadPrekey),
        prop::collection::vec(small(), 0..4).prop_map(Op::LoadPrekeys),
        prop::collection::vec(small(), 0..4).prop_map(Op::MarkUploaded),
        small().prop_map(Op::RemovePrekey),
        Just(Op::MaxPrekey),
        (small(), any::<u8>()).prop_map(|(i, r)| Op::StoreSigned(i, r)),
        small().prop_map(Op::LoadSigned),
        Just(Op::LoadAllSigned),
        small().prop_map(Op::RemoveSigned),
        (a(), any::<u8>()).prop_map(|(i, r)| Op::PutSenderKey(i, r)),
        prop::collection::vec((a(), any::<u8>()), 0..4).prop_map(Op::PutSenderKeys),
        a().prop_map(Op::GetSenderKey),
        a().prop_map(Op::DeleteSenderKey),
        (0u8..3, any::<u8>()).prop_map(|(k, v)| Op::SetSyncKey(k, v)),
        (0u8..3).prop_map(Op::GetSyncKey),
        Just(Op::LatestSyncKey),
        (idx(NAMES.len()), 0u64..10).prop_map(|(n, v)| Op::SetVersion(n, v)),
        idx(NAMES.len()).prop_map(Op::GetVersion),
        (
            idx(NAMES.len()),
            0u64..10,
            prop::collection::vec((0u8..4, any::<u8>()), 0..4)
        )
            .prop_map(|(n, v, m)| Op::PutMacs(n, v, m)),
        (idx(NAMES.len()), 0u8..4).prop_map(|(n, i)| Op::GetMac(n, i)),
        (idx(NAMES.len()), prop::collection::vec(0u8..4, 0..4))
            .prop_map(|(n, i)| Op::GetMacs(n, i)),
        (idx(NAMES.len()), prop::collection::vec(0u8..4, 0..4))
            .prop_map(|(n, i)| Op::DeleteMacs(n, i)),
        idx(NAMES.len()).prop_map(Op::ClearMacs),
        (idx(2), prop::collection::vec((a(), any::<bool>()), 0..4))
            .prop_map(|(g, e)| Op::SetSenderKeyStatus(g, e)),
        idx(2).prop_map(Op::GetSenderKeyDevices),
        idx(2).prop_map(Op::ClearSenderKeyDevices),
        prop::collection::vec(a(), 0..3).prop_map(Op::DeleteSenderKeyRows),
        Just(Op::ClearAllSenderKeyDevices),
        (idx(LIDS.len()), idx(PNS.len()), 0i64..5).prop_map(|(l, p, t)| Op::PutLid(l, p, t)),
        prop::collection::vec((idx(LIDS.len()), idx(PNS.len()), 0i64..5), 0..4)
            .prop_map(Op::PutLids),
        idx(LIDS.len()).prop_map(Op::GetLid),
        idx(PNS.len()).prop_map(Op::GetPn),
        Just(Op::AllLids),
        (a(), 0u8..3, any::<u8>()).prop_map(|(a, m, k)| Op::SaveBaseKey(a, m, k)),
        (a(), 0u8..3, 0u8..3).prop_map(|(a, m, k)| Op::SameBaseKey(a, m, k)),
        (a(), 0u8..3).prop_map(|(a, m)| Op::DeleteBaseKey(a, m)),
        (idx(USERS.len()), 0u8..4).prop_map(|(u, d)| Op::UpdateDeviceList(u, d)),
        prop::collection::vec((idx(USERS.len()), 0u8..4), 0..4).prop_map(Op::UpdateDeviceLists),
        idx(USERS.len()).prop_map(Op::GetDevices),
        idx(USERS.len()).prop_map(Op::DeleteDevices),
        (idx(2), any::<u8>()).prop_map(|(g, b)| Op::PutGroup(g, b)),
        idx(2).prop_map(Op::GetGroup),
        idx(2).prop_map(Op::DeleteGroup),
        (a(), 0u8..3, 0i64..20, prop::option::of(0i64..20))
            .prop_map(|(j, t, ts, s)| Op::PutTc(j, t, ts, s)),
        a().prop_map(Op::GetTc),
        a().prop_map(Op::DeleteTc),
        Just(Op::AllTc),
        (0i64..20, 0i64..20).prop_map(|(t, s)| Op::ExpireTc(t, s)),
        (a(), 0i64..20).prop_map(|(j, s)| Op::TouchTc(j, s)),
        (a(), 0u8..3, 0i64..20).prop_map(|(j, t, ts)| Op::ReceivedTc(j, t, ts)),
        (a(), 0u8..3, any::<u8>()).prop_map(|(c, m, p)| Op::StoreSent(c, m, p)),
        (a(), 0u8..3).prop_map(|(c, m)| Op::TakeSent(c, m)),
        any::<bool>().prop_map(Op::ExpireSent),
        (a(), 0u8..3, any::<u8>()).prop_map(|(c, i, m)| Op::StorePending(c, i, m)),
        prop::collection::vec((a(), 0u8..3, any::<u8>()), 0..4).prop_map(Op::StorePendingBatch),
        (a(), 0u8..3).prop_map(|(c, i)| Op::GetPending(c, i)),
        (a(), 0u8..3).prop_map(|(c, i)| Op::DeletePending(c, i)),
        prop::collection::vec((a(), 0u8..3), 0..4).prop_map(Op::DeletePendingBatch),
        any::<bool>().prop_map(Op::ExpirePending),
        prop::collection::vec((a(), 0u8..3, any::<u8>(), 0i64..20, 0i64..20), 0..4)
            .prop_map(Op::PutSecrets),
        (a(), 0u8..3).prop_map(|(c, m)| Op::GetSecret(c, m)),
        (a(), 0u8..3).prop_map(|(c, m)| Op::GetSecretWithTs(c, m)),
        (0i64..20).prop_map(Op::ExpireSecrets),
        (0usize..3).prop_map(Op::SaveDevice),
        Just(Op::LoadDevice),
        Just(Op::DeviceExists),
    ]
}

fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

fn mac_index(i: u8) -> [u8; 32] {
    [i; 32]
}

fn hash_state(version: u64) -> HashState {
    let mut state = HashState {
        version,
        ..HashState::default()
    };
    state.hash[0] = version as u8;
    state
        .index_value_map
        .insert(format!("index-{version}"), vec![version as u8; 4]);
    state
}

fn device_list(user: usize, devices: u8) -> DeviceListRecord {
    DeviceListRecord {
        user: USERS[user].to_owned(),
        devices: (0..u32::from(devices))
            .map(|d| DeviceInfo::new(d, Some(d + 1)))
            .collect(),
        timestamp: i64::from(devices) * 1000,
        phash: Some(format!("2:{devices}")),
        raw_id: Some(u32::from(devices)),
    }
}

fn lid_entry(lid: usize, pn: usize, time: i64) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: LIDS[lid].to_owned(),
        phone_number: PNS[pn].to_owned(),
        created_at: 100 + time,
        updated_at: 200 + time,
        learning_source: format!("usync-{time}"),
    }
}

fn secret_entry(c: usize, m: u8, s: u8, expires: i64, ts: i64) -> MsgSecretEntry {
    MsgSecretEntry {
        chat: Arc::from(ADDRESSES[c]),
        sender: Arc::from(ADDRESSES[(c + 1) % ADDRESSES.len()]),
        msg_id: Arc::from(format!("msg-{m}").as_str()),
        secret: [s; 32],
        expires_at: expires,
        message_ts: ts,
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Applies one operation and renders its answer, with unspecified orders normalized.
async fn apply(op: &Op, b: &dyn Backend, devices: &[Device]) -> String {
    let far_future = wacore::time::now_secs() + 100_000;
    macro_rules! show {
        ($e:expr) => {
            match $e.await {
                Ok(v) => format!("{:?}", v),
                Err(_) => "error".to_owned(),
            }
        };
    }
    match op {
        Op::PutIdentity(a, k) => show!(b.put_identity(ADDRESSES[*a], [*k; 32])),
        Op::PutIdentities(list) => {
            let list: Vec<(Arc<str>, [u8; 32])> = list
                .iter()
                .map(|(a, k)| (Arc::from(ADDRESSES[*a]), [*k; 32]))
                .collect();
            show!(b.put_identities_batch(&list))
        }
        Op::LoadIdentity(a) => show!(b.load_identity(ADDRESSES[*a])),
        Op::DeleteIdentity(a) => show!(b.delete_identity(ADDRESSES[*a])),
        Op::PutSession(a, s) => show!(b.put_session(ADDRESSES[*a], &blob(*s, 40))),
        Op::PutSessions(list) => {
            let list: Vec<(Arc<str>, Bytes)> = list
                .iter()
                .map(|(a, s)| (Arc::from(ADDRESSES[*a]), Bytes::from(blob(*s, 40))))
                .collect();
            show!(b.put_sessions_batch(&list))
        }
        Op::GetSession(a) => show!(b.get_session(ADDRESSES[*a])),
        Op::HasSession(a) => show!(b.has_session(ADDRESSES[*a])),
        Op::DeleteSession(a) => show!(b.delete_session(ADDRESSES[*a])),
        Op::HasSignalState(u) => show!(b.has_signal_state_for_user(USERS[*u])),
        Op::StorePrekey(id, r, up) => show!(b.store_prekey(*id, &blob(*r, 16), *up)),
        Op::StorePrekeys(keys, up) => {
            let keys: Vec<(u32, Bytes)> = keys
                .iter()
                .map(|(id, r)| (*id, Bytes::from(blob(*r, 16))))
                .collect();
            show!(b.store_prekeys_batch(&keys, *up))
        }
        Op::LoadPrekey(id) => show!(b.load_prekey(*id)),
        Op::LoadPrekeys(ids) => show!(b.load_prekeys_batch(ids)),
        Op::MarkUploaded(ids) => show!(b.mark_prekeys_uploaded(ids)),
        Op::RemovePrekey(id) => show!(b.remove_prekey(*id)),
        Op::MaxPrekey => show!(b.get_max_prekey_id()),
        Op::StoreSigned(id, r) => show!(b.store_signed_prekey(*id, &blob(*r, 24))),
        Op::LoadSigned(id) => show!(b.load_signed_prekey(*id)),
        Op::LoadAllSigned => format!("{:?}", b.load_all_signed_prekeys().await.map(sorted).ok()),
        Op::RemoveSigned(id) => show!(b.remove_signed_prekey(*id)),
        Op::PutSenderKey(a, r) => show!(b.put_sender_key(ADDRESSES[*a], &blob(*r, 12))),
        Op::PutSenderKeys(list) => {
            let list: Vec<(Arc<str>, Bytes)> = list
                .iter()
                .map(|(a, r)| (Arc::from(ADDRESSES[*a]), Bytes::from(blob(*r, 12))))
                .collect();
            show!(b.put_sender_keys_batch(&list))
        }
        Op::GetSenderKey(a) => show!(b.get_sender_key(ADDRESSES[*a])),
        Op::DeleteSenderKey(a) => show!(b.delete_sender_key(ADDRESSES[*a])),
        Op::SetSyncKey(k, v) => show!(b.set_sync_key(
            &[*k, 1],
            AppStateSyncKey {
                key_data: blob(*v, 8),
                fingerprint: blob(v.wrapping_add(1), 4),
                timestamp: i64::from(*v),
            }
        )),
        Op::GetSyncKey(k) => show!(b.get_sync_key(&[*k, 1])),
        Op::LatestSyncKey => show!(b.get_latest_sync_key_id()),
        Op::SetVersion(n, v) => show!(b.set_version(NAMES[*n], hash_state(*v))),
        Op::GetVersion(n) => show!(b.get_version(NAMES[*n])),
        Op::PutMacs(n, version, macs) => {
            let macs: Vec<AppStateMutationMAC> = macs
                .iter()
                .map(|(i, v)| AppStateMutationMAC {
                    index_mac: mac_index(*i).to_vec(),
                    value_mac: blob(*v, 32),
                })
                .collect();
            show!(b.put_mutation_macs(NAMES[*n], *version, &macs))
        }
        Op::GetMac(n, i) => show!(b.get_mutation_mac(NAMES[*n], &mac_index(*i))),
        Op::GetMacs(n, ids) => {
            let ids: Vec<[u8; 32]> = ids.iter().map(|i| mac_index(*i)).collect();
            format!(
                "{:?}",
                b.get_mutation_macs(NAMES[*n], &ids)
                    .await
                    .map(|m| sorted(m.into_iter().collect::<Vec<_>>()))
                    .ok()
            )
        }
        Op::DeleteMacs(n, ids) => {
            let ids: Vec<Vec<u8>> = ids.iter().map(|i| mac_index(*i).to_vec()).collect();
            show!(b.delete_mutation_macs(NAMES[*n], &ids))
        }
        Op::ClearMacs(n) => show!(b.clear_mutation_macs(NAMES[*n])),
        Op::SetSenderKeyStatus(g, entries) => {
            let entries: Vec<(&str, bool)> =
                entries.iter().map(|(a, f)| (ADDRESSES[*a], *f)).collect();
            show!(b.set_sender_key_status(&format!("12036300000{g}@g.us"), &entries))
        }
        Op::GetSenderKeyDevices(g) => format!(
            "{:?}",
            b.get_sender_key_devices(&format!("12036300000{g}@g.us"))
                .await
                .map(sorted)
                .ok()
        ),
        Op::ClearSenderKeyDevices(g) => {
            show!(b.clear_sender_key_devices(&format!("12036300000{g}@g.us")))
        }
        Op::DeleteSenderKeyRows(list) => {
            let list: Vec<&str> = list.iter().map(|a| ADDRESSES[*a]).collect();
            show!(b.delete_sender_key_device_rows(&list))
        }
        Op::ClearAllSenderKeyDevices => show!(b.clear_all_sender_key_devices()),
        Op::PutLid(l, p, t) => show!(b.put_lid_mapping(&lid_entry(*l, *p, *t))),
        Op::PutLids(list) => {
            let list: Vec<LidPnMappingEntry> =
                list.iter().map(|(l, p, t)| lid_entry(*l, *p, *t)).collect();
            show!(b.put_lid_mappings(&list))
        }
        Op::GetLid(l) => show!(b.get_lid_mapping(LIDS[*l])),
        Op::GetPn(p) => show!(b.get_pn_mapping(PNS[*p])),
        Op::AllLids => format!(
            "{:?}",
            b.get_all_lid_mappings().await.ok().map(|all| sorted(
                all.into_iter()
                    .map(|e| format!("{e:?}"))
                    .collect::<Vec<_>>()
            ))
        ),
        Op::SaveBaseKey(a, m, k) => {
            show!(b.save_base_key(ADDRESSES[*a], &format!("m{m}"), &blob(*k, 32)))
        }
        Op::SameBaseKey(a, m, k) => {
            show!(b.has_same_base_key(ADDRESSES[*a], &format!("m{m}"), &blob(*k, 32)))
        }
        Op::DeleteBaseKey(a, m) => show!(b.delete_base_key(ADDRESSES[*a], &format!("m{m}"))),
        Op::UpdateDeviceList(u, d) => show!(b.update_device_list(device_list(*u, *d))),
        Op::UpdateDeviceLists(list) => {
            let list: Vec<DeviceListRecord> =
                list.iter().map(|(u, d)| device_list(*u, *d)).collect();
            show!(b.update_device_lists(list))
        }
        Op::GetDevices(u) => show!(b.get_devices(USERS[*u])),
        Op::DeleteDevices(u) => show!(b.delete_devices(USERS[*u])),
        Op::PutGroup(g, v) => show!(b.put_group_metadata(&format!("g{g}@g.us"), &blob(*v, 20))),
        Op::GetGroup(g) => show!(b.get_group_metadata(&format!("g{g}@g.us"))),
        Op::DeleteGroup(g) => show!(b.delete_group_metadata(&format!("g{g}@g.us"))),
        Op::PutTc(j, t, ts, s) => show!(b.put_tc_token(
            ADDRESSES[*j],
            &TcTokenEntry {
                token: blob(*t, usize::from(*t)),
                token_timestamp: *ts,
                sender_timestamp: *s,
            }
        )),
        Op::GetTc(j) => show!(b.get_tc_token(ADDRESSES[*j])),
        Op::DeleteTc(j) => show!(b.delete_tc_token(ADDRESSES[*j])),
        Op::AllTc => format!("{:?}", b.get_all_tc_token_jids().await.map(sorted).ok()),
        Op::ExpireTc(t, s) => show!(b.delete_expired_tc_tokens(*t, *s)),
        Op::TouchTc(j, s) => show!(b.touch_tc_token_sender_timestamp(ADDRESSES[*j], *s)),
        Op::ReceivedTc(j, t, ts) => {
            show!(b.store_received_tc_token(ADDRESSES[*j], &blob(*t, usize::from(*t)), *ts))
        }
        Op::StoreSent(c, m, p) => {
            show!(b.store_sent_message(ADDRESSES[*c], &format!("s{m}"), &blob(*p, 10)))
        }
        Op::TakeSent(c, m) => show!(b.take_sent_message(ADDRESSES[*c], &format!("s{m}"))),
        // "Now" differs between the two backends by a clock tick: cutoffs stay far from it.
        Op::ExpireSent(all) => {
            show!(b.delete_expired_sent_messages(if *all { far_future } else { 0 }))
        }
        Op::StorePending(c, i, m) => show!(b.store_pending_inbound(
            ADDRESSES[*c],
            ADDRESSES[(*c + 1) % 4],
            &format!("p{i}"),
            &blob(*m, 8)
        )),
        Op::StorePendingBatch(list) => {
            let ids: Vec<String> = list.iter().map(|(_, i, _)| format!("p{i}")).collect();
            let messages: Vec<Vec<u8>> = list.iter().map(|(_, _, m)| blob(*m, 8)).collect();
            let rows: Vec<PendingInboundRow<'_>> = list
                .iter()
                .enumerate()
                .map(|(n, (c, _, _))| PendingInboundRow {
                    chat: ADDRESSES[*c],
                    sender: ADDRESSES[(*c + 1) % 4],
                    id: &ids[n],
                    message: &messages[n],
                })
                .collect();
            show!(b.store_pending_inbound_batch(&rows))
        }
        Op::GetPending(c, i) => {
            show!(b.get_pending_inbound(ADDRESSES[*c], ADDRESSES[(*c + 1) % 4], &format!("p{i}")))
        }
        Op::DeletePending(c, i) => show!(b.delete_pending_inbound(
            ADDRESSES[*c],
            ADDRESSES[(*c + 1) % 4],
            &format!("p{i}")
        )),
        Op::DeletePendingBatch(list) => {
            let ids: Vec<String> = list.iter().map(|(_, i)| format!("p{i}")).collect();
            let keys: Vec<PendingInboundKey<'_>> = list
                .iter()
                .enumerate()
                .map(|(n, (c, _))| PendingInboundKey {
                    chat: ADDRESSES[*c],
                    sender: ADDRESSES[(*c + 1) % 4],
                    id: &ids[n],
                })
                .collect();
            show!(b.delete_pending_inbound_batch(&keys))
        }
        Op::ExpirePending(all) => {
            show!(b.delete_expired_pending_inbound(if *all { far_future } else { 0 }))
        }
        Op::PutSecrets(list) => {
            let list: Vec<MsgSecretEntry> = list
                .iter()
                .map(|(c, m, s, e, t)| secret_entry(*c, *m, *s, *e, *t))
                .collect();
            show!(b.put_msg_secrets(list))
        }
        Op::GetSecret(c, m) => {
            show!(b.get_msg_secret(ADDRESSES[*c], ADDRESSES[(*c + 1) % 4], &format!("msg-{m}")))
        }
        Op::GetSecretWithTs(c, m) => show!(b.get_msg_secret_with_ts(
            ADDRESSES[*c],
            ADDRESSES[(*c + 1) % 4],
            &format!("msg-{m}")
        )),
        Op::ExpireSecrets(cutoff) => show!(b.delete_expired_msg_secrets(*cutoff)),
        Op::SaveDevice(d) => show!(b.save(&devices[*d])),
        Op::LoadDevice => match b.load().await {
            Ok(device) => {
                format!("{:?}", device.map(|d| serde_json::to_string(&d).ok()))
            }
            Err(_) => "error".to_owned(),
        },
        Op::DeviceExists => show!(b.exists()),
    }
}

/// Every read over the whole key space: the observable state of a backend.
async fn dump(b: &dyn Backend, devices: &[Device]) -> Vec<String> {
    let mut reads = Vec::new();
    for a in 0..ADDRESSES.len() {
        reads.push(Op::LoadIdentity(a));
        reads.push(Op::GetSession(a));
        reads.push(Op::HasSession(a));
        reads.push(Op::GetSenderKey(a));
        reads.push(Op::GetTc(a));
        for m in 0..3 {
            reads.push(Op::TakeSent(a, m));
            reads.push(Op::GetPending(a, m));
            reads.push(Op::GetSecretWithTs(a, m));
            reads.push(Op::SameBaseKey(a, m, 0));
        }
    }
    reads.extend((0..USERS.len()).flat_map(|u| [Op::HasSignalState(u), Op::GetDevices(u)]));
    reads.extend((1..6).flat_map(|id| [Op::LoadPrekey(id), Op::LoadSigned(id)]));
    reads.extend([
        Op::MaxPrekey,
        Op::LoadAllSigned,
        Op::LatestSyncKey,
        Op::AllLids,
        Op::AllTc,
    ]);
    reads.extend((0..3).map(Op::GetSyncKey));
    for n in 0..NAMES.len() {
        reads.push(Op::GetVersion(n));
        reads.push(Op::GetMacs(n, (0..4).collect()));
    }
    for g in 0..2 {
        reads.push(Op::GetSenderKeyDevices(g));
        reads.push(Op::GetGroup(g));
    }
    reads.extend((0..LIDS.len()).map(Op::GetLid));
    reads.extend((0..PNS.len()).map(Op::GetPn));
    reads.extend([Op::LoadDevice, Op::DeviceExists]);
    let mut out = Vec::with_capacity(reads.len());
    for read in &reads {
        out.push(format!("{read:?} -> {}", apply(read, b, devices).await));
    }
    out
}

/// Test devices that differ from each other in their keys and their account.
fn sample_devices() -> Vec<Device> {
    (0..3)
        .map(|n| {
            let mut device = Device::new();
            device.push_name = format!("device {n}");
            device.registration_id = 1000 + n;
            device.login_counter = n as i32;
            device
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn answers_like_the_in_memory_backend() {
    let rt = runtime();
    let db = rt.block_on(TestDatabase::new());
    let pool = db.pool.clone();
    let devices = sample_devices();
    let config = ProptestConfig {
        cases: 64,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    };
    let sealer = Arc::new(sealer_of(1, &[]));
    proptest!(config, |(ops in prop::collection::vec(op(), 1..60), sealed in any::<bool>())| {
        rt.block_on(async {
            let device = new_device(&pool).await;
            let mut pg = PgStore::new(pool.clone(), device);
            if sealed {
                pg = pg.with_sealer(sealer.clone());
            }
            let memory = InMemoryBackend::new();
            for (step, op) in ops.iter().enumerate() {
                let expected = apply(op, &memory, &devices).await;
                let got = apply(op, &pg, &devices).await;
                prop_assert_eq!(&got, &expected, "step {} {:?}", step, op);
            }
            // Reads of the whole key space (TakeSent last: it consumes what it reads).
            let (expected, got) = (dump(&memory, &devices).await, dump(&pg, &devices).await);
            for (e, g) in expected.iter().zip(&got) {
                prop_assert_eq!(g, e);
            }
            Ok(())
        })?;
    });
    drop(pool);
    rt.block_on(async move { drop(db) });
}

#[tokio::test]
async fn devices_do_not_see_each_other_and_erase_is_per_device() {
    let db = TestDatabase::new().await;
    let (a, b) = (new_device(&db.pool).await, new_device(&db.pool).await);
    let (sa, sb) = (
        PgStore::new(db.pool.clone(), a),
        PgStore::new(db.pool.clone(), b),
    );
    let address = ADDRESSES[0];
    sa.put_session(address, b"session of a").await.unwrap();
    sa.put_identity(address, [1; 32]).await.unwrap();
    sa.put_lid_mapping(&lid_entry(0, 0, 1)).await.unwrap();
    sa.store_prekey(1, b"prekey", false).await.unwrap();
    sa.save(&sample_devices()[0]).await.unwrap();
    sb.put_session(address, b"session of b").await.unwrap();

    assert_eq!(
        sb.get_session(address).await.unwrap().as_deref(),
        Some(&b"session of b"[..])
    );
    assert_eq!(sb.load_identity(address).await.unwrap(), None);
    assert!(sb.get_lid_mapping(LIDS[0]).await.unwrap().is_none());
    assert!(sb.load_prekey(1).await.unwrap().is_none());
    assert!(!sb.exists().await.unwrap());

    PgStore::erase_device(&db.pool, a).await.unwrap();
    assert!(sa.get_session(address).await.unwrap().is_none());
    assert!(sa.load_identity(address).await.unwrap().is_none());
    assert!(sa.get_lid_mapping(LIDS[0]).await.unwrap().is_none());
    assert!(sa.load_prekey(1).await.unwrap().is_none());
    assert!(!sa.exists().await.unwrap());
    // The other device is untouched.
    assert_eq!(
        sb.get_session(address).await.unwrap().as_deref(),
        Some(&b"session of b"[..])
    );

    // No table keeps a row of the erased device.
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM wa_sessions WHERE device_id = $1)
              + (SELECT count(*) FROM wa_identities WHERE device_id = $1)
              + (SELECT count(*) FROM wa_lid_mappings WHERE device_id = $1)
              + (SELECT count(*) FROM wa_pn_lids WHERE device_id = $1)
              + (SELECT count(*) FROM wa_prekeys WHERE device_id = $1)
              + (SELECT count(*) FROM wa_devices WHERE device_id = $1)",
    )
    .bind(a)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn erase_covers_every_table() {
    // Every wa_ table must be emptied by erase_device: a new table without a DELETE there
    // would leave keys behind after a logout.
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name LIKE 'wa\\_%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(tables.len() >= 19, "{tables:?}");
    let store = PgStore::new(db.pool.clone(), device);
    let rt_ops = [
        Op::PutIdentity(0, 1),
        Op::PutSession(0, 1),
        Op::StorePrekey(1, 1, true),
        Op::StoreSigned(1, 1),
        Op::PutSenderKey(0, 1),
        Op::SetSyncKey(0, 1),
        Op::SetVersion(0, 1),
        Op::PutMacs(0, 1, vec![(1, 1)]),
        Op::SetSenderKeyStatus(0, vec![(0, true)]),
        Op::PutLid(0, 0, 1),
        Op::SaveBaseKey(0, 0, 1),
        Op::UpdateDeviceList(0, 2),
        Op::PutGroup(0, 1),
        Op::PutTc(0, 1, 1, Some(1)),
        Op::StoreSent(0, 0, 1),
        Op::StorePending(0, 0, 1),
        Op::PutSecrets(vec![(0, 0, 1, 0, 0)]),
        Op::SaveDevice(0),
    ];
    let devices = sample_devices();
    for op in &rt_ops {
        assert_ne!(apply(op, &store, &devices).await, "error", "{op:?}");
    }
    for table in &tables {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE device_id = $1"
        )))
        .bind(device)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(rows > 0, "the probe writes no row in {table}");
    }
    PgStore::erase_device(&db.pool, device).await.unwrap();
    for table in &tables {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE device_id = $1"
        )))
        .bind(device)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(rows, 0, "{table} kept rows after erase");
    }
}

#[tokio::test]
async fn deleting_the_device_row_deletes_its_keys() {
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let store = PgStore::new(db.pool.clone(), device);
    store.put_session(ADDRESSES[1], b"s").await.unwrap();
    store.save(&sample_devices()[1]).await.unwrap();
    sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(device)
        .execute(&db.pool)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM wa_sessions WHERE device_id = $1)
              + (SELECT count(*) FROM wa_devices WHERE device_id = $1)",
    )
    .bind(device)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn writes_survive_a_new_pool() {
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let saved = sample_devices().remove(2);
    {
        let store = PgStore::new(db.pool.clone(), device);
        store.save(&saved).await.unwrap();
        store.put_session(ADDRESSES[2], b"ratchet").await.unwrap();
        store
            .store_prekeys_batch(&[(7, Bytes::from_static(b"k7"))], false)
            .await
            .unwrap();
    }
    let fresh = PgPool::connect(&db.url()).await.unwrap();
    let store = PgStore::new(fresh.clone(), device);
    let loaded = store.load().await.unwrap().expect("device stored");
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(&saved).unwrap()
    );
    assert_eq!(
        store.get_session(ADDRESSES[2]).await.unwrap().as_deref(),
        Some(&b"ratchet"[..])
    );
    assert_eq!(
        store.load_prekey(7).await.unwrap().as_deref(),
        Some(&b"k7"[..])
    );
    fresh.close().await;
}

#[tokio::test]
async fn a_retired_store_writes_nothing_after_an_erase() {
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let gate = Arc::new(WriteGate::new());
    let store = PgStore::new(db.pool.clone(), device).with_gate(gate.clone());
    let saved = write_every_kind(&store).await;
    read_every_kind(&store, &saved)
        .await
        .expect("an open gate writes");

    gate.retire().await;
    PgStore::erase_device(&db.pool, device).await.unwrap();
    // What a stopped client still had to write (its saver's last flush, a session) is refused
    // rather than landing after the erase.
    let refused = store.save(&saved).await.expect_err("retired");
    assert!(
        std::error::Error::source(&refused)
            .is_some_and(|source| source.downcast_ref::<Retired>().is_some()),
        "{refused:?}"
    );
    assert!(store.put_session(ADDRESSES[0], SESSION).await.is_err());
    assert!(store.store_prekey(9, PREKEY, false).await.is_err());
    assert!(
        store
            .put_msg_secrets(vec![secret_entry(0, 1, 0x5a, 0, 10)])
            .await
            .is_err()
    );
    assert!(stored_values(&db.pool, device).await.is_empty());
    assert!(!PgStore::has_credentials(&db.pool, device).await.unwrap());
    // Reads still answer (empty), and a new client's store writes.
    assert!(store.load().await.unwrap().is_none());
    let next = PgStore::new(db.pool.clone(), device).with_gate(Arc::new(WriteGate::new()));
    next.save(&saved).await.unwrap();
    assert!(next.load().await.unwrap().is_some());
}

#[tokio::test]
async fn credentials_appear_with_the_paired_account() {
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let store = PgStore::new(db.pool.clone(), device);
    assert!(!PgStore::has_credentials(&db.pool, device).await.unwrap());
    store.create().await.unwrap();
    assert!(store.exists().await.unwrap());
    assert!(!PgStore::has_credentials(&db.pool, device).await.unwrap());
    let mut paired = store.load().await.unwrap().expect("created");
    paired.pn = Some("5511999999999:4@s.whatsapp.net".parse().expect("jid"));
    store.save(&paired).await.unwrap();
    assert!(PgStore::has_credentials(&db.pool, device).await.unwrap());
    // create() never replaces an existing record.
    store.create().await.unwrap();
    let again = store.load().await.unwrap().expect("kept");
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&paired).unwrap()
    );
}

#[tokio::test]
async fn the_lid_warm_up_is_bounded_to_the_most_recent() {
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let store = PgStore::new(db.pool.clone(), device).with_lid_warm_up_limit(2);
    let entries: Vec<LidPnMappingEntry> = (0..5)
        .map(|n| LidPnMappingEntry {
            lid: format!("10000000000000{n}"),
            phone_number: format!("551190000000{n}"),
            created_at: n,
            updated_at: n,
            learning_source: "usync".to_owned(),
        })
        .collect();
    store.put_lid_mappings(&entries).await.unwrap();
    let warm: Vec<String> = store
        .get_all_lid_mappings()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.lid)
        .collect();
    assert_eq!(warm, vec!["100000000000004", "100000000000003"]);
    // The rest is still found on demand.
    assert!(
        store
            .get_lid_mapping("100000000000000")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_pn_mapping("5511900000000")
            .await
            .unwrap()
            .is_some()
    );
}

// ---------------------------------------------------------------------------------------------
// Sealing at rest.

fn store_key(byte: u8) -> StoreKey {
    StoreKey::from_bytes(&[byte; 32])
}

/// A sealer with key `current` (0: none) that also opens `previous`.
fn sealer_of(current: u8, previous: &[u8]) -> Sealer {
    Sealer::new(
        (current != 0).then(|| store_key(current)),
        previous.iter().map(|b| store_key(*b)).collect(),
    )
}

const SESSION: &[u8] = b"\x0a plaintext-session-record-with-chain-keys";
const PREKEY: &[u8] = b"\x08 plaintext-prekey-record-private-key";
const SIGNED: &[u8] = b"\x08 plaintext-signed-prekey-record-key";
const SENDER: &[u8] = b"\x0a plaintext-sender-key-record-chain";
const SYNC_KEY: &[u8] = b"plaintext-app-state-sync-key-data";

/// Writes one value of every sealed kind through the store, and answers the device record.
async fn write_every_kind(store: &PgStore) -> Device {
    let mut device = sample_devices().remove(0);
    device.push_name = "Sealed Pusher".to_owned();
    store.save(&device).await.expect("save device");
    store
        .put_session(ADDRESSES[0], SESSION)
        .await
        .expect("session");
    store
        .put_sessions_batch(&[(Arc::from(ADDRESSES[1]), Bytes::from_static(SESSION))])
        .await
        .expect("session batch");
    store.store_prekey(7, PREKEY, false).await.expect("prekey");
    store
        .store_prekeys_batch(&[(8, Bytes::from_static(PREKEY))], true)
        .await
        .expect("prekey batch");
    store
        .store_signed_prekey(3, SIGNED)
        .await
        .expect("signed prekey");
    store
        .put_sender_key(ADDRESSES[2], SENDER)
        .await
        .expect("sender key");
    store
        .set_sync_key(
            b"key-1",
            AppStateSyncKey {
                key_data: SYNC_KEY.to_vec(),
                fingerprint: b"fingerprint".to_vec(),
                timestamp: 5,
            },
        )
        .await
        .expect("sync key");
    store
        .put_msg_secrets(vec![secret_entry(0, 1, 0x5a, 0, 10)])
        .await
        .expect("msg secret");
    device
}

/// Reads every value back through the store and compares it with what was written.
async fn read_every_kind(store: &PgStore, device: &Device) -> Result<(), StoreError> {
    let loaded = store.load().await?.expect("device record");
    assert_eq!(
        serde_json::to_value(&loaded).expect("json"),
        serde_json::to_value(device).expect("json")
    );
    for address in &ADDRESSES[..2] {
        assert_eq!(store.get_session(address).await?.as_deref(), Some(SESSION));
    }
    assert_eq!(store.load_prekey(7).await?.as_deref(), Some(PREKEY));
    let batch = store.load_prekeys_batch(&[7, 8, 9]).await?;
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|(_, r)| r.as_ref() == PREKEY));
    assert_eq!(store.load_signed_prekey(3).await?.as_deref(), Some(SIGNED));
    assert_eq!(
        store.load_all_signed_prekeys().await?,
        vec![(3, SIGNED.to_vec())]
    );
    assert_eq!(
        store.get_sender_key(ADDRESSES[2]).await?.as_deref(),
        Some(SENDER)
    );
    let key = store.get_sync_key(b"key-1").await?.expect("sync key");
    assert_eq!(key.key_data, SYNC_KEY);
    let secret = secret_entry(0, 1, 0x5a, 0, 10);
    assert_eq!(
        store
            .get_msg_secret(&secret.chat, &secret.sender, &secret.msg_id)
            .await?,
        Some(vec![0x5a; 32])
    );
    Ok(())
}

/// Every stored value of the sealed columns, as `(column, value)`, for one device.
async fn stored_values(pool: &PgPool, device: Uuid) -> Vec<(&'static str, Vec<u8>)> {
    let queries: [(&str, &str); 7] = [
        (
            "wa_devices.data",
            "SELECT data FROM wa_devices WHERE device_id = $1",
        ),
        (
            "wa_sessions.record",
            "SELECT record FROM wa_sessions WHERE device_id = $1",
        ),
        (
            "wa_prekeys.record",
            "SELECT record FROM wa_prekeys WHERE device_id = $1",
        ),
        (
            "wa_signed_prekeys.record",
            "SELECT record FROM wa_signed_prekeys WHERE device_id = $1",
        ),
        (
            "wa_sender_keys.record",
            "SELECT record FROM wa_sender_keys WHERE device_id = $1",
        ),
        (
            "wa_app_sync_keys.key_data",
            "SELECT key_data FROM wa_app_sync_keys WHERE device_id = $1",
        ),
        (
            "wa_msg_secrets.secret",
            "SELECT secret FROM wa_msg_secrets WHERE device_id = $1",
        ),
    ];
    let mut out = Vec::new();
    for (column, sql) in queries {
        let values: Vec<Vec<u8>> = sqlx::query_scalar(sql)
            .bind(device)
            .fetch_all(pool)
            .await
            .expect("read stored values");
        out.extend(values.into_iter().map(|v| (column, v)));
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn with_a_store_key_no_key_material_is_stored_in_clear() {
    let db = TestDatabase::new().await;
    let device = new_device(&db.pool).await;
    let store = PgStore::new(db.pool.clone(), device).with_sealer(Arc::new(sealer_of(1, &[])));
    let record = write_every_kind(&store).await;
    read_every_kind(&store, &record).await.expect("reads back");

    let stored = stored_values(&db.pool, device).await;
    assert_eq!(stored.len(), 9, "{stored:?}");
    let needles: [&[u8]; 9] = [
        SESSION,
        PREKEY,
        SIGNED,
        SENDER,
        SYNC_KEY,
        &[0x5a; 32],
        b"Sealed Pusher",
        b"identity_key",
        b"adv_secret_key",
    ];
    for (column, value) in &stored {
        assert!(value.starts_with(&MAGIC), "{column} is not sealed");
        for needle in needles {
            assert!(
                !contains(value, &needle[..16.min(needle.len())]),
                "{column} holds plaintext"
            );
        }
    }
    // The stored device record of a store without the key is unreadable JSON, not keys.
    let plain_device: Vec<u8> =
        sqlx::query_scalar("SELECT data FROM wa_devices WHERE device_id = $1")
            .bind(device)
            .fetch_one(&db.pool)
            .await
            .expect("device row");
    assert!(serde_json::from_slice::<serde_json::Value>(&plain_device).is_err());

    // Another key, or none: reads fail naming the key, never return garbage.
    for other in [sealer_of(2, &[]), Sealer::plain()] {
        let wrong = PgStore::new(db.pool.clone(), device).with_sealer(Arc::new(other));
        let Err(err) = wrong.load().await else {
            panic!("the device record opened with the wrong key");
        };
        assert!(
            matches!(SealError::find(&err), Some(SealError::UnknownKey { .. })),
            "{err:?}"
        );
        assert!(wrong.get_session(ADDRESSES[0]).await.is_err());
        assert!(wrong.load_prekeys_batch(&[7]).await.is_err());
    }
}

#[tokio::test]
async fn a_sealed_value_copied_to_another_row_or_device_does_not_open() {
    let db = TestDatabase::new().await;
    let (a, b) = (new_device(&db.pool).await, new_device(&db.pool).await);
    let sealer = Arc::new(sealer_of(1, &[]));
    let sa = PgStore::new(db.pool.clone(), a).with_sealer(sealer.clone());
    let sb = PgStore::new(db.pool.clone(), b).with_sealer(sealer);
    sa.put_session(ADDRESSES[0], SESSION).await.expect("a");
    sb.put_session(ADDRESSES[0], b"\x0a b's session")
        .await
        .expect("b");
    sa.put_session(ADDRESSES[1], b"\x0a a's other session")
        .await
        .expect("a2");
    // Within a device: address 0's value written over address 1's row.
    sqlx::query(
        "UPDATE wa_sessions SET record = (SELECT record FROM wa_sessions
             WHERE device_id = $1 AND address = $2) WHERE device_id = $1 AND address = $3",
    )
    .bind(a)
    .bind(ADDRESSES[0])
    .bind(ADDRESSES[1])
    .execute(&db.pool)
    .await
    .expect("copy within device");
    let err = sa.get_session(ADDRESSES[1]).await.expect_err("moved value");
    assert!(
        matches!(SealError::find(&err), Some(SealError::Damaged { .. })),
        "{err:?}"
    );
    // Across devices: a's session for address 0 put in b's row.
    sqlx::query(
        "UPDATE wa_sessions SET record = (SELECT record FROM wa_sessions
             WHERE device_id = $1 AND address = $3) WHERE device_id = $2 AND address = $3",
    )
    .bind(a)
    .bind(b)
    .bind(ADDRESSES[0])
    .execute(&db.pool)
    .await
    .expect("copy across devices");
    assert!(sb.get_session(ADDRESSES[0]).await.is_err());
    // The original still opens.
    assert_eq!(
        sa.get_session(ADDRESSES[0]).await.expect("a").as_deref(),
        Some(SESSION)
    );
}

#[tokio::test]
async fn reseal_seals_rotates_and_unseals_every_row() {
    let db = TestDatabase::new().await;
    let (a, b) = (new_device(&db.pool).await, new_device(&db.pool).await);
    let store = |device: Uuid, sealer: Sealer| {
        PgStore::new(db.pool.clone(), device).with_sealer(Arc::new(sealer))
    };
    // Written in clear before a key was configured.
    let record_a = write_every_kind(&store(a, Sealer::plain())).await;
    let record_b = write_every_kind(&store(b, Sealer::plain())).await;
    // A key is configured: old rows still read, new writes are sealed.
    read_every_kind(&store(a, sealer_of(1, &[])), &record_a)
        .await
        .expect("plaintext rows read");

    let report = PgStore::reseal(&db.pool, &sealer_of(1, &[]))
        .await
        .expect("reseal");
    assert_eq!(report.rewritten(), 18, "{report:?}");
    assert_eq!(report.unreadable(), 0);
    for device in [a, b] {
        for (column, value) in stored_values(&db.pool, device).await {
            assert!(
                value.starts_with(&MAGIC),
                "{column} not sealed after reseal"
            );
        }
    }
    read_every_kind(&store(a, sealer_of(1, &[])), &record_a)
        .await
        .expect("sealed by reseal");
    read_every_kind(&store(b, sealer_of(1, &[])), &record_b)
        .await
        .expect("sealed by reseal");
    // Nothing left to do: a second run rewrites nothing.
    let again = PgStore::reseal(&db.pool, &sealer_of(1, &[]))
        .await
        .expect("again");
    assert_eq!(again.rewritten(), 0);

    // Rotation: key 2 current, key 1 previous; afterwards key 2 alone reads everything.
    let rotated = PgStore::reseal(&db.pool, &sealer_of(2, &[1]))
        .await
        .expect("rotate");
    assert_eq!(rotated.rewritten(), 18);
    read_every_kind(&store(a, sealer_of(2, &[])), &record_a)
        .await
        .expect("key 2 alone");
    assert!(store(a, sealer_of(1, &[])).load().await.is_err());

    // A row sealed with a key nobody configured is reported and left untouched.
    let stranger = store(b, sealer_of(3, &[]));
    stranger
        .put_sender_key(ADDRESSES[3], SENDER)
        .await
        .expect("stranger");
    let off = PgStore::reseal(&db.pool, &sealer_of(0, &[2]))
        .await
        .expect("turn off");
    assert_eq!(off.rewritten(), 18);
    assert_eq!(off.unreadable(), 1);
    let unreadable = off
        .columns
        .iter()
        .find(|c| !c.unreadable.is_empty())
        .expect("the stranger's column");
    assert_eq!(unreadable.column, "wa_sender_keys.record");
    assert_eq!(unreadable.unreadable[0].0, b);
    assert_eq!(
        stranger
            .get_sender_key(ADDRESSES[3])
            .await
            .expect("untouched")
            .as_deref(),
        Some(SENDER)
    );
    // Encryption off: the plain store reads everything else.
    read_every_kind(&store(a, Sealer::plain()), &record_a)
        .await
        .expect("back in clear");
    let in_clear = stored_values(&db.pool, a).await;
    assert!(in_clear.iter().all(|(_, v)| !v.starts_with(&MAGIC)));
}
