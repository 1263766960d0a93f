//! Rebuilding a shard from stored records after a restart: every command at
//! its own slot (its id says which), queues in creation order, the in-flight
//! command of each device, and a deadline re-armed for everything live.
//! Deadlines that passed while the process was down fire at the first tick.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CommandEntry, DeviceSlot, EXPIRE_UNSET, NIL, ShardState, TaskEntry, UNSET};
use crate::clock::Timestamp;
use crate::command::{Command, CommandStatus, EXPIRE_TIME_DEFAULT_S, MAX_RETRANSMIT_MAX};
use crate::id::DeviceId;
use crate::output::CancelTaskRecord;
use crate::timer::TIMER_SLOT_MAX;

impl ShardState {
    /// The slot of a device, or of a placeholder for a removed one (its
    /// terminal commands stay queryable by application until retention).
    fn restore_device_slot(&mut self, id: &DeviceId) -> Option<u32> {
        if let Some(slot) = self.find_device(id) {
            return Some(slot);
        }
        if let Some(slot) = self.restore_removed.get(id) {
            return Some(*slot);
        }
        let slot = u32::try_from(self.devices.len()).ok()?;
        self.devices.push(DeviceSlot::Removed(id.clone()));
        self.restore_removed.insert(id.clone(), slot);
        Some(slot)
    }

    /// Puts one stored command back. Commands must come in creation order.
    pub(crate) fn restore_command(&mut self, c: &Command, now: Timestamp) -> Result<(), &'static str> {
        let slot = c.id.slot();
        if slot > TIMER_SLOT_MAX {
            return Err("slot out of range");
        }
        // Chunks are allocated only where slots are filled: a damaged id naming
        // a far slot costs a pointer per skipped chunk, not the chunks.
        self.commands.grow_to(slot as usize + 1);
        if self.commands.get(slot as usize).is_some() {
            return Err("two commands claim one slot");
        }
        if c.status == CommandStatus::Pending && c.expire_time_s == Some(0) {
            // Immediate commands are created SENT; one stored PENDING has no queue
            // and no expiry to end it, so it could only stay PENDING forever.
            return Err("immediate command stored PENDING");
        }
        if c.max_retransmit > MAX_RETRANSMIT_MAX {
            return Err("maxRetransmit out of range");
        }
        let device = self.restore_device_slot(&c.device_id).ok_or("too many devices")?;
        let live_device = matches!(self.devices[device as usize], DeviceSlot::Live(_));
        if !c.status.is_terminal() && !live_device {
            return Err("live command of a removed device");
        }
        let app = self.app_key_or_insert(&c.app_id);
        if live_device && self.live_device(device).is_some_and(|d| d.owner != app) {
            return Err("command and device belong to different applications");
        }
        self.restored += 1;
        // Truncation intended: bits 64..80 of the id are the low 16 bits of the sequence.
        let mid = u64::from((c.id.to_u128() >> 64) as u16);
        let seq = (self.restored << 16) | mid;
        self.seq = self.seq.max(seq);
        self.last_created = self.last_created.max(c.creation_time);
        let immediate = c.expire_time_s == Some(0);
        let expire_at = if immediate {
            Timestamp::NEVER
        } else {
            let s = c.expire_time_s.unwrap_or(EXPIRE_TIME_DEFAULT_S);
            c.creation_time
                .saturating_add(std::time::Duration::from_secs(u64::from(s)))
        };
        let callback_url = c.callback_url.as_deref().map(|u| self.intern(u));
        self.commands.set(
            slot as usize,
            Some(CommandEntry {
                // Truncation intended: the low 64 bits are the stored random part.
                id_random: c.id.to_u128() as u64,
                seq,
                created: c.creation_time,
                expire_at,
                issued_at: c.platform_issued_time.unwrap_or(UNSET),
                delivered_at: c.delivered_time.unwrap_or(UNSET),
                executed_at: c.execute_time.unwrap_or(UNSET),
                terminal_at: c
                    .terminal_time
                    .unwrap_or(if c.status.is_terminal() { now } else { UNSET }),
                body: c.body.clone(),
                callback_url,
                result: c.result.clone(),
                expire_time_s: c.expire_time_s.unwrap_or(EXPIRE_UNSET),
                device,
                app,
                prev: NIL,
                next: NIL,
                timer_gen: 0,
                max_retransmit: c.max_retransmit,
                issued_times: c.issued_times,
                status: c.status,
                cached: !immediate,
                timer_armed: false,
            }),
        );
        debug_assert_eq!(self.entry(slot).map(|e| e.id(self.index, slot)), Some(c.id));
        self.apps[app as usize].commands.push_back(slot);
        if let Some(d) = self.live_device_mut(device) {
            d.history.get_or_insert_with(Default::default).push_back(slot);
            if !c.status.is_terminal() {
                d.live += 1;
            }
        }
        if c.status.is_terminal() {
            self.ended.push_back(slot);
            return Ok(());
        }
        self.stats.live += 1;
        self.stats.count_live(c.status, true);
        let cfg = Arc::clone(&self.cfg);
        match c.status {
            CommandStatus::Pending => {
                // Cached: immediate PENDING records were refused above.
                self.queue_push(device, slot);
                self.arm_command(slot, expire_at);
            }
            CommandStatus::Sent => {
                if !immediate && let Some(d) = self.live_device_mut(device) {
                    if d.in_flight != NIL {
                        return Err("two cached commands in flight on one device");
                    }
                    d.in_flight = slot;
                }
                let at = self.entry(slot).map_or(now, |e| super::sent_deadline(e, &cfg, now));
                self.arm_command(slot, at);
            }
            CommandStatus::Delivered => {
                let delivered = c.delivered_time.unwrap_or(now);
                self.arm_command(slot, delivered.saturating_add(cfg.result_timeout));
            }
            _ => {}
        }
        Ok(())
    }

    /// Puts one stored cancel task back; a task that had not finished runs at the next tick.
    pub(crate) fn restore_task(&mut self, t: &CancelTaskRecord, now: Timestamp) -> Result<(), &'static str> {
        let slot = t.id.slot();
        if slot > TIMER_SLOT_MAX {
            return Err("slot out of range");
        }
        self.tasks.grow_to(slot as usize + 1);
        if self.tasks.get(slot as usize).is_some() {
            return Err("two tasks claim one slot");
        }
        // A task may outlive its device (removed since): it stays queryable.
        let device = self.restore_device_slot(&t.device_id).ok_or("too many devices")?;
        let app = self.app_key_or_insert(&t.app_id);
        let commands = t.command_ids.iter().map(|id| (id.slot(), *id)).collect();
        self.restored += 1;
        self.tasks.set(
            slot as usize,
            Some(TaskEntry {
                id: t.id,
                app,
                device,
                seq: self.restored << 16,
                status: t.status,
                created: t.creation_time,
                finished: t.finish_time,
                commands,
                timer_gen: 0,
            }),
        );
        self.apps[app as usize].tasks.push_back(slot);
        if !t.status.is_final() {
            self.waiting_tasks += 1;
            self.arm_task(slot, now);
        }
        Ok(())
    }

    /// After restoring: every empty slot below the highest used one becomes free.
    pub(crate) fn finish_restore(&mut self) {
        self.restore_removed = HashMap::new();
        // Restored in creation order; the sweep wants the order they ended.
        let mut ended: Vec<u32> = self.ended.drain(..).collect();
        ended.sort_by_key(|&s| self.entry(s).map_or(UNSET, |c| c.terminal_at));
        self.ended = ended.into();
        // Free: the empty slots of allocated chunks (lowest taken first).
        let mut free: Vec<(u32, u32)> = self
            .commands
            .empty_slots()
            .filter_map(|i| u32::try_from(i).ok())
            // Nothing in the rebuilt heap names a free slot: any generation will do.
            .map(|i| (i, 0))
            .collect();
        free.reverse();
        self.free_commands = free;
        let mut free: Vec<u32> = self.tasks.empty_slots().filter_map(|i| u32::try_from(i).ok()).collect();
        free.reverse();
        self.free_tasks = free;
    }
}
