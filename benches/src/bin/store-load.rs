//! Durable creates through the real store (fjall, every batch synced), at
//! several numbers of concurrent writers, with commit latency percentiles;
//! and recovery time for N stored live commands.
//!
//! `cargo run --release -p devcmd-benches --bin store-load -- [SECONDS] [RECOVER_N] [DIR]`
//! (defaults: 3 s per writer count, recovery of 1 000 000, a directory under the system temp dir)

use std::sync::Arc;
use std::time::{Duration, Instant};

use devcmd_core::{App, AppId, Caller, CoreConfig, DeliveryProfile, Dispatcher, NewCommand, NewDevice};
use devcmd_store::{FjallStore, StoreConfig};

const DEVICES: usize = 10_000;

fn fresh_dir(base: &std::path::Path, name: &str) -> std::path::PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn setup(dir: &std::path::Path) -> (Arc<FjallStore>, Dispatcher, Caller, Vec<devcmd_core::DeviceId>) {
    let (store, recovered) = FjallStore::open(dir, StoreConfig::default()).expect("store opens");
    let config = CoreConfig {
        device_live_max: u32::MAX,
        live_max: u64::MAX,
        ..CoreConfig::default()
    };
    let core = Dispatcher::builder(config)
        .store(store.clone())
        .build()
        .expect("valid config");
    core.restore(recovered.state);
    let app = AppId::new("bench").expect("valid");
    let caller = Caller::own(app.clone());
    let mut devices = Vec::with_capacity(DEVICES);
    if core.app(&app).is_none() {
        core.add_app(App {
            id: app,
            secret_hash: String::new(),
            quota: None,
            authorized_apps: vec![],
        })
        .expect("new app")
        .durable()
        .expect("synced");
    }
    for i in 0..DEVICES {
        let mut req = NewDevice::new(&format!("{:015}", 863_703_030_000_000u64 + i as u64));
        req.device_id = Some(devcmd_core::DeviceId::new(&format!("bench-{i:06}")).expect("valid"));
        req.profile = DeliveryProfile::Psm;
        match core.register_device(&caller, req) {
            Ok(r) => devices.push(r.durable().expect("synced").id),
            Err(_) => devices.push(devcmd_core::DeviceId::new(&format!("bench-{i:06}")).expect("valid")),
        }
    }
    (store, core, caller, devices)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One row: `threads` threads each keeping up to `window` creates waiting
/// for their commits (window 1: each waits before the next), for `seconds`.
/// Returns creates/s, sorted latencies in µs, and mutations per synced batch.
fn run_row(dir: &std::path::Path, threads: usize, window: usize, seconds: u64) -> (f64, Vec<u32>, f64) {
    let (store, core, caller, devices) = setup(dir);
    let stats = store.stats();
    let batches0 = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    let muts0 = stats.mutations.load(std::sync::atomic::Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut lat: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (core, caller, devices) = (&core, &caller, &devices);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut open = std::collections::VecDeque::new();
                    let finish = |(t0, commit): (Instant, devcmd_core::Commit), lat: &mut Vec<u32>| {
                        commit.wait().expect("synced");
                        lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    };
                    let mut i = t;
                    while Instant::now() < until {
                        let req = NewCommand::new(devices[i % DEVICES].clone(), "Meter", "SET", PARAS);
                        let t0 = Instant::now();
                        let r = core.create_command(caller, req).expect("created");
                        open.push_back((t0, r.commit));
                        if open.len() >= window
                            && let Some(o) = open.pop_front()
                        {
                            finish(o, &mut lat);
                        }
                        i += threads;
                    }
                    while let Some(o) = open.pop_front() {
                        finish(o, &mut lat);
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("writer")).collect()
    });
    let took = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed) - batches0;
    let muts = stats.mutations.load(std::sync::atomic::Ordering::Relaxed) - muts0;
    drop(core);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
    (lat.len() as f64 / took, lat, muts as f64 / batches.max(1) as f64)
}

const PARAS: &str = r#"{"value":"0123456789abcdef0123456789abcdef0123456789ab"}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let recover_n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("devcmd-store-load"));
    println!(
        "durable create (fsync before acknowledgement), {seconds} s per row, data under {}",
        base.display()
    );
    println!("closed loop: each writer waits for its commit");
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10} {:>12}",
        "writers", "creates/s", "p50 µs", "p99 µs", "max µs", "per batch"
    );
    for writers in [1usize, 2, 8, 64] {
        let (rate, lat, per_batch) = run_row(&fresh_dir(&base, &format!("w{writers}")), writers, 1, seconds);
        let max = lat.last().copied().unwrap_or(0);
        println!(
            "{writers:>8} {rate:>12.0} {:>10} {:>10} {max:>10} {per_batch:>12.1}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    // Pipelined: two threads keep up to `window` creates each waiting for
    // their commit, as an async server with many requests in flight does.
    println!("\npipelined, 2 threads");
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>12}",
        "window", "creates/s", "p50 µs", "p99 µs", "per batch"
    );
    for window in [64usize, 1024, 8192] {
        let (rate, lat, per_batch) = run_row(&fresh_dir(&base, &format!("p{window}")), 2, window, seconds);
        println!(
            "{window:>8} {rate:>12.0} {:>10} {:>10} {per_batch:>12.1}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }

    if recover_n > 0 {
        let dir = fresh_dir(&base, "recovery");
        let (store, core, caller, devices) = setup(&dir);
        let t = Instant::now();
        std::thread::scope(|s| {
            for w in 0..64 {
                let (core, caller, devices) = (&core, &caller, &devices);
                s.spawn(move || {
                    for i in (w..recover_n).step_by(64) {
                        let req = NewCommand::new(
                            devices[i % DEVICES].clone(),
                            "Meter",
                            "SET",
                            r#"{"value":"0123456789abcdef0123456789abcdef0123456789ab"}"#,
                        );
                        core.create_command(caller, req)
                            .expect("created")
                            .durable()
                            .expect("synced");
                    }
                });
            }
        });
        println!("wrote {recover_n} live commands in {:.1} s", t.elapsed().as_secs_f64());
        drop(core);
        store.close();
        drop(store);
        let t = Instant::now();
        let (store, recovered) = FjallStore::open(&dir, StoreConfig::default()).expect("reopens");
        let loaded = t.elapsed();
        let opened_in = recovered.opened_in;
        let core = Dispatcher::builder(CoreConfig {
            device_live_max: u32::MAX,
            live_max: u64::MAX,
            ..CoreConfig::default()
        })
        .store(store.clone())
        .build()
        .expect("valid");
        let report = core.restore(recovered.state);
        println!(
            "recovery of {} live commands: load {:.2} s (of which fjall open and journal replay {:.2} s) + restore {:.2} s = {:.2} s to ready (refused {})",
            report.live_commands,
            loaded.as_secs_f64(),
            opened_in.as_secs_f64(),
            report.took.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            report.refused.len()
        );
        drop(core);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
