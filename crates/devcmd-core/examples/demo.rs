//! A small fleet in virtual time: 10 000 devices (PSM, DRX, eDRX) and 100 000
//! commands over 24 hours of platform time, through the in-process device link.
//! Prints where the commands ended and what it cost in wall time.
//!
//! `cargo run --release -p devcmd-core --example demo [-- DEVICES COMMANDS HOURS SEED]`

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devcmd_core::*;

/// A tiny deterministic generator, so the same seed gives the same run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let devices = args.next().transpose()?.unwrap_or(10_000) as usize;
    let commands = args.next().transpose()?.unwrap_or(100_000);
    let hours = args.next().transpose()?.unwrap_or(24);
    let mut rng = Rng(args.next().transpose()?.unwrap_or(7) | 1);

    let start = Timestamp::from_millis(1_700_000_000_000);
    let clock = VirtualClock::new(start);
    let (link, to_devices) = ChannelLink::bounded(1 << 20);
    let core = Dispatcher::builder(CoreConfig {
        id_seed: Some(1),
        ..CoreConfig::default()
    })
    .clock(Arc::new(clock.clone()))
    .link(Arc::new(link))
    .build()?;
    let app = AppId::new("demo-app")?;
    core.add_app(App {
        id: app.clone(),
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    })?
    .durable()?;
    let caller = Caller::own(app);

    // The fleet: 70 % PSM devices reporting every 1..4 h, 20 % DRX, 10 % eDRX.
    let mut ids = Vec::with_capacity(devices);
    let mut awake_until = vec![start; devices];
    let mut psm = Vec::with_capacity(devices);
    let mut reports = BinaryHeap::new();
    for i in 0..devices {
        let mut req = NewDevice::new(&format!("{:015}", 863_703_030_000_000u64 + i as u64));
        req.profile = match rng.below(10) {
            0..=6 => DeliveryProfile::Psm,
            7 | 8 => DeliveryProfile::Drx,
            _ => DeliveryProfile::Edrx,
        };
        let is_psm = req.profile == DeliveryProfile::Psm;
        psm.push(is_psm);
        ids.push(core.register_device(&caller, req)?.durable()?.id);
        if is_psm {
            reports.push(Reverse((start.as_millis() + rng.below(4 * 3_600_000), i)));
        }
    }
    let index: HashMap<DeviceId, usize> = ids.iter().cloned().enumerate().map(|(i, d)| (d, i)).collect();

    let wall = Instant::now();
    let end = start.as_millis() + hours * 3_600_000;
    let step_ms = 1_000;
    let per_step = commands as f64 / ((end - start.as_millis()) / step_ms) as f64;
    let (mut created, mut refused, mut owed) = (0u64, 0u64, 0f64);
    let mut results = Vec::new();
    let mut now = start.as_millis();
    while now < end {
        // Applications create commands: 90 % cached, 10 % immediate.
        owed += per_step;
        while owed >= 1.0 && created + refused < commands {
            owed -= 1.0;
            let device = ids[rng.below(devices as u64) as usize].clone();
            let mut req = NewCommand::new(device, "Meter", "SET_INTERVAL", r#"{"minutes":15}"#);
            if rng.chance(10) {
                req.expire_time_s = Some(0);
            }
            match core.create_command(&caller, req) {
                Ok(r) => {
                    r.durable()?;
                    created += 1;
                }
                Err(_) => refused += 1,
            }
        }
        // PSM devices whose report is due wake up for their active window.
        while let Some(Reverse((at, i))) = reports.peek().copied() {
            if at > now {
                break;
            }
            reports.pop();
            awake_until[i] = Timestamp::from_millis(at + 30_000);
            core.device_awake(&ids[i])?.durable()?;
            reports.push(Reverse((at + 3_600_000 + rng.below(3 * 3_600_000), i)));
        }
        // Devices that can hear acknowledge (95 %) and answer (90 % success) at once.
        for issue in to_devices.try_iter() {
            let i = index[&issue.device_id];
            let hears = !psm[i] || clock.now() < awake_until[i];
            if hears && rng.chance(95) {
                core.ack(issue.command_id)?.durable()?;
                results.push((issue.command_id, rng.chance(90)));
            }
        }
        for (id, success) in results.drain(..) {
            core.result(id, CommandOutcome { success, detail: None })?.durable()?;
        }
        now += step_ms;
        core.advance(&clock, Duration::from_millis(step_ms));
    }

    // Where every command ended.
    let page = CommandQuery {
        page_size: PAGE_SIZE_MAX,
        ..CommandQuery::default()
    };
    let mut by_status: HashMap<CommandStatus, u64> = HashMap::new();
    let mut q = page;
    loop {
        let p = core.list_commands(&caller, &q)?;
        if p.items.is_empty() {
            break;
        }
        for c in &p.items {
            *by_status.entry(c.status).or_default() += 1;
        }
        q.page_no += 1;
    }
    let stats = core.stats();
    println!(
        "devcmd-core demo: {devices} devices, {hours} h of platform time, {created} commands created ({refused} refused)"
    );
    for status in CommandStatus::ALL {
        println!(
            "  {:<11} {:>8}",
            status.as_str(),
            by_status.get(&status).copied().unwrap_or(0)
        );
    }
    println!(
        "  transitions {}, retransmissions {}, late events ignored {}",
        stats.transitions, stats.retransmissions, stats.late_events_ignored
    );
    println!(
        "wall time {:.2} s for {:.0} s of platform time",
        wall.elapsed().as_secs_f64(),
        (end - start.as_millis()) as f64 / 1000.0
    );
    Ok(())
}
