//! A dispatcher rebuilt from its store carries on exactly as the original:
//! same commands, queues, in-flight commands, tasks and deadlines.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, T0};
use devcmd_core::*;

fn recovered(store: &MemoryStore) -> RecoveredState {
    store.recovered_state()
}

fn rebuilt(h: &Harness, clock: &VirtualClock) -> (Dispatcher, RestoreReport) {
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 4,
        id_seed: Some(99),
        ..CoreConfig::default()
    })
    .clock(Arc::new(clock.clone()))
    .store(MemoryStore::new())
    .build()
    .unwrap();
    let report = core.restore(recovered(&h.store));
    (core, report)
}

#[test]
fn every_live_state_comes_back_and_carries_on() {
    let h = Harness::new();
    let psm = h.device(DeliveryProfile::Psm);
    let drx = h.device(DeliveryProfile::Drx);
    let pending: Vec<Command> = (0..3).map(|_| h.cached(&psm)).collect();
    let sent = h.cached(&drx); // SENT at once
    let queued_behind = h.cached(&drx);
    let delivered = {
        let d = h.device(DeliveryProfile::Drx);
        let c = h.cached(&d);
        h.core.ack(c.id).unwrap().durable().unwrap();
        c
    };
    let done = {
        let d = h.device(DeliveryProfile::Drx);
        let c = h.cached(&d);
        h.core
            .result(
                c.id,
                CommandOutcome {
                    success: true,
                    detail: Some("{}".into()),
                },
            )
            .unwrap()
            .durable()
            .unwrap();
        c
    };
    let task = h.core.create_cancel_task(&h.caller, &psm).unwrap().durable().unwrap();
    h.at_ms(1_000);

    // "Restart" at the same instant.
    let clock = VirtualClock::new(h.clock.now());
    let (core, report) = rebuilt(&h, &clock);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!((report.apps, report.devices), (1, 4));
    assert_eq!(report.terminal_commands, 4, "3 cancelled by the task, 1 successful");
    assert_eq!(report.live_commands + report.terminal_commands, 7);
    core.check_invariants().unwrap();
    for c in pending.iter().chain([&sent, &queued_behind, &delivered, &done]) {
        // The task ran before the restart in the original (the at_ms tick), so compare with the original.
        assert_eq!(core.command(&h.caller, c.id).unwrap(), h.get(c.id), "{:?}", c.id);
    }
    assert_eq!(core.queued_commands(&h.caller, &drx).unwrap(), vec![queued_behind.id]);
    assert_eq!(
        core.cancel_task(&h.caller, task.id).unwrap().status,
        h.core.cancel_task(&h.caller, task.id).unwrap().status
    );
    assert_eq!(core.stats().live, h.core.stats().live);

    // Both go on in lockstep: resends, the timeout, the next in line, the result timeout.
    for step in 0..40 {
        h.core.advance(&h.clock, Duration::from_secs(10));
        core.advance(&clock, Duration::from_secs(10));
        for c in pending.iter().chain([&sent, &queued_behind, &delivered, &done]) {
            assert_eq!(
                core.command(&h.caller, c.id).unwrap().status,
                h.status(c.id),
                "step {step}"
            );
        }
    }
    assert_eq!(h.status(sent.id), CommandStatus::Timeout);
    assert_eq!(h.status(queued_behind.id), CommandStatus::Timeout);
    assert_eq!(h.status(delivered.id), CommandStatus::Timeout);

    // Pages agree too, and new commands get fresh slots and ids.
    let all = |d: &Dispatcher| d.list_commands(&h.caller, &CommandQuery::default()).unwrap().items;
    assert_eq!(all(&core), all(&h.core));
    let fresh = core
        .create_command(&h.caller, NewCommand::new(psm.clone(), "S", "M", "{}"))
        .unwrap()
        .value;
    assert!(core.command(&h.caller, fresh.id).is_ok());
    assert!(all(&h.core).iter().all(|c| c.id != fresh.id));
    core.check_invariants().unwrap();
}

#[test]
fn deadlines_that_passed_while_down_fire_at_once() {
    let h = Harness::new();
    let psm = h.device(DeliveryProfile::Psm);
    let drx = h.device(DeliveryProfile::Drx);
    let waiting = h.cached(&psm);
    let sent = h.cached(&drx);
    // Down for 49 hours.
    let clock = VirtualClock::new(Timestamp::from_millis(T0 + 49 * 3600 * 1000));
    let (events, changes) = ChannelEvents::bounded(64);
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 4,
        ..CoreConfig::default()
    })
    .clock(Arc::new(clock.clone()))
    .events(Arc::new(events))
    .build()
    .unwrap();
    let report = core.restore(recovered(&h.store));
    assert_eq!(report.fired_at_once, 2);
    assert_eq!(
        core.command(&h.caller, waiting.id).unwrap().status,
        CommandStatus::Expired
    );
    assert_eq!(core.command(&h.caller, sent.id).unwrap().status, CommandStatus::Timeout);
    let seen: Vec<_> = changes.try_iter().map(|c| (c.command_id, c.to)).collect();
    assert!(seen.contains(&(waiting.id, CommandStatus::Expired)));
    assert!(seen.contains(&(sent.id, CommandStatus::Timeout)));
    assert_eq!(core.stats().live, 0);
}

#[test]
fn a_cancel_task_that_had_not_run_runs_after_the_restart() {
    let h = Harness::new();
    let psm = h.device(DeliveryProfile::Psm);
    let a = h.cached(&psm);
    let task = h.core.create_cancel_task(&h.caller, &psm).unwrap().durable().unwrap();
    let clock = VirtualClock::new(h.clock.now());
    let (core, report) = rebuilt(&h, &clock);
    assert_eq!(report.tasks, 1);
    assert_eq!(
        core.cancel_task(&h.caller, task.id).unwrap().status,
        CancelTaskStatus::Success
    );
    assert_eq!(core.command(&h.caller, a.id).unwrap().status, CommandStatus::Canceled);
}

#[test]
fn records_that_cannot_come_back_are_reported_not_dropped_silently() {
    let h = Harness::new();
    let psm = h.device(DeliveryProfile::Psm);
    let c = h.cached(&psm);
    let mut state = recovered(&h.store);
    let mut twin = state.commands[0].clone();
    twin.creation_time = Timestamp::from_millis(T0 + 1);
    state.commands.push(twin); // same id, same slot
    state.devices.clear(); // and its device is gone, though the command is live
    let clock = VirtualClock::new(h.clock.now());
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 4,
        ..CoreConfig::default()
    })
    .clock(Arc::new(clock))
    .build()
    .unwrap();
    let report = core.restore(state);
    assert_eq!(report.live_commands, 0);
    assert_eq!(report.refused.len(), 2, "{:?}", report.refused);
    assert!(report.refused.iter().all(|r| r.contains(&c.id.to_string())));
    core.check_invariants().unwrap();
}

#[test]
fn a_restart_with_the_same_seed_never_reissues_a_forgotten_id() {
    // Found by the dispatch_ops fuzz target: with a fixed id seed, a dispatcher
    // rebuilt after the only command had been forgotten handed out its id again.
    let config = CoreConfig {
        shard_count: 1,
        id_seed: Some(5),
        retention: Duration::from_secs(60),
        ..CoreConfig::default()
    };
    let mut h = Harness::with_config(config);
    let dev = h.device(DeliveryProfile::Psm);
    let first = h.cached(&dev);
    h.core.cancel_command(&h.caller, first.id).unwrap().durable().unwrap();
    h.advance(Duration::from_secs(121)); // past retention and the next sweep
    assert!(h.store.command(first.id).is_none(), "forgotten");
    h.restart();
    let next = h.cached(&dev);
    assert_ne!(next.id, first.id);
}

#[test]
fn a_cancel_task_outlives_its_removed_device_across_a_restart() {
    // Found by the dispatch_ops fuzz target: restore refused the task of a
    // device removed before the restart.
    let mut h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let c = h.cached(&dev);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    h.core.remove_device(&h.caller, &dev).unwrap().durable().unwrap();
    let report = h.restart();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let t = h.core.cancel_task(&h.caller, task.id).unwrap();
    assert_eq!(t.device_id, dev);
    assert_eq!(
        t.status,
        CancelTaskStatus::Success,
        "its command was cancelled with the device"
    );
    assert_eq!(h.status(c.id), CommandStatus::Canceled);
    h.core.check_invariants().unwrap();
}

#[test]
fn an_immediate_command_stored_pending_is_refused_not_kept_pending_forever() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let c = h.immediate(&dev);
    let mut state = recovered(&h.store);
    let stored = state.commands.iter_mut().find(|s| s.id == c.id).unwrap();
    stored.status = CommandStatus::Pending;
    stored.platform_issued_time = None;
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 4,
        ..CoreConfig::default()
    })
    .clock(Arc::new(VirtualClock::new(h.clock.now())))
    .build()
    .unwrap();
    let report = core.restore(state);
    assert_eq!(
        report.refused,
        vec![format!("command {}: immediate command stored PENDING", c.id)]
    );
    assert_eq!(core.stats().live, 0);
    core.check_invariants().unwrap();
}

/// A well-formed but damaged id naming a slot near the top of the range used
/// to make restore allocate every slot up to it (about 150 GB at 2^30); now
/// it costs a pointer per skipped chunk, and the command is restored there.
#[test]
fn a_command_at_a_far_slot_restores_without_allocating_the_slots_below() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let c = h.cached(&dev);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    let mut state = recovered(&h.store);
    let far_slot = (1u32 << 30) - 1;
    let stored = state.commands.iter_mut().find(|s| s.id == c.id).unwrap();
    let far = CommandId::compose(c.id.shard(), far_slot, c.id.to_u128() & ((1u128 << 80) - 1));
    stored.id = far;
    let stored_task = state.tasks.iter_mut().find(|t| t.id == task.id).unwrap();
    stored_task.id = TaskId::compose(task.id.shard(), far_slot, task.id.to_u128() & ((1u128 << 80) - 1));
    stored_task.command_ids = vec![far];
    let task_id = stored_task.id;
    let before = rss_kib();
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 4,
        id_seed: Some(99),
        ..CoreConfig::default()
    })
    .clock(Arc::new(h.clock.clone()))
    .build()
    .unwrap();
    let report = core.restore(state);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    // The waiting task ran at the restore and cancelled the command.
    assert_eq!(core.command(&h.caller, far).unwrap().status, CommandStatus::Canceled);
    let t = core.cancel_task(&h.caller, task_id).unwrap();
    assert_eq!((t.status, t.total_count()), (CancelTaskStatus::Success, 1));
    core.check_invariants().unwrap();
    // Slots below it were not allocated (a 2^30-slot table is tens of GB;
    // a pointer per 4096-slot chunk is 2 MiB).
    if let (Some(a), Some(b)) = (before, rss_kib()) {
        assert!(b.saturating_sub(a) < 512 * 1024, "RSS grew by {} KiB", b - a);
    }
    // New commands take ordinary slots.
    let next = core
        .create_command(&h.caller, NewCommand::new(dev, "S", "M", "{}"))
        .unwrap()
        .value;
    assert!(next.id.slot() < far_slot);
    core.check_invariants().unwrap();
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
