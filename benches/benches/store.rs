//! Criterion benchmarks of durable creates through the real store (fjall,
//! every batch synced before the create is acknowledged), at 1, 2, 8 and 64
//! writer threads each waiting for its own commit. Latency percentiles and
//! pipelined figures: `cargo run --release -p devcmd-benches --bin store-load`.
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use devcmd_core::{App, AppId, Caller, CoreConfig, DeliveryProfile, Dispatcher, NewCommand, NewDevice};
use devcmd_store::{FjallStore, StoreConfig};

const DEVICES: usize = 1_000;

fn bench_durable_create(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_durable_create");
    g.throughput(Throughput::Elements(1));
    for writers in [1usize, 2, 8, 64] {
        let dir = std::env::temp_dir().join(format!("devcmd-bench-store-{}-{writers}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = FjallStore::open(&dir, StoreConfig::default()).expect("store opens");
        let config = CoreConfig {
            device_live_max: u32::MAX,
            live_max: u64::MAX,
            ..CoreConfig::default()
        };
        let core = Dispatcher::builder(config).store(store.clone()).build().expect("valid");
        let app = AppId::new("bench").expect("valid");
        core.add_app(App {
            id: app.clone(),
            secret_hash: String::new(),
            quota: None,
            authorized_apps: vec![],
        })
        .expect("new")
        .durable()
        .expect("synced");
        let caller = Caller::own(app);
        let devices: Vec<_> = (0..DEVICES)
            .map(|i| {
                let mut req = NewDevice::new(&format!("n{i}"));
                req.profile = DeliveryProfile::Psm;
                core.register_device(&caller, req)
                    .expect("registered")
                    .durable()
                    .expect("synced")
                    .id
            })
            .collect();
        g.bench_function(BenchmarkId::new("writers", writers), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(writers as u64);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..writers {
                        let (core, caller, devices) = (&core, &caller, &devices);
                        s.spawn(move || {
                            for i in 0..per {
                                let d = devices[(i as usize * writers + t) % DEVICES].clone();
                                let req = NewCommand::new(d, "Meter", "SET", r#"{"value":1}"#);
                                core.create_command(caller, req)
                                    .expect("created")
                                    .durable()
                                    .expect("synced");
                            }
                        });
                    }
                });
                // Time per create, all writers together.
                start.elapsed().mul_f64(iters as f64 / (per * writers as u64) as f64)
            })
        });
        drop(core);
        store.close();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_durable_create
}
criterion_main!(benches);
