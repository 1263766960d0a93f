//! Pushes per second from the callback outbox to a local receiver (axum on
//! 127.0.0.1, answering 200), through the real path: a dispatcher creates
//! immediate commands with a `callbackUrl` on DRX devices, each SENT change
//! becomes an outbox record and a push.
//!
//! `cargo run --release -p devcmd-benches --bin callback-load -- [pushes] [addresses] [lanes] [memory|fjall]`
//!
//! With `fjall` the dispatcher and the outbox use the durable store: every
//! SENT change and its outbox record are synced before the push, and every
//! delivered push writes its removal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use devcmd_callback::{CallbackConfig, Callbacks};
use devcmd_core::{
    App, AppId, Caller, CoreConfig, DeliveryProfile, Dispatcher, MemoryStore, NewCommand, NewDevice, SystemClock,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let pushes: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let addresses: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let lanes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let durable = match args.next().as_deref() {
        None | Some("memory") => false,
        Some("fjall") => true,
        Some(other) => return Err(format!("store must be memory or fjall, not {other}").into()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let received = Arc::new(AtomicU64::new(0));
    let mut urls = Vec::new();
    for _ in 0..addresses {
        let count = received.clone();
        let app = axum::Router::new().route(
            "/cb",
            axum::routing::post(move || {
                count.fetch_add(1, Ordering::Relaxed);
                async { "" }
            }),
        );
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        urls.push(format!("http://{}/cb", listener.local_addr()?));
        rt.spawn(async move { axum::serve(listener, app).await });
    }
    let config = CallbackConfig {
        lanes_per_address: lanes,
        ..CallbackConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("devcmd-callback-load-{}", std::process::id()));
    let store: Arc<dyn devcmd_core::CommandStore> = if durable {
        let _ = std::fs::remove_dir_all(&dir);
        devcmd_store::FjallStore::open(&dir, devcmd_store::StoreConfig::default())?.0
    } else {
        MemoryStore::new()
    };
    let (callbacks, sink) = Callbacks::start(config, Arc::new(SystemClock), Some(store.clone()), rt.handle().clone())?;
    let core = Dispatcher::builder(CoreConfig {
        device_live_max: u32::MAX,
        live_max: u64::MAX,
        ..CoreConfig::default()
    })
    .store(store)
    .events(sink)
    .build()?;
    let app = AppId::new("bench")?;
    core.add_app(App {
        id: app.clone(),
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    })?
    .durable()?;
    let caller = Caller::own(app);
    let devices: Vec<_> = (0..10_000)
        .map(|i| {
            let mut d = NewDevice::new(&format!("n{i}"));
            d.profile = DeliveryProfile::Drx;
            core.register_device(&caller, d).map(|r| r.value.id)
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for i in 0..pushes {
        let i = i as usize;
        let mut c = NewCommand::new(devices[i % devices.len()].clone(), "S", "M", "{}");
        c.callback_url = Some(urls[i % urls.len()].clone());
        c.expire_time_s = Some(0);
        let _ = core.create_command(&caller, c)?;
    }
    let created = started.elapsed();
    let mut last = (Instant::now(), 0u64);
    while callbacks.stats().delivered < pushes {
        std::thread::sleep(Duration::from_millis(100));
        if last.0.elapsed() >= Duration::from_secs(2) {
            let d = callbacks.stats().delivered;
            eprintln!("  … {d} / {pushes} delivered");
            if d == last.1 {
                return Err(format!("stalled at {d}: {:?}", callbacks.stats()).into());
            }
            last = (Instant::now(), d);
        }
    }
    let took = started.elapsed();
    println!(
        "{} store: {pushes} pushes to {addresses} address(es), {lanes} lanes each: {:.1} s ({:.0} pushes/s); \
         creating the commands took {:.2} s; receiver counted {}; failed attempts {}",
        if durable { "fjall" } else { "memory" },
        took.as_secs_f64(),
        pushes as f64 / took.as_secs_f64(),
        created.as_secs_f64(),
        received.load(Ordering::Relaxed),
        callbacks.stats().failed_attempts
    );
    callbacks.shutdown();
    drop(core);
    if durable {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
