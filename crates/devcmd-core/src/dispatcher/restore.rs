//! Rebuilding a dispatcher from what a store kept.

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
        // Commands go to their shards; each shard restores its own in creation
        // order (which keeps indexes and queues in order), shards in parallel.
        let mut by_shard: Vec<Vec<Command>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for c in std::mem::take(&mut state.commands) {
            let s = self.shard_of(&c.device_id);
            if usize::from(c.id.shard()) == s {
                by_shard[s].push(c);
            } else {
                report.refused.push(format!(
                    "command {}: its id names shard {}, its device shard {s}",
                    c.id,
                    c.id.shard()
                ));
            }
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
        let per_worker = by_shard.len().div_ceil(workers).max(1);
        let outcomes: Vec<(usize, usize, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_shard
                .chunks_mut(per_worker)
                .enumerate()
                .map(|(w, group)| {
                    scope.spawn(move || {
                        let (mut live, mut terminal, mut refused) = (0, 0, Vec::new());
                        for (k, commands) in group.iter_mut().enumerate() {
                            sort_in_creation_order(commands);
                            let mut st = self.shards[w * per_worker + k].state.lock();
                            for c in commands.iter() {
                                match st.restore_command(c, now) {
                                    Ok(()) if c.status.is_terminal() => terminal += 1,
                                    Ok(()) => live += 1,
                                    Err(why) => refused.push(format!("command {}: {why}", c.id)),
                                }
                            }
                        }
                        (live, terminal, refused)
                    })
                })
                .collect();
            // A restoring thread only panics on a bug; report it rather than abort.
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (0, 0, vec!["a restoring thread panicked".to_owned()]))
                })
                .collect()
        });
        for (live, terminal, refused) in outcomes {
            report.live_commands += live;
            report.terminal_commands += terminal;
            report.refused.extend(refused);
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

/// The low 16 bits of a command's creation sequence, which its id carries.
fn seq16(c: &Command) -> u16 {
    // Truncation intended: bits 64..80 of the id.
    (c.id.to_u128() >> 64) as u16
}

/// Sorts one shard's commands as they were created: by creation time, then,
/// within one millisecond, by the sequence bits their ids carry (read
/// circularly, so a wrap of the 16 bits inside one millisecond keeps order).
fn sort_in_creation_order(commands: &mut [Command]) {
    commands.sort_unstable_by_key(|c| (c.creation_time, seq16(c)));
    let mut start = 0;
    while start < commands.len() {
        let t = commands[start].creation_time;
        let end = start + commands[start..].iter().take_while(|c| c.creation_time == t).count();
        let run = &mut commands[start..end];
        // Start the run after its largest gap in sequence bits.
        if let Some(gap_at) = (1..run.len())
            .max_by_key(|&i| seq16(&run[i]).wrapping_sub(seq16(&run[i - 1])))
            .filter(|&i| seq16(&run[i]).wrapping_sub(seq16(&run[i - 1])) > u16::MAX / 2)
        {
            run.rotate_left(gap_at);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppId, CommandBody, CommandId, CommandStatus, DeviceId, Timestamp};

    fn cmd(ms: u64, seq: u16) -> Command {
        Command {
            id: CommandId::compose(0, u32::from(seq), u128::from(seq) << 64),
            app_id: AppId::new("a").unwrap(),
            device_id: DeviceId::new("d").unwrap(),
            body: CommandBody::new("s", "m", "").unwrap(),
            callback_url: None,
            expire_time_s: None,
            max_retransmit: 3,
            status: CommandStatus::Pending,
            result: None,
            creation_time: Timestamp::from_millis(ms),
            platform_issued_time: None,
            delivered_time: None,
            execute_time: None,
            terminal_time: None,
            issued_times: 0,
        }
    }

    #[test]
    fn ties_follow_the_sequence_bits_even_across_their_wrap() {
        let mut v = vec![cmd(5, 2), cmd(5, 65_535), cmd(4, 9), cmd(5, 1), cmd(5, 65_534)];
        sort_in_creation_order(&mut v);
        let order: Vec<(u64, u16)> = v.iter().map(|c| (c.creation_time.as_millis(), seq16(c))).collect();
        assert_eq!(order, vec![(4, 9), (5, 65_534), (5, 65_535), (5, 1), (5, 2)]);
    }
}
