//! Terminal commands leaving memory for the store's history, measured:
//! memory held, queries over memory + history, the retention sweep.
//!
//! Creates N commands (one per virtual millisecond, over 10 000 PSM devices)
//! through the real store and cancels each at once, with the shards' sweeps
//! running as time passes; with `history` the cancelled commands move to the
//! store after the 60 s grace, with `memory` they stay (the retention is 72 h).
//! Then times list queries (first page with totalSize, a deep page, a
//! 5-minute window, one device) and single reads, and with `history` the
//! retention sweep.
//!
//! `cargo run --release -p devcmd-benches --bin history-load -- [N] [history|memory] [DIR]`
//! (defaults: 1 000 000, history, a directory under the system temp dir)

use std::sync::Arc;
use std::time::{Duration, Instant};

use devcmd_benches::rss_bytes;
use devcmd_core::{
    App, AppId, Caller, Clock, CommandQuery, CoreConfig, DeviceId, Dispatcher, NewCommand, NewDevice, Timestamp,
    VirtualClock,
};
use devcmd_store::{FjallStore, StoreConfig};

const DEVICES: usize = 10_000;
const T0: u64 = 1_700_000_000_000;

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Runs `f` `reps` times and prints its median and worst wall time.
fn timed(what: &str, reps: usize, mut f: impl FnMut(usize) -> u64) {
    let mut took = Vec::with_capacity(reps);
    let mut check = 0u64;
    for i in 0..reps {
        let t = Instant::now();
        check = check.wrapping_add(f(i));
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "  {what:<44} median {:>9.1} µs   max {:>9.1} µs   (check {check})",
        took[reps / 2].as_secs_f64() * 1e6,
        took[reps - 1].as_secs_f64() * 1e6
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let history = args.next().is_none_or(|m| m != "memory");
    let base = args
        .next()
        .map_or_else(|| std::env::temp_dir().join("devcmd-history-load"), Into::into);
    let _ = std::fs::remove_dir_all(&base);
    let (store, recovered) = FjallStore::open(&base, StoreConfig::default()).expect("store opens");
    let clock = VirtualClock::new(Timestamp::from_millis(T0));
    let config = CoreConfig {
        device_live_max: u32::MAX,
        live_max: u64::MAX,
        sweep_interval: Duration::from_secs(1),
        id_seed: Some(3),
        ..CoreConfig::default()
    };
    let grace = config.history_grace;
    let retention = config.retention;
    let mut builder = Dispatcher::builder(config)
        .clock(Arc::new(clock.clone()))
        .store(store.clone());
    if history {
        builder = builder.history(store.clone());
    }
    let core = builder.build().expect("valid config");
    core.restore(recovered.state);
    let app = AppId::new("bench").expect("valid");
    let caller = Caller::own(app.clone());
    core.add_app(App {
        id: app,
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    })
    .expect("new app")
    .durable()
    .expect("synced");
    let devices: Vec<DeviceId> = (0..DEVICES)
        .map(|i| {
            let mut req = NewDevice::new(&format!("{:015}", 863_703_030_000_000u64 + i as u64));
            req.device_id = Some(DeviceId::new(&format!("hist-{i:06}")).expect("valid"));
            core.register_device(&caller, req).expect("registered").value.id
        })
        .collect();
    let rss0 = rss_bytes().unwrap_or(0);
    println!(
        "{} commands, {} mode, store in {}",
        n,
        if history { "history" } else { "memory" },
        base.display()
    );

    // Create and cancel, one per virtual millisecond; sweeps run as time passes.
    let paras = format!("{{\"value\":\"{}\"}}", "x".repeat(52));
    let started = Instant::now();
    let mut peak = 0u64;
    let mut ids = Vec::with_capacity(n);
    let mut last = None;
    for i in 0..n {
        let req = NewCommand::new(devices[i % DEVICES].clone(), "Light", "SET", &paras);
        let c = core.create_command(&caller, req).expect("created").value;
        let r = core.cancel_command(&caller, c.id).expect("cancelled");
        ids.push(c.id);
        last = Some(r.commit);
        clock.advance(Duration::from_millis(1));
        if i % 1000 == 999 {
            core.tick();
        }
        if i % 100_000 == 99_999 {
            if let Some(c) = last.take() {
                c.wait().expect("synced");
            }
            let rss = rss_bytes().unwrap_or(0);
            peak = peak.max(rss);
            eprintln!(
                "  {} created+cancelled, in memory {}, archived {}, RSS {:.0} MiB",
                i + 1,
                (i as u64 + 1).saturating_sub(core.stats().swept),
                core.stats().archived,
                mib(rss)
            );
        }
    }
    if let Some(c) = last.take() {
        c.wait().expect("synced");
    }
    let made = started.elapsed();
    let rss_end = rss_bytes().unwrap_or(0);
    peak = peak.max(rss_end);
    println!(
        "create+cancel {n} in {:.1} s ({:.0}/s, both durable); RSS above devices: end {:.0} MiB, peak {:.0} MiB; archived {}",
        made.as_secs_f64(),
        n as f64 / made.as_secs_f64(),
        mib(rss_end.saturating_sub(rss0)),
        mib(peak.saturating_sub(rss0)),
        core.stats().archived
    );

    let ws = store.stats();
    let commit_s = ws.commit_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
    println!(
        "writer: {} batches, {} mutations, {:.1} s in commit+sync ({:.0}% of the run)",
        ws.batches.load(std::sync::atomic::Ordering::Relaxed),
        ws.mutations.load(std::sync::atomic::Ordering::Relaxed),
        commit_s,
        100.0 * commit_s / made.as_secs_f64()
    );

    // Everything past its grace, then query.
    let t = Instant::now();
    core.advance(&clock, grace + Duration::from_secs(2));
    core.visible_durable(None)
        .into_iter()
        .for_each(|c| c.wait().expect("synced"));
    println!(
        "rest of the grace: {:.2} s; archived {}, in memory {}",
        t.elapsed().as_secs_f64(),
        core.stats().archived,
        n as u64 - core.stats().swept
    );
    let list = |q: &CommandQuery| core.list_commands(&caller, q).expect("page");
    println!(
        "queries ({} shards + {}):",
        core.config().shard_count,
        if history { "history" } else { "no history" }
    );
    timed("first page of 100, totalSize over all", 50, |_| {
        list(&CommandQuery {
            page_size: 100,
            ..CommandQuery::default()
        })
        .total_size
    });
    timed("page of 100 at the middle", 50, |_| {
        let p = list(&CommandQuery {
            page_size: 100,
            page_no: (n / 200) as u32,
            ..CommandQuery::default()
        });
        p.items.len() as u64
    });
    let mid = T0 + n as u64 / 2;
    timed("5-minute window, page of 100", 50, |_| {
        list(&CommandQuery {
            from: Some(Timestamp::from_millis(mid)),
            to: Some(Timestamp::from_millis(mid + 300_000)),
            page_size: 100,
            ..CommandQuery::default()
        })
        .total_size
    });
    timed("one device, page of 10", 200, |i| {
        list(&CommandQuery {
            device_id: Some(devices[(i * 7919) % DEVICES].clone()),
            page_size: 10,
            ..CommandQuery::default()
        })
        .total_size
    });
    timed("one command by id", 2000, |i| {
        let id = ids[(i * 104_729) % n];
        u64::from(core.command(&caller, id).expect("found").issued_times)
    });

    if history {
        clock.advance(retention);
        let cutoff = Timestamp::from_millis(clock.now().as_millis() - retention.as_millis() as u64);
        let t = Instant::now();
        let mut deleted = 0;
        loop {
            let d = store.sweep_history(cutoff, 10_000).expect("swept");
            deleted += d;
            if d < 10_000 {
                break;
            }
        }
        println!(
            "retention sweep: {deleted} deleted in {:.1} s ({:.0}/s)",
            t.elapsed().as_secs_f64(),
            deleted as f64 / t.elapsed().as_secs_f64()
        );
    }
    drop(core);
    store.close();
    let _ = std::fs::remove_dir_all(&base);
}
