//! The real store, closed and reopened: what was acknowledged comes back,
//! timers are re-armed, and what cannot be read is reported.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{Node, T0, add_app, caller, create, open_with, shut};
use devcmd_core::*;
use devcmd_store::{FjallStore, OpenError, StoreConfig};

fn open(dir: &std::path::Path, at: u64) -> Node {
    let config = CoreConfig {
        shard_count: 8,
        ..CoreConfig::default()
    };
    open_with(dir, at, config, false)
}

fn setup(n: &Node) -> (DeviceId, DeviceId) {
    add_app(n);
    let mut drx = NewDevice::new("drx");
    drx.profile = DeliveryProfile::Drx;
    let psm = n
        .core
        .register_device(&caller(), NewDevice::new("psm"))
        .unwrap()
        .durable()
        .unwrap()
        .id;
    let drx = n.core.register_device(&caller(), drx).unwrap().durable().unwrap().id;
    (psm, drx)
}

#[test]
fn every_live_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let (psm, drx) = setup(&n);
    let pending: Vec<_> = (0..3).map(|_| create(&n, &psm)).collect();
    let sent = create(&n, &drx);
    let behind = create(&n, &drx);
    n.core.ack(sent.id).unwrap().durable().unwrap(); // sent: DELIVERED, behind: SENT
    let before: Vec<Command> = pending
        .iter()
        .chain([&sent, &behind])
        .map(|c| n.core.command(&caller(), c.id).unwrap())
        .collect();
    shut(n);

    let n = open(dir.path(), T0);
    assert_eq!((n.report.apps, n.report.devices, n.report.live_commands), (1, 2, 5));
    for c in &before {
        assert_eq!(&n.core.command(&caller(), c.id).unwrap(), c);
    }
    assert_eq!(
        n.core.queued_commands(&caller(), &psm).unwrap(),
        pending.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    n.core.check_invariants().unwrap();
    // Timers were re-armed: the delivered one times out 180 s after delivery, the sent one after 180 s.
    n.core.advance(&n.clock, Duration::from_secs(181));
    assert_eq!(
        n.core.command(&caller(), sent.id).unwrap().status,
        CommandStatus::Timeout
    );
    assert_eq!(
        n.core.command(&caller(), behind.id).unwrap().status,
        CommandStatus::Timeout
    );
    // And the device wakes: the queue carries on in order.
    n.core.device_awake(&psm).unwrap().durable().unwrap();
    assert_eq!(
        n.core.command(&caller(), pending[0].id).unwrap().status,
        CommandStatus::Sent
    );
    shut(n);

    // What the second life did is durable too.
    let n = open(dir.path(), T0 + 200_000);
    assert_eq!(
        n.core.command(&caller(), pending[0].id).unwrap().status,
        CommandStatus::Sent
    );
    assert_eq!(
        n.core.command(&caller(), sent.id).unwrap().status,
        CommandStatus::Timeout
    );
    shut(n);
}

#[test]
fn expiry_while_down_fires_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let (psm, _) = setup(&n);
    let c = create(&n, &psm);
    shut(n);
    let n = open(dir.path(), T0 + 49 * 3_600_000);
    assert_eq!(n.report.fired_at_once, 1);
    assert_eq!(n.core.command(&caller(), c.id).unwrap().status, CommandStatus::Expired);
    shut(n);
    let n = open(dir.path(), T0 + 50 * 3_600_000);
    assert_eq!(
        n.core.command(&caller(), c.id).unwrap().status,
        CommandStatus::Expired,
        "and that is stored"
    );
    shut(n);
}

#[test]
fn a_cancel_task_in_flight_finishes_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let (psm, _) = setup(&n);
    let c = create(&n, &psm);
    let task = n.core.create_cancel_task(&caller(), &psm).unwrap().durable().unwrap();
    shut(n);
    let n = open(dir.path(), T0 + 1_000);
    assert_eq!(
        n.core.cancel_task(&caller(), task.id).unwrap().status,
        CancelTaskStatus::Success
    );
    assert_eq!(n.core.command(&caller(), c.id).unwrap().status, CommandStatus::Canceled);
    shut(n);
}

#[test]
fn a_second_opener_of_the_directory_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    match FjallStore::open(dir.path(), StoreConfig::default()) {
        Err(OpenError::Open { path, reason }) => {
            assert_eq!(path, dir.path());
            assert!(!reason.is_empty());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    shut(n);
}

#[test]
fn after_close_nothing_is_reported_durable() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let (psm, _) = setup(&n);
    n.store.close();
    let r = n
        .core
        .create_command(&caller(), NewCommand::new(psm, "S", "M", "{}"))
        .unwrap();
    assert_eq!(r.commit.wait(), Err(StoreError::Closed));
}

#[test]
fn corrupt_records_are_reported_with_where_and_what() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let (psm, _) = setup(&n);
    create(&n, &psm);
    shut(n);
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = db.keyspace("commands", fjall::KeyspaceCreateOptions::default).unwrap();
        ks.insert([0xffu8; 16], vec![1u8, b'C', 0, 1]).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let (store, recovered) = FjallStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(recovered.state.commands.len(), 1, "the good record still loads");
    assert_eq!(recovered.corrupt.len(), 1);
    assert_eq!(recovered.corrupt[0].keyspace, "commands");
    assert_eq!(recovered.corrupt[0].key_hex, "ff".repeat(16));
    assert!(
        recovered.corrupt[0].error.contains("truncated"),
        "{}",
        recovered.corrupt[0].error
    );
    store.close();
}

#[test]
fn the_callback_outbox_is_durable_and_comes_back_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = FjallStore::open(dir.path(), StoreConfig::default()).unwrap();
    use devcmd_core::CommandStore;
    let put = |k: &[u8], v: &[u8]| Mutation::PutOutbox {
        key: k.to_vec(),
        value: v.to_vec(),
    };
    store
        .submit(vec![
            put(b"002", b"second"),
            put(b"001", b"first"),
            put(b"003", b"third"),
        ])
        .wait()
        .unwrap();
    store
        .submit(vec![Mutation::RemoveOutbox { key: b"002".to_vec() }])
        .wait()
        .unwrap();
    store.close();
    drop(store);
    let (store, recovered) = FjallStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(
        recovered.outbox,
        vec![
            (b"001".to_vec(), b"first".to_vec()),
            (b"003".to_vec(), b"third".to_vec())
        ]
    );
    store.close();
}

#[test]
fn history_past_retention_is_deleted_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, recovered) = FjallStore::open(dir.path(), StoreConfig::default()).unwrap();
    let clock = VirtualClock::new(Timestamp::from_millis(T0));
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 8,
        retention: Duration::from_secs(3600),
        ..CoreConfig::default()
    })
    .clock(Arc::new(clock.clone()))
    .store(store.clone())
    .build()
    .unwrap();
    core.restore(recovered.state);
    let n = Node {
        core,
        store,
        clock,
        report: RestoreReport::default(),
    };
    let (psm, _) = setup(&n);
    let old = create(&n, &psm);
    let kept = create(&n, &psm);
    n.core.cancel_command(&caller(), old.id).unwrap().durable().unwrap();
    // Past the retention and the next sweep, the cancelled command leaves memory and the store.
    n.core.advance(&n.clock, Duration::from_secs(3600 + 61));
    n.core.device_awake(&psm).unwrap().durable().unwrap(); // a last synced write after the sweep's
    shut(n);
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    for name in ["commands_by_app", "commands_by_device"] {
        let ks = db.keyspace(name, fjall::KeyspaceCreateOptions::default).unwrap();
        assert_eq!(ks.iter().count(), 0, "{name} holds no entry of the forgotten command");
    }
    drop(db);
    let n = open(dir.path(), T0 + 3_700_000);
    assert_eq!(
        n.core.command(&caller(), old.id).unwrap_err(),
        QueryError::CommandNotFound
    );
    assert!(n.core.command(&caller(), kept.id).is_ok());
    assert_eq!(
        n.report.live_commands + n.report.terminal_commands,
        1,
        "only the live one was loaded"
    );
    shut(n);
}
