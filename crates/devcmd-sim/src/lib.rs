//! # devcmd-sim
//!
//! Simulated fleets in virtual time: PSM devices that wake to report and
//! hear only for a short window after, always-reachable DRX devices, eDRX
//! devices that answer after a paging delay; ACK loss, result latency and
//! failures; applications creating cached and immediate commands at a
//! Poisson rate, cancelling some, running cancel tasks. It drives the real
//! core (in-process, no store) on a [`VirtualClock`] and reports where every
//! command ended, delivery latency, queue depths over time and resends.
//!
//! One random stream, consumed in event order, and device ids drawn from it:
//! the same seed gives the same [`Report`], byte for byte.
//!
//! ```
//! let config = devcmd_sim::SimConfig { devices: 200, hours: 2, commands_per_hour: 500, ..Default::default() };
//! let report = devcmd_sim::run(&config, |_| {})?;
//! assert_eq!(report.created, report.outcomes.successful + report.outcomes.failed + report.outcomes.timeout
//!     + report.outcomes.expired + report.outcomes.canceled + report.outcomes.pending + report.outcomes.sent
//!     + report.outcomes.delivered);
//! # Ok::<(), String>(())
//! ```

mod agenda;
mod config;
mod report;
mod rng;

use std::sync::Arc;

use crossbeam_channel::Receiver;
use devcmd_core::{
    App, AppId, Caller, ChannelEvents, ChannelLink, CommandId, CommandOutcome, CommandStatus, CoreConfig, CreateError,
    DeliveryProfile, DeviceId, Dispatcher, Issue, NewCommand, NewDevice, StatusChange, Timestamp, VirtualClock,
};

pub use config::SimConfig;
pub use report::{Latency, Outcomes, Report, Sample};
pub use rng::Rng;

/// Where a long run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Platform minutes simulated.
    pub minute: u64,
    /// Platform minutes in all.
    pub minutes: u64,
    /// Commands created so far.
    pub created: u64,
}

/// Virtual time starts here (2026-01-01T00:00:00Z): any fixed instant works.
const START_MS: u64 = 1_767_225_600_000;
const DEPTH_BOUNDS: [u32; 7] = [0, 1, 5, 10, 50, 100, 1000];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A PSM device reports data (and so is awake).
    Report(u32),
    /// The applications create the next command.
    Create,
    /// A device ACKs a command.
    Ack(CommandId),
    /// A device reports a command's result.
    Result(CommandId, bool),
    /// The application cancels a command.
    Cancel(CommandId),
    /// The application creates a cancel task for a device.
    CancelTask(u32),
    /// Record live commands and depths.
    Sample,
}

struct Fleet {
    ids: Vec<DeviceId>,
    index: hashbrown::HashMap<DeviceId, u32>,
    profile: Vec<DeliveryProfile>,
    awake_until: Vec<u64>,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: Rng,
    clock: VirtualClock,
    core: Dispatcher,
    caller: Caller,
    issues: Receiver<Issue>,
    changes: Receiver<StatusChange>,
    fleet: Fleet,
    queue: agenda::Agenda<Event>,
    seq: u64,
    end_ms: u64,
    active_window_ms: u64,
    report: Report,
    delivery: Vec<u32>,
    result: Vec<u32>,
}

/// Runs a simulation; `progress` hears where it is about every 2 % of the run.
pub fn run(cfg: &SimConfig, mut progress: impl FnMut(Progress)) -> Result<Report, String> {
    cfg.validate()?;
    let clock = VirtualClock::new(Timestamp::from_millis(START_MS));
    let core_config = CoreConfig {
        // One shard: the simulation is one thread, and the next deadline is one lock away.
        shard_count: 1,
        id_seed: Some(cfg.seed),
        ..CoreConfig::default()
    };
    let active_window_ms = core_config.psm_active_window.as_millis() as u64;
    let (link, issues) = ChannelLink::bounded(1 << 20);
    let (events, changes) = ChannelEvents::bounded(1 << 20);
    let core = Dispatcher::builder(core_config)
        .clock(Arc::new(clock.clone()))
        .link(Arc::new(link))
        .events(Arc::new(events))
        .build()
        .map_err(|e| e.to_string())?;
    let app = AppId::new("sim").map_err(|e| e.to_string())?;
    let _ = core.add_app(App {
        id: app.clone(),
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    });
    let caller = Caller::own(app);
    let mut rng = Rng::new(cfg.seed);

    let n = cfg.devices as usize;
    let mut fleet = Fleet {
        ids: Vec::with_capacity(n),
        index: hashbrown::HashMap::with_capacity(n),
        profile: Vec::with_capacity(n),
        awake_until: vec![0; n],
    };
    let mut by_profile = [0u64; 3];
    for i in 0..cfg.devices {
        let u = rng.unit();
        let profile = if u < cfg.psm_share {
            DeliveryProfile::Psm
        } else if u < cfg.psm_share + cfg.drx_share {
            DeliveryProfile::Drx
        } else {
            DeliveryProfile::Edrx
        };
        by_profile[match profile {
            DeliveryProfile::Psm => 0,
            DeliveryProfile::Drx => 1,
            DeliveryProfile::Edrx => 2,
        }] += 1;
        let id = DeviceId::from_uuid_bits((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
        let mut req = NewDevice::new(&format!("sim-{i}"));
        req.device_id = Some(id.clone());
        req.profile = profile;
        // No store: the receipt's commit is already complete.
        drop(
            core.register_device(&caller, req)
                .map_err(|e| format!("device {i}: {e}"))?,
        );
        fleet.index.insert(id.clone(), i);
        fleet.ids.push(id);
        fleet.profile.push(profile);
    }

    let end_ms = START_MS + u64::from(cfg.hours) * 3_600_000;
    let mut sim = Sim {
        cfg,
        rng,
        clock,
        core,
        caller,
        issues,
        changes,
        fleet,
        queue: agenda::Agenda::new(START_MS),
        seq: 0,
        end_ms,
        active_window_ms,
        report: Report {
            config: cfg.clone(),
            devices_by_profile: by_profile,
            created: 0,
            immediate: 0,
            cancels_asked: 0,
            cancels_done: 0,
            cancel_tasks: 0,
            refused_queue_full: 0,
            reports: 0,
            outcomes: Outcomes::default(),
            delivery_latency: Latency::default(),
            result_latency: Latency::default(),
            retransmissions: 0,
            late_events_ignored: 0,
            samples: Vec::new(),
        },
        delivery: Vec::new(),
        result: Vec::new(),
    };
    sim.seed_events();
    let minutes = u64::from(cfg.hours) * 60;
    let step = (minutes / 50).max(1);
    let mut next_progress = step;
    loop {
        let next_event = sim.queue.peek_time();
        let next_deadline = sim.core.next_deadline().map(Timestamp::as_millis);
        let t = match (next_event, next_deadline) {
            (Some(e), Some(d)) => e.min(d),
            (Some(e), None) => e,
            (None, Some(d)) => d,
            (None, None) => break,
        };
        if t > end_ms {
            break;
        }
        sim.clock.advance_to(Timestamp::from_millis(t));
        if next_deadline.is_some_and(|d| d <= t) {
            sim.core.tick();
            sim.drain(t);
            continue;
        }
        let Some((_, _, event)) = sim.queue.pop() else { break };
        sim.handle(t, event);
        sim.drain(t);
        let minute = (t - START_MS) / 60_000;
        if minute >= next_progress {
            next_progress = minute + step;
            progress(Progress {
                minute,
                minutes,
                created: sim.report.created,
            });
        }
    }
    sim.clock.advance_to(Timestamp::from_millis(end_ms));
    Ok(sim.finish())
}

impl Sim<'_> {
    fn at(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.queue.push((t, self.seq, e));
    }

    fn seed_events(&mut self) {
        let period = u64::from(self.cfg.report_every_min) * 60_000;
        for i in 0..self.cfg.devices {
            if self.fleet.profile[i as usize] == DeliveryProfile::Psm {
                let first = START_MS + self.rng.below(period);
                self.at(first, Event::Report(i));
            }
        }
        if self.cfg.commands_per_hour > 0 {
            let first = self.next_arrival(START_MS, self.cfg.commands_per_hour);
            self.at(first, Event::Create);
        }
        if self.cfg.cancel_tasks_per_hour > 0 {
            for _ in 0..u64::from(self.cfg.hours) * self.cfg.cancel_tasks_per_hour {
                let t = START_MS + self.rng.below(u64::from(self.cfg.hours) * 3_600_000);
                let d = self.rng.below(u64::from(self.cfg.devices)) as u32;
                self.at(t, Event::CancelTask(d));
            }
        }
        let every = u64::from(self.cfg.sample_every_min) * 60_000;
        let mut t = START_MS;
        while t <= self.end_ms {
            self.at(t, Event::Sample);
            t += every;
        }
    }

    fn next_arrival(&mut self, now: u64, per_hour: u64) -> u64 {
        let mean_ms = 3_600_000.0 / per_hour as f64;
        // No minimum gap: two arrivals in one millisecond are fine (the
        // queue orders them by sequence), and a +1 ms floor biased the rate.
        now + self.rng.exponential(mean_ms).round() as u64
    }

    fn handle(&mut self, t: u64, event: Event) {
        match event {
            Event::Report(i) => {
                self.report.reports += 1;
                self.fleet.awake_until[i as usize] = t + self.active_window_ms;
                let _ = self.core.device_awake(&self.fleet.ids[i as usize]);
                let period = u64::from(self.cfg.report_every_min) * 60_000;
                let next = t + self.rng.between(period * 9 / 10, period * 11 / 10);
                self.at(next, Event::Report(i));
            }
            Event::Create => {
                self.create(t);
                let next = self.next_arrival(t, self.cfg.commands_per_hour);
                self.at(next, Event::Create);
            }
            Event::Ack(id) => {
                let _ = self.core.ack(id);
            }
            Event::Result(id, success) => {
                let _ = self.core.result(id, CommandOutcome { success, detail: None });
            }
            Event::Cancel(id) => {
                self.report.cancels_asked += 1;
                if self.core.cancel_command(&self.caller, id).is_ok() {
                    self.report.cancels_done += 1;
                }
            }
            Event::CancelTask(i) => {
                if self
                    .core
                    .create_cancel_task(&self.caller, &self.fleet.ids[i as usize])
                    .is_ok()
                {
                    self.report.cancel_tasks += 1;
                }
            }
            Event::Sample => self.sample(t),
        }
    }

    fn create(&mut self, t: u64) {
        let d = self.rng.below(u64::from(self.cfg.devices)) as usize;
        let immediate = self.rng.chance(self.cfg.immediate_share);
        let mut req = NewCommand::new(self.fleet.ids[d].clone(), "Meter", "SET", r#"{"value":1}"#);
        req.expire_time_s = if immediate { Some(0) } else { self.cfg.expire_s };
        match self.core.create_command(&self.caller, req) {
            Ok(r) => {
                self.report.created += 1;
                self.report.immediate += u64::from(immediate);
                if self.rng.chance(self.cfg.cancel_share) {
                    let at = t + self.rng.below(3_600_000) + 1;
                    self.at(at, Event::Cancel(r.value.id));
                }
            }
            Err(CreateError::DeviceQueueFull { .. }) => self.report.refused_queue_full += 1,
            Err(_) => {}
        }
    }

    /// What the fleet does with each send, and what changed.
    fn drain(&mut self, t: u64) {
        while let Ok(issue) = self.issues.try_recv() {
            self.device_hears(t, &issue);
        }
        while let Ok(change) = self.changes.try_recv() {
            self.count(&change);
        }
    }

    fn device_hears(&mut self, t: u64, issue: &Issue) {
        let Some(&i) = self.fleet.index.get(&issue.device_id) else {
            return;
        };
        let i = i as usize;
        let delay = match self.fleet.profile[i] {
            DeliveryProfile::Drx => 0,
            DeliveryProfile::Edrx => self.rng.below(self.cfg.edrx_paging_max_ms + 1),
            DeliveryProfile::Psm => {
                if t >= self.fleet.awake_until[i] {
                    return; // asleep: the send is lost
                }
                0
            }
        };
        if self.rng.chance(self.cfg.ack_loss) {
            return;
        }
        let ack_at = t + delay + self.rng.between(self.cfg.ack_ms.0, self.cfg.ack_ms.1);
        self.at(ack_at, Event::Ack(issue.command_id));
        if !self.rng.chance(self.cfg.result_loss) {
            let result_at = ack_at + self.rng.between(self.cfg.result_ms.0, self.cfg.result_ms.1);
            let success = !self.rng.chance(self.cfg.result_failure);
            self.at(result_at, Event::Result(issue.command_id, success));
        }
    }

    fn count(&mut self, change: &StatusChange) {
        let o = &mut self.report.outcomes;
        match change.to {
            CommandStatus::Successful => o.successful += 1,
            CommandStatus::Failed => o.failed += 1,
            CommandStatus::Timeout => o.timeout += 1,
            CommandStatus::Expired => o.expired += 1,
            CommandStatus::Canceled => o.canceled += 1,
            _ => {}
        }
        let since_creation = || {
            self.core.command(&self.caller, change.command_id).ok().map(|c| {
                change
                    .at
                    .saturating_since(c.creation_time)
                    .as_millis()
                    .min(u128::from(u32::MAX)) as u32
            })
        };
        match change.to {
            CommandStatus::Delivered => {
                if let Some(ms) = since_creation() {
                    self.delivery.push(ms);
                }
            }
            CommandStatus::Successful | CommandStatus::Failed => {
                if let Some(ms) = since_creation() {
                    self.result.push(ms);
                    // A result while SENT implies the ACK: delivered at the same moment.
                    if change.from == Some(CommandStatus::Sent) {
                        self.delivery.push(ms);
                    }
                }
            }
            _ => {}
        }
    }

    fn sample(&mut self, t: u64) {
        let s = self.core.stats();
        self.report.samples.push(Sample {
            minute: (t - START_MS) / 60_000,
            live: s.live_by_status,
            depth: self.core.device_depths(&DEPTH_BOUNDS),
        });
    }

    fn finish(mut self) -> Report {
        let s = self.core.stats();
        let o = &mut self.report.outcomes;
        [o.pending, o.sent, o.delivered] = s.live_by_status;
        self.report.retransmissions = s.retransmissions;
        self.report.late_events_ignored = s.late_events_ignored;
        self.report.delivery_latency = Latency::of(std::mem::take(&mut self.delivery));
        self.report.result_latency = Latency::of(std::mem::take(&mut self.result));
        self.report
    }
}
