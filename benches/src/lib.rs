//! Shared set-up for the devcmd benchmarks and measurement binaries.

use std::sync::Arc;

use devcmd_core::{
    App, AppId, Caller, CoreConfig, DeliveryProfile, DeviceId, Dispatcher, NewDevice, Timestamp, VirtualClock,
};

/// A dispatcher on a virtual clock with one application and `devices` devices
/// of `profile`, with no store, link or event sink (the pure core).
pub fn core_with_devices(
    config: CoreConfig,
    devices: usize,
    profile: DeliveryProfile,
) -> (Dispatcher, Caller, Vec<DeviceId>) {
    let clock = VirtualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let core = Dispatcher::builder(config)
        .clock(Arc::new(clock))
        .build()
        .expect("valid config");
    let app = AppId::new("bench").expect("valid app id");
    let record = App {
        id: app.clone(),
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    };
    core.add_app(record).expect("new app").durable().expect("no store");
    let caller = Caller::own(app);
    let ids = (0..devices)
        .map(|i| {
            let mut req = NewDevice::new(&format!("{:015}", 863_703_030_000_000u64 + i as u64));
            req.profile = profile;
            core.register_device(&caller, req)
                .expect("registered")
                .durable()
                .expect("no store")
                .id
        })
        .collect();
    (core, caller, ids)
}

/// The resident set size of this process in bytes, from `/proc/self/status` (Linux).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
