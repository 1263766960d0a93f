//! Rebuilding a dispatcher from what a store kept.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Dispatcher;
use crate::command::Command;
use crate::output::CancelTaskRecord;
use crate::registry::{App, Device};

/// Everything a store holds that the dispatcher needs back after a restart.
#[derive(Debug, Default, Clone)]
pub struct RecoveredState {
    /// Applications.
    pub apps: Vec<App>,
    /// Registered devices.
    pub devices: Vec<Device>,
    /// Commands, live and terminal (terminal ones stay queryable until retention).
    pub commands: Vec<Command>,
    /// Cancel tasks.
    pub tasks: Vec<CancelTaskRecord>,
}

/// What [`Dispatcher::restore`] put back, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Applications restored.
    pub apps: usize,
    /// Devices restored.
    pub devices: usize,
    /// Live commands restored (PENDING, SENT, DELIVERED), timers re-armed.
    pub live_commands: usize,
    /// Terminal commands restored for queries.
    pub terminal_commands: usize,
    /// Cancel tasks restored.
    pub tasks: usize,
    /// Deadlines that had passed while the process was down and fired at once.
    pub fired_at_once: usize,
    /// Records that could not be put back, with the reason (never silently dropped).
    pub refused: Vec<String>,
    /// Time taken.
    pub took: Duration,
}

impl Dispatcher {
    /// Puts back what a store kept. Call it once, on a new dispatcher, before
    /// serving anything. Deadlines that passed while the process was down fire
    /// before it returns (EXPIRED, TIMEOUT, with their events and records).
    pub fn restore(&self, mut state: RecoveredState) -> RestoreReport {
        let started = Instant::now();
        let now = self.clock.now();
        let mut report = RestoreReport::default();
        for app in state.apps {
            match self.apps.insert(app) {
                Ok(()) => report.apps += 1,
                Err(e) => report.refused.push(format!("app: {e}")),
            }
        }
        for device in state.devices {
            let s = self.shard_of(&device.id);
            if self.shards[s].state.lock().add_device(&device) {
                report.devices += 1;
            } else {
                report.refused.push(format!("device {}: already registered", device.id));
            }
        }
        // Creation order per shard keeps the indexes and queues in order.
        state.commands.sort_by_key(|c| (c.creation_time, c.id));
        let mut removed = HashMap::new();
        for c in &state.commands {
            let s = self.shard_of(&c.device_id);
            if usize::from(c.id.shard()) != s {
                report.refused.push(format!(
                    "command {}: its id names shard {}, its device shard {s}",
                    c.id,
                    c.id.shard()
                ));
                continue;
            }
            match self.shards[s].state.lock().restore_command(c, now, &mut removed) {
                Ok(()) if c.status.is_terminal() => report.terminal_commands += 1,
                Ok(()) => report.live_commands += 1,
                Err(why) => report.refused.push(format!("command {}: {why}", c.id)),
            }
        }
        state.tasks.sort_by_key(|t| (t.creation_time, t.id));
        for t in &state.tasks {
            let s = usize::from(t.id.shard());
            let Some(shard) = self.shards.get(s) else {
                report.refused.push(format!("task {}: shard {s} does not exist", t.id));
                continue;
            };
            match shard.state.lock().restore_task(t, now) {
                Ok(()) => report.tasks += 1,
                Err(why) => report.refused.push(format!("task {}: {why}", t.id)),
            }
        }
        for shard in self.shards.iter() {
            shard.state.lock().finish_restore();
        }
        report.fired_at_once = self.tick();
        report.took = started.elapsed();
        report
    }
}
