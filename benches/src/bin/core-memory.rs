//! Prints the process RSS for N idle devices, then for M pending commands over them.
//!
//! `cargo run --release -p devcmd-benches --bin core-memory -- 1000000 10000000`

use devcmd_benches::{core_with_devices, rss_bytes};
use devcmd_core::{CoreConfig, DeliveryProfile, NewCommand};

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let commands: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let base = rss_bytes().unwrap_or(0);
    let config = CoreConfig {
        live_max: u64::MAX,
        device_live_max: u32::MAX,
        id_seed: Some(1),
        ..CoreConfig::default()
    };
    let t = std::time::Instant::now();
    let (core, caller, ids) = core_with_devices(config, devices, DeliveryProfile::Psm);
    let with_devices = rss_bytes().unwrap_or(0);
    // The id list itself is the harness's, not the core's: subtract it.
    let id_list = (ids.capacity() * std::mem::size_of::<devcmd_core::DeviceId>()) as u64;
    println!(
        "{devices} idle devices: RSS {:.1} MiB above start ({:.0} B/device, harness id list of {:.1} MiB excluded), {:.1} s",
        mib(with_devices - base - id_list),
        (with_devices - base - id_list) as f64 / devices as f64,
        mib(id_list),
        t.elapsed().as_secs_f64()
    );
    let paras = format!("{{\"value\":\"{}\"}}", "x".repeat(52)); // 64 bytes
    assert_eq!(paras.len(), 64);
    let t = std::time::Instant::now();
    for i in 0..commands {
        let req = NewCommand::new(ids[i % devices].clone(), "Light", "SET", &paras);
        let _ = core.create_command(&caller, req).expect("created");
        if i > 0 && i % 1_000_000 == 0 {
            eprintln!("  {i} commands, RSS {:.0} MiB", mib(rss_bytes().unwrap_or(0)));
        }
    }
    let total = rss_bytes().unwrap_or(0);
    println!(
        "{commands} pending commands (64-byte paras) over {devices} devices: total process RSS {:.1} MiB ({:.0} B/command above devices), {:.1} s",
        mib(total),
        (total - with_devices) as f64 / commands.max(1) as f64,
        t.elapsed().as_secs_f64()
    );
    println!("live commands: {}", core.stats().live);
}
