//! Criterion benchmarks of the dispatch core (no store, no link: the pure core).
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use devcmd_benches::core_with_devices;
use devcmd_core::{CommandOutcome, CommandQuery, CoreConfig, DeliveryProfile, NewCommand};

const DEVICES: usize = 10_000;

fn config() -> CoreConfig {
    CoreConfig {
        device_live_max: u32::MAX,
        live_max: u64::MAX,
        id_seed: Some(1),
        ..CoreConfig::default()
    }
}

/// Runs `iters` operations split over `threads` threads on a fresh core; returns the wall time.
fn parallel(
    threads: usize,
    iters: u64,
    profile: DeliveryProfile,
    op: fn(&devcmd_core::Dispatcher, &devcmd_core::Caller, &devcmd_core::DeviceId),
) -> Duration {
    let (core, caller, devices) = core_with_devices(config(), DEVICES, profile);
    let per_thread = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (core, caller, devices) = (&core, &caller, &devices);
            s.spawn(move || {
                for i in 0..per_thread {
                    let d = &devices[((i as usize) * 7 + t * 4999) % devices.len()];
                    op(core, caller, d);
                }
            });
        }
    });
    start.elapsed()
}

fn create_cached(core: &devcmd_core::Dispatcher, caller: &devcmd_core::Caller, d: &devcmd_core::DeviceId) {
    let r = core.create_command(caller, NewCommand::new(d.clone(), "Light", "SET", r#"{"level":3}"#));
    black_box(r.expect("created").value.id);
}

fn lifecycle(core: &devcmd_core::Dispatcher, caller: &devcmd_core::Caller, d: &devcmd_core::DeviceId) {
    let cmd = core
        .create_command(caller, NewCommand::new(d.clone(), "Light", "SET", r#"{"level":3}"#))
        .expect("created")
        .value;
    let _ = core.ack(cmd.id).expect("known");
    let _ = core
        .result(
            cmd.id,
            CommandOutcome {
                success: true,
                detail: None,
            },
        )
        .expect("known");
}

fn bench_create_and_lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("create_cached", threads), |b| {
            b.iter_custom(|iters| parallel(threads, iters, DeliveryProfile::Psm, create_cached))
        });
        g.bench_function(BenchmarkId::new("lifecycle_to_successful", threads), |b| {
            b.iter_custom(|iters| parallel(threads, iters, DeliveryProfile::Drx, lifecycle))
        });
    }
    g.finish();
}

fn bench_cancel_task(c: &mut Criterion) {
    let mut g = c.benchmark_group("cancel_task");
    for k in [10u64, 100, 1000] {
        g.throughput(Throughput::Elements(k));
        g.bench_function(BenchmarkId::new("pending", k), |b| {
            b.iter_custom(|iters| {
                let (core, caller, devices) = core_with_devices(config(), 1, DeliveryProfile::Psm);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..k {
                        let _ = core.create_command(&caller, NewCommand::new(devices[0].clone(), "S", "M", "{}"));
                    }
                    let start = Instant::now();
                    let task = core.create_cancel_task(&caller, &devices[0]).expect("task").value;
                    core.tick();
                    total += start.elapsed();
                    black_box(task);
                }
                total
            })
        });
    }
    g.finish();
}

fn bench_lookup_and_timers(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for stored in [100_000usize, 1_000_000] {
        let (core, caller, devices) = core_with_devices(config(), DEVICES, DeliveryProfile::Psm);
        let ids: Vec<_> = (0..stored)
            .map(|i| {
                core.create_command(&caller, NewCommand::new(devices[i % DEVICES].clone(), "S", "M", "{}"))
                    .expect("created")
                    .value
                    .id
            })
            .collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("command_by_id", stored), |b| {
            b.iter(|| {
                i = (i + 7919) % ids.len();
                black_box(core.command(&caller, ids[i]).expect("found"))
            })
        });
        g.bench_function(BenchmarkId::new("page_of_1000", stored), |b| {
            let q = CommandQuery {
                page_no: 50,
                page_size: 1000,
                ..CommandQuery::default()
            };
            b.iter(|| black_box(core.list_commands(&caller, &q).expect("page").items.len()))
        });
    }
    g.finish();

    // Timer arm + cancel: create a cached command (arms its expiry) and cancel
    // it (disarms), with 0 or 1 M other deadlines armed.
    let mut g = c.benchmark_group("timer_arm_cancel");
    for armed in [0usize, 1_000_000] {
        let (core, caller, devices) = core_with_devices(config(), DEVICES, DeliveryProfile::Psm);
        for i in 0..armed {
            let _ = core.create_command(&caller, NewCommand::new(devices[i % DEVICES].clone(), "S", "M", "{}"));
        }
        let mut n = 0usize;
        g.bench_function(BenchmarkId::new("with_armed", armed), |b| {
            b.iter(|| {
                n += 1;
                let cmd = core
                    .create_command(&caller, NewCommand::new(devices[n % DEVICES].clone(), "S", "M", "{}"))
                    .expect("created")
                    .value;
                black_box(core.cancel_command(&caller, cmd.id).expect("cancelled").value.status)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_create_and_lifecycle, bench_cancel_task, bench_lookup_and_timers
}
criterion_main!(benches);
