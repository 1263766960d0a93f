//! Terminal commands leave memory for the store's history after their grace
//! period and stay queryable until retention: pages, totals, single reads,
//! cancels and cancel tasks see them exactly as if they had stayed in memory;
//! recovery does not load them; the history sweep deletes them in batches.

use std::time::Duration;

mod common;

use common::{Node, T0, add_app, caller, create, open_with, shut};
use devcmd_core::*;

const GRACE: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(6 * 3600);

fn open(dir: &std::path::Path, at: u64) -> Node {
    let config = CoreConfig {
        shard_count: 4,
        history_grace: GRACE,
        retention: RETENTION,
        sweep_interval: Duration::from_secs(1),
        id_seed: Some(7),
        ..CoreConfig::default()
    };
    open_with(dir, at, config, true)
}

fn setup(n: &Node, devices: usize) -> Vec<DeviceId> {
    add_app(n);
    (0..devices)
        .map(|i| {
            n.core
                .register_device(&caller(), NewDevice::new(&format!("node-{i}")))
                .unwrap()
                .durable()
                .unwrap()
                .id
        })
        .collect()
}

fn list(
    n: &Node,
    device: Option<&DeviceId>,
    from: Option<u64>,
    to: Option<u64>,
    page_no: u32,
    size: u32,
) -> Page<Command> {
    n.core
        .list_commands(
            &caller(),
            &CommandQuery {
                device_id: device.cloned(),
                from: from.map(Timestamp::from_millis),
                to: to.map(Timestamp::from_millis),
                page_no,
                page_size: size,
            },
        )
        .unwrap()
}

fn ids(p: &Page<Command>) -> Vec<CommandId> {
    p.items.iter().map(|c| c.id).collect()
}

/// Every page of every window a client might ask for, as one comparable value.
fn all_views(n: &Node, devices: &[DeviceId], t_end: u64) -> Vec<(u64, Vec<CommandId>)> {
    let mut out = Vec::new();
    let windows = [
        (None, None),
        (Some(T0 + 90_000), None),
        (Some(T0 + 30_000), Some(T0 + 400_000)),
        (None, Some(t_end - 45_000)),
        (Some(T0 + 59_999), Some(T0 + 60_001)),
    ];
    for (from, to) in windows {
        for size in [1, 7, 1000] {
            for page in 0..4 {
                let p = list(n, None, from, to, page, size);
                out.push((p.total_size, ids(&p)));
            }
        }
        for d in devices {
            let p = list(n, Some(d), from, to, 0, 5);
            out.push((p.total_size, ids(&p)));
            let p = list(n, Some(d), from, to, 1, 5);
            out.push((p.total_size, ids(&p)));
        }
    }
    out
}

#[test]
fn archived_commands_read_exactly_as_they_did_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let devices = setup(&n, 3);
    // 150 commands over ~10 minutes, one every 4 s (windows end in partial
    // seconds and partial minutes of the counters); every other one is cancelled at once, the rest stay PENDING
    // (the devices are PSM and never report).
    let mut made = Vec::new();
    for i in 0..150usize {
        let c = create(&n, &devices[i % 3]);
        if i % 2 == 0 {
            n.core.cancel_command(&caller(), c.id).unwrap().durable().unwrap();
        }
        made.push(c.id);
        n.clock.advance(Duration::from_millis(4_000));
    }
    let t_end = n.clock.now().as_millis();
    let before = all_views(&n, &devices, t_end);
    let one = n.core.command(&caller(), made[0]).unwrap();
    assert_eq!(one.status, CommandStatus::Canceled);
    assert_eq!(list(&n, None, None, None, 0, 1000).total_size, 150);

    // Past the grace period every cancelled command leaves memory.
    n.core.advance(&n.clock, GRACE + Duration::from_secs(2));
    assert_eq!(n.core.stats().archived, 75, "{:?}", n.core.stats());
    n.core.check_invariants().unwrap();
    assert_eq!(all_views(&n, &devices, t_end), before, "pages and totals unchanged");
    assert_eq!(n.core.command(&caller(), made[0]).unwrap(), one);
    assert_eq!(
        n.core.cancel_command(&caller(), made[0]).unwrap_err(),
        CancelError::NotCancellable {
            status: CommandStatus::Canceled
        }
    );
    let other = Caller::own(AppId::new("other").unwrap());
    assert!(n.core.command(&other, made[0]).is_err(), "another app does not see it");

    // Recovery loads only what memory held; the history still answers.
    shut(n);
    let n = open(dir.path(), t_end + 62_000);
    assert_eq!(n.report.live_commands, 75);
    assert_eq!(n.report.terminal_commands, 0);
    assert_eq!(all_views(&n, &devices, t_end), before, "and after a restart");
    shut(n);
}

#[test]
fn the_history_sweep_deletes_past_retention_in_batches_and_counts_follow() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let devices = setup(&n, 1);
    for _ in 0..30 {
        let c = create(&n, &devices[0]);
        n.core.cancel_command(&caller(), c.id).unwrap().durable().unwrap();
        n.clock.advance(Duration::from_secs(20));
    }
    n.core.advance(&n.clock, GRACE + Duration::from_secs(2));
    assert_eq!(n.core.stats().archived, 30);
    assert_eq!(list(&n, None, None, None, 0, 10).total_size, 30);
    // Retention is counted from the end: the first 10 ended in the first 200 s.
    n.clock
        .advance_to(Timestamp::from_millis(T0 + RETENTION.as_millis() as u64 + 190_000));
    let cutoff = Timestamp::from_millis(n.clock.now().as_millis() - RETENTION.as_millis() as u64);
    assert_eq!(n.store.sweep_history(cutoff, 4).unwrap(), 4);
    assert_eq!(list(&n, None, None, None, 0, 10).total_size, 26);
    assert_eq!(n.store.sweep_history(cutoff, 100).unwrap(), 6);
    assert_eq!(n.store.sweep_history(cutoff, 100).unwrap(), 0, "nothing more is due");
    let p = list(&n, None, None, None, 0, 1000);
    assert_eq!(p.total_size, 20);
    assert_eq!(p.items.len(), 20);
    assert_eq!(list(&n, Some(&devices[0]), None, None, 0, 1000).total_size, 20);
    // The counters are durable: after a restart totals stay right.
    shut(n);
    let n = open(dir.path(), T0 + RETENTION.as_millis() as u64 + 200_000);
    assert_eq!(list(&n, None, None, None, 0, 1000).total_size, 20);
    assert_eq!(list(&n, None, Some(T0 + 300_000), None, 0, 1000).total_size, 15);
    shut(n);
}

#[test]
fn a_cancel_task_lists_its_commands_after_they_left_memory() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let devices = setup(&n, 1);
    let made: Vec<_> = (0..3).map(|_| create(&n, &devices[0]).id).collect();
    let task = n
        .core
        .create_cancel_task(&caller(), &devices[0])
        .unwrap()
        .durable()
        .unwrap();
    n.core.tick();
    let done = n.core.cancel_task(&caller(), task.id).unwrap();
    assert_eq!(done.status, CancelTaskStatus::Success);
    n.core.advance(&n.clock, GRACE + Duration::from_secs(2));
    assert_eq!(n.core.stats().archived, 3);
    let later = n.core.cancel_task(&caller(), task.id).unwrap();
    assert_eq!(later, done, "same task, same commands, from the history");
    assert_eq!(later.commands.iter().map(|c| c.id).collect::<Vec<_>>(), made);
    let listed = n.core.list_cancel_tasks(&caller(), &TaskQuery::default()).unwrap();
    assert_eq!(listed.items, vec![done]);
    shut(n);
}

/// Queries running while shards move commands to the history (the real
/// store, its writer thread syncing in the background) never miss one and
/// never count one twice: every page, total and single read is exact at
/// every moment.
#[test]
fn queries_stay_exact_while_commands_move_to_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path(), T0);
    let devices = setup(&n, 4);
    const N: usize = 1200;
    let mut made = Vec::with_capacity(N);
    for i in 0..N {
        let c = create(&n, &devices[i % 4]);
        n.core.cancel_command(&caller(), c.id).unwrap().durable().unwrap();
        made.push(c.id);
        // One command every 50 ms: archiving spreads over a minute of sweeps.
        n.clock.advance(Duration::from_millis(50));
    }
    let per_device: Vec<Vec<CommandId>> = (0..4)
        .map(|d| made.iter().skip(d).step_by(4).copied().collect())
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for reader in 0..2 {
            let (n, made, per_device, done, devices) = (&n, &made, &per_device, &done, &devices);
            s.spawn(move || {
                let mut rounds = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) || rounds < 3 {
                    let first = list(n, None, None, None, 0, 1000);
                    let second = list(n, None, None, None, 1, 1000);
                    assert_eq!((first.total_size, second.total_size), (N as u64, N as u64));
                    let mut all = ids(&first);
                    all.extend(ids(&second));
                    assert_eq!(&all, made, "round {rounds}: every command once, in order");
                    let d = (rounds as usize + reader) % 4;
                    let p = list(n, Some(&devices[d]), None, None, 0, 1000);
                    assert_eq!(ids(&p), per_device[d], "device {d}, round {rounds}");
                    let id = made[(rounds as usize * 7919 + reader) % N];
                    assert_eq!(n.core.command(&caller(), id).unwrap().status, CommandStatus::Canceled);
                    rounds += 1;
                }
            });
        }
        // Time moves on in small steps; each tick's sweeps archive what passed its grace.
        let until = n.clock.now().saturating_add(GRACE + Duration::from_secs(3));
        while n.clock.now() < until {
            n.core.advance(&n.clock, Duration::from_millis(200));
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    // Sweeps that met a query holding archiving back left their share for
    // the next sweep: a few more seconds move the rest.
    for _ in 0..30 {
        if n.core.stats().archived == N as u64 {
            break;
        }
        n.core.advance(&n.clock, Duration::from_secs(1));
    }
    assert_eq!(n.core.stats().archived, N as u64);
    shut(n);
}
