//! One shard: the devices hashed to it, their commands and cancel tasks, and
//! its deadlines. Everything here runs under the shard's lock and does no
//! I/O: what must leave the shard is recorded in [`Effects`] and handed out by
//! the dispatcher after the lock is released.
//!
//! Every status change goes through [`ShardState::transition`], which asks
//! [`crate::machine::next_status`] and then keeps the queue, timers, counters
//! and effects in step with the new status.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::cancel_task::{CancelTask, CancelTaskStatus};
use crate::clock::Timestamp;
use crate::command::{Command, CommandBody, CommandOutcome, CommandStatus, NewCommand};
use crate::config::CoreConfig;
use crate::effects::Effects;
use crate::history::HistoryScope;
use crate::id::{AppId, CommandId, DeviceId, TaskId, splitmix};
use crate::machine::{CommandEvent, TransitionRefused, next_status};
use crate::output::{CancelTaskRecord, Issue, StatusChange};
use crate::registry::{DeliveryProfile, Device};
use crate::slab::Chunks;
use crate::timer::{TIMER_SLOT_MAX, TimerHeap, TimerTarget};

mod restore;

/// "No slot" in the intrusive queue links.
const NIL: u32 = u32::MAX;
/// Entries freed by one sweep at most; the rest waits for the next tick.
const SWEEP_BATCH_MAX: usize = 65_536;

/// Counters of one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    /// Commands created.
    pub created: u64,
    /// Status changes made.
    pub transitions: u64,
    /// Resends after the first send.
    pub retransmissions: u64,
    /// Late or duplicate device events on commands that had moved on.
    pub late_events_ignored: u64,
    /// Terminal commands that left memory (archived or past retention).
    pub swept: u64,
    /// Of those, the ones handed to the history ([`crate::Mutation::ArchiveCommand`]).
    pub archived: u64,
    /// Live (non-terminal) commands now.
    pub live: u64,
    /// Registered devices now.
    pub devices: u64,
    /// Deadlines in the timer heap now (stale ones included).
    pub timer_entries: u64,
    /// Live commands by status now: PENDING, SENT, DELIVERED.
    pub live_by_status: [u64; 3],
}

impl ShardStats {
    /// Counts a live command entering (`+1`) or leaving (`-1`) `status`;
    /// terminal statuses are not counted.
    pub(crate) fn count_live(&mut self, status: CommandStatus, entering: bool) {
        if let Some(n) = self.live_by_status.get_mut(usize::from(status.rank())) {
            *n = if entering { *n + 1 } else { n.saturating_sub(1) };
        }
    }
}

/// One application's commands and tasks in this shard, by slot, oldest
/// first: ordered by `(created, seq)` of the slots they name.
#[derive(Debug)]
struct AppShard {
    id: AppId,
    commands: VecDeque<u32>,
    tasks: VecDeque<u32>,
}

#[derive(Debug)]
struct DeviceEntry {
    id: DeviceId,
    node_id: CompactString,
    owner: u32,
    profile: DeliveryProfile,
    awake_until: Timestamp,
    live: u32,
    queue_head: u32,
    queue_tail: u32,
    in_flight: u32,
    /// Every command of the device still in memory, oldest first; allocated
    /// with the device's first command, so an idle device costs no more.
    #[allow(clippy::box_collection, reason = "8 bytes for an idle device instead of 32")]
    history: Option<Box<VecDeque<u32>>>,
}

impl DeviceEntry {
    fn history(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.history.iter().flat_map(|h| h.iter().copied())
    }
}

#[derive(Debug)]
enum DeviceSlot {
    Live(DeviceEntry),
    /// Slots of removed devices are not reused: their commands still name them.
    Removed(DeviceId),
}

impl DeviceSlot {
    fn id(&self) -> &DeviceId {
        match self {
            Self::Live(d) => &d.id,
            Self::Removed(id) => id,
        }
    }
}

/// A command in memory, kept compact: instants use [`UNSET`] for "not yet".
#[derive(Debug)]
struct CommandEntry {
    /// The random low 64 bits of the id; the rest is the shard, the slot and
    /// the low 16 bits of `seq` (see [`ShardState::command_id`]).
    id_random: u64,
    /// Creation order in the shard; ties of `created` are broken by it.
    seq: u64,
    created: Timestamp,
    expire_at: Timestamp,
    issued_at: Timestamp,
    delivered_at: Timestamp,
    executed_at: Timestamp,
    terminal_at: Timestamp,
    body: CommandBody,
    callback_url: Option<Arc<str>>,
    result: Option<Arc<str>>,
    /// `expireTime` as given, [`EXPIRE_UNSET`] when left out.
    expire_time_s: u32,
    device: u32,
    app: u32,
    prev: u32,
    next: u32,
    timer_gen: u32,
    max_retransmit: u8,
    issued_times: u8,
    status: CommandStatus,
    /// Cached commands wait in the device's queue; immediate ones never do.
    cached: bool,
    timer_armed: bool,
}

/// "Not yet" for the instants of a [`CommandEntry`]: the epoch itself, which
/// no command of this century is created at.
const UNSET: Timestamp = Timestamp::from_millis(0);

/// `expireTime` left out (the API refuses `u32::MAX` itself).
const EXPIRE_UNSET: u32 = u32::MAX;

fn set(t: Timestamp) -> Option<Timestamp> {
    (t != UNSET).then_some(t)
}

impl CommandEntry {
    fn key(&self) -> (Timestamp, u64) {
        (self.created, self.seq)
    }

    /// The command's id, rebuilt from where it lives and its random bits.
    fn id(&self, shard: u16, slot: u32) -> CommandId {
        // Truncation intended: the id keeps the low 16 bits of the sequence.
        let mid = u128::from(self.seq as u16) << 64;
        CommandId::compose(shard, slot, mid | u128::from(self.id_random))
    }
}

#[derive(Debug)]
struct TaskEntry {
    id: TaskId,
    app: u32,
    device: u32,
    seq: u64,
    status: CancelTaskStatus,
    created: Timestamp,
    finished: Option<Timestamp>,
    commands: Vec<(u32, CommandId)>,
    timer_gen: u32,
}

/// The mutable state of one shard.
#[derive(Debug)]
pub(crate) struct ShardState {
    index: u16,
    cfg: Arc<CoreConfig>,
    live_max: u64,
    rng: u64,
    seq: u64,
    last_created: Timestamp,
    hasher: DefaultHashBuilder,
    device_table: HashTable<u32>,
    devices: Vec<DeviceSlot>,
    commands: Chunks<CommandEntry>,
    /// Free command slots, each with the timer generation its next command
    /// starts from: deadlines of the slot's earlier command may still be in
    /// the heap (they are cancelled lazily), and must never match the new one.
    free_commands: Vec<(u32, u32)>,
    tasks: Chunks<TaskEntry>,
    free_tasks: Vec<u32>,
    waiting_tasks: u32,
    apps: Vec<AppShard>,
    app_keys: hashbrown::HashMap<AppId, u32>,
    interned: hashbrown::HashSet<Arc<str>>,
    timers: TimerHeap,
    timed_live: usize,
    sweep_gen: u32,
    /// Terminal commands still in memory, in the order they ended: the sweep
    /// takes them from the front once their grace (or retention) is over.
    ended: VecDeque<u32>,
    /// Terminal commands move to a history after their grace period
    /// (`CoreConfig::history_grace`) instead of staying for the retention.
    archive: bool,
    /// Records restored so far (orders restored entries).
    restored: u64,
    /// While restoring: placeholder slots of devices removed before the restart.
    restore_removed: std::collections::HashMap<DeviceId, u32>,
    stats: ShardStats,
}

/// Interned strings per shard at most; past it strings are simply shared per command.
const INTERN_MAX: usize = 4096;

/// What a device event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEventOutcome {
    /// The event moved the command to this status.
    Applied(CommandStatus),
    /// The command had already moved on (a late or duplicate event); it is
    /// counted and changes nothing. Carries the command's status.
    Ignored(CommandStatus),
}

/// Refusals of [`ShardState::create`], mapped to `CreateError` by the caller.
#[derive(Debug)]
pub(crate) enum CreateRefusal {
    DeviceNotFound,
    DeviceFull,
    Overloaded,
}

/// A cancel task without its commands, and its commands: from memory, or
/// the id of one that has left it.
pub(crate) type TaskParts = (CancelTask, Vec<Result<Command, CommandId>>);

/// Refusals of lookups that need an owned device.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    NotFound,
}

impl ShardState {
    pub(crate) fn new(index: u16, cfg: Arc<CoreConfig>, seed: u64, now: Timestamp, archive: bool) -> Self {
        let shards = u64::from(cfg.shard_count);
        let live_max = cfg.live_max.div_ceil(shards).max(1);
        let mut st = Self {
            index,
            live_max,
            // The build instant is mixed in, so a dispatcher rebuilt later from
            // the same seed (a restart) never replays the ids of commands that
            // already left memory and store.
            rng: seed
                ^ (u64::from(index).wrapping_mul(0xd6e8_feb8_6659_fd93))
                ^ now.as_millis().wrapping_mul(0x9e37_79b9_7f4a_7c15),
            seq: 0,
            last_created: Timestamp::from_millis(0),
            hasher: DefaultHashBuilder::default(),
            device_table: HashTable::new(),
            devices: Vec::new(),
            commands: Chunks::default(),
            free_commands: Vec::new(),
            tasks: Chunks::default(),
            free_tasks: Vec::new(),
            waiting_tasks: 0,
            apps: Vec::new(),
            app_keys: hashbrown::HashMap::new(),
            interned: hashbrown::HashSet::new(),
            timers: TimerHeap::default(),
            timed_live: 0,
            sweep_gen: 0,
            ended: VecDeque::new(),
            archive,
            restored: 0,
            restore_removed: std::collections::HashMap::new(),
            stats: ShardStats::default(),
            cfg,
        };
        st.arm_sweep(now);
        st
    }

    fn random80(&mut self) -> u128 {
        (u128::from(splitmix(&mut self.rng)) << 64) | u128::from(splitmix(&mut self.rng))
    }

    pub(crate) fn stats(&self) -> ShardStats {
        let mut s = self.stats;
        s.timer_entries = self.timers.len() as u64;
        s
    }

    // ----- applications and devices -------------------------------------------------

    pub(crate) fn app_key(&self, app: &AppId) -> Option<u32> {
        self.app_keys.get(app).copied()
    }

    fn app_key_or_insert(&mut self, app: &AppId) -> u32 {
        if let Some(k) = self.app_keys.get(app) {
            return *k;
        }
        // At most u32::MAX applications: more would not fit in memory anyway.
        let k = u32::try_from(self.apps.len()).unwrap_or(u32::MAX);
        // A copy of its own, so that snapshots in different shards never
        // share (and contend on) one reference count.
        let own = AppId::new(app.as_str()).unwrap_or_else(|_| app.clone());
        self.apps.push(AppShard {
            id: own,
            commands: VecDeque::new(),
            tasks: VecDeque::new(),
        });
        self.app_keys.insert(app.clone(), k);
        k
    }

    fn find_device(&self, id: &DeviceId) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.device_table
            .find(hash, |&slot| self.devices[slot as usize].id() == id)
            .copied()
    }

    fn live_device(&self, slot: u32) -> Option<&DeviceEntry> {
        match self.devices.get(slot as usize)? {
            DeviceSlot::Live(d) => Some(d),
            DeviceSlot::Removed(_) => None,
        }
    }

    fn live_device_mut(&mut self, slot: u32) -> Option<&mut DeviceEntry> {
        match self.devices.get_mut(slot as usize)? {
            DeviceSlot::Live(d) => Some(d),
            DeviceSlot::Removed(_) => None,
        }
    }

    /// The device's slot if it exists and belongs to `app`.
    fn owned_device(&self, app: &AppId, id: &DeviceId) -> Option<u32> {
        let key = self.app_key(app)?;
        let slot = self.find_device(id)?;
        (self.live_device(slot)?.owner == key).then_some(slot)
    }

    pub(crate) fn add_device(&mut self, device: &Device) -> bool {
        if self.find_device(&device.id).is_some() {
            return false;
        }
        let owner = self.app_key_or_insert(&device.owner);
        let Ok(slot) = u32::try_from(self.devices.len()) else {
            return false;
        };
        self.devices.push(DeviceSlot::Live(DeviceEntry {
            id: device.id.clone(),
            node_id: CompactString::from(device.node_id.as_str()),
            owner,
            profile: device.profile,
            awake_until: Timestamp::from_millis(0),
            live: 0,
            queue_head: NIL,
            queue_tail: NIL,
            in_flight: NIL,
            history: None,
        }));
        let hasher = &self.hasher;
        let devices = &self.devices;
        let hash = hasher.hash_one(&device.id);
        self.device_table
            .insert_unique(hash, slot, |&s| hasher.hash_one(devices[s as usize].id()));
        self.stats.devices += 1;
        true
    }

    fn device_record(&self, slot: u32) -> Option<Device> {
        let d = self.live_device(slot)?;
        Some(Device {
            id: d.id.clone(),
            node_id: d.node_id.to_string(),
            owner: self.apps[d.owner as usize].id.clone(),
            profile: d.profile,
        })
    }

    pub(crate) fn device(&self, app: &AppId, id: &DeviceId) -> Option<Device> {
        self.device_record(self.owned_device(app, id)?)
    }

    /// Removes a device: its PENDING commands end CANCELED, those sent or
    /// delivered end TIMEOUT (the device can no longer answer).
    pub(crate) fn remove_device(
        &mut self,
        app: &AppId,
        id: &DeviceId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<(), Lookup> {
        let slot = self.owned_device(app, id).ok_or(Lookup::NotFound)?;
        let live: Vec<u32> = self
            .live_device(slot)
            .map(|d| d.history().collect())
            .unwrap_or_default();
        // PENDING ones first, so that ending the in-flight one releases nothing.
        for (wanted, event) in [
            (CommandStatus::Pending, CommandEvent::Cancel),
            (CommandStatus::Sent, CommandEvent::Timeout),
            (CommandStatus::Delivered, CommandEvent::Timeout),
        ] {
            for &c in &live {
                if self.entry(c).is_some_and(|e| e.status == wanted) {
                    // The event fits the status by construction, so it cannot be refused.
                    let _ = self.transition(c, event, now, fx);
                }
            }
        }
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self.device_table.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.devices[slot as usize] = DeviceSlot::Removed(id.clone());
        self.stats.devices = self.stats.devices.saturating_sub(1);
        fx.remove_device(id);
        Ok(())
    }

    // ----- commands -------------------------------------------------------------------

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.interned.len() < INTERN_MAX {
            self.interned.insert(a.clone());
        }
        a
    }

    fn entry(&self, slot: u32) -> Option<&CommandEntry> {
        self.commands.get(slot as usize)
    }

    pub(crate) fn find_command(&self, app: &AppId, id: CommandId) -> Option<u32> {
        let slot = id.slot();
        let c = self.entry(slot)?;
        (c.id(self.index, slot) == id && self.apps[c.app as usize].id == *app).then_some(slot)
    }

    pub(crate) fn find_command_any(&self, id: CommandId) -> Option<u32> {
        let slot = id.slot();
        (self.entry(slot)?.id(self.index, slot) == id).then_some(slot)
    }

    pub(crate) fn snapshot(&self, slot: u32) -> Option<Command> {
        let c = self.entry(slot)?;
        Some(Command {
            id: c.id(self.index, slot),
            app_id: self.apps[c.app as usize].id.clone(),
            device_id: self.devices[c.device as usize].id().clone(),
            body: c.body.clone(),
            callback_url: c.callback_url.clone(),
            expire_time_s: (c.expire_time_s != EXPIRE_UNSET).then_some(c.expire_time_s),
            max_retransmit: c.max_retransmit,
            status: c.status,
            result: c.result.clone(),
            creation_time: c.created,
            platform_issued_time: set(c.issued_at),
            delivered_time: set(c.delivered_at),
            execute_time: set(c.executed_at),
            terminal_time: set(c.terminal_at),
            issued_times: c.issued_times,
        })
    }

    /// Creates a command for a device of `app`; the request was validated and
    /// its body built by the caller, outside the lock.
    pub(crate) fn create(
        &mut self,
        app: &AppId,
        req: &NewCommand,
        body: CommandBody,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Command, CreateRefusal> {
        let device = self
            .owned_device(app, &req.device_id)
            .ok_or(CreateRefusal::DeviceNotFound)?;
        let d_live = self.live_device(device).map_or(0, |d| d.live);
        if d_live >= self.cfg.device_live_max {
            return Err(CreateRefusal::DeviceFull);
        }
        if self.stats.live >= self.live_max {
            return Err(CreateRefusal::Overloaded);
        }
        let (slot, timer_gen) = match self.free_commands.pop() {
            Some(free) => free,
            None => {
                let Ok(s) = u32::try_from(self.commands.push_empty()) else {
                    return Err(CreateRefusal::Overloaded);
                };
                if s > TIMER_SLOT_MAX {
                    return Err(CreateRefusal::Overloaded);
                }
                (s, 0)
            }
        };
        // Truncation intended: 64 random bits are kept, the id's other 16 come from `seq`.
        let id_random = self.random80() as u64;
        let created = now.max(self.last_created);
        self.last_created = created;
        self.seq += 1;
        let seq = self.seq;
        let immediate = req.is_immediate();
        let expire_s = req.expire_time_s.unwrap_or(crate::command::EXPIRE_TIME_DEFAULT_S);
        let expire_at = if immediate {
            Timestamp::NEVER
        } else {
            created.saturating_add(std::time::Duration::from_secs(u64::from(expire_s)))
        };
        let app_key = self.live_device(device).map_or(0, |d| d.owner);
        let callback_url = req.callback_url.as_deref().map(|u| self.intern(u));
        self.commands.set(
            slot as usize,
            Some(CommandEntry {
                id_random,
                seq,
                created,
                expire_at,
                issued_at: UNSET,
                delivered_at: UNSET,
                executed_at: UNSET,
                terminal_at: UNSET,
                body,
                callback_url,
                result: None,
                expire_time_s: req.expire_time_s.unwrap_or(EXPIRE_UNSET),
                device,
                app: app_key,
                prev: NIL,
                next: NIL,
                timer_gen,
                max_retransmit: req.max_retransmit.unwrap_or(crate::command::MAX_RETRANSMIT_DEFAULT),
                issued_times: 0,
                status: CommandStatus::Pending,
                cached: !immediate,
                timer_armed: false,
            }),
        );
        self.apps[app_key as usize].commands.push_back(slot);
        if let Some(d) = self.live_device_mut(device) {
            d.live += 1;
            d.history.get_or_insert_with(Default::default).push_back(slot);
        }
        self.stats.live += 1;
        self.stats.count_live(CommandStatus::Pending, true);
        self.stats.created += 1;
        if immediate {
            // PENDING is never observable for an immediate command: it is SENT
            // by the time anyone hears of it.
            self.issue(slot, now, fx);
            fx.mark_last_change_as_creation();
        } else {
            self.arm_command(slot, expire_at);
            self.queue_push(device, slot);
            fx.created(|| self.snapshot(slot));
            self.release(device, now, fx);
        }
        // The slot was filled above; a snapshot of it always exists.
        self.snapshot(slot).ok_or(CreateRefusal::Overloaded)
    }

    /// The one place where a command's status changes.
    fn transition(
        &mut self,
        slot: u32,
        event: CommandEvent,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<CommandStatus, TransitionRefused> {
        let cfg = Arc::clone(&self.cfg);
        let Some(c) = self.commands.get_mut(slot as usize) else {
            return Err(TransitionRefused::Terminal(CommandStatus::Canceled));
        };
        let from = c.status;
        let to = next_status(from, event)?;
        c.status = to;
        let device = c.device;
        let cached = c.cached;
        let deadline = match to {
            CommandStatus::Sent => {
                c.issued_at = now;
                c.issued_times = 0;
                Some(sent_deadline(c, &cfg, now))
            }
            CommandStatus::Delivered => {
                c.delivered_at = now;
                Some(now.saturating_add(cfg.result_timeout))
            }
            _ => None,
        };
        if matches!(to, CommandStatus::Successful | CommandStatus::Failed) {
            c.executed_at = now;
        }
        if to.is_terminal() {
            c.terminal_at = now;
        }
        let change = fx.wants_changes().then(|| StatusChange {
            command_id: c.id(self.index, slot),
            device_id: self.devices[device as usize].id().clone(),
            from: Some(from),
            to,
            at: now,
            callback_url: c.callback_url.clone(),
            result: c.result.clone(),
        });
        self.stats.transitions += 1;
        self.stats.count_live(from, false);
        if !to.is_terminal() {
            self.stats.count_live(to, true);
        }
        if from == CommandStatus::Pending && cached {
            self.queue_unlink(device, slot);
        }
        match deadline {
            Some(at) => self.arm_command(slot, at),
            None => self.disarm_command(slot),
        }
        if to.is_terminal() {
            self.ended.push_back(slot);
            self.stats.live = self.stats.live.saturating_sub(1);
            if let Some(d) = self.live_device_mut(device) {
                d.live = d.live.saturating_sub(1);
            }
        }
        fx.change(change);
        fx.put_command(|| self.snapshot(slot));
        if to == CommandStatus::Sent {
            self.send(slot, 0, fx);
        }
        // The serial queue moves on once the in-flight command is delivered or ends.
        let frees_queue = to == CommandStatus::Delivered || to.is_terminal();
        if frees_queue && self.live_device(device).is_some_and(|d| d.in_flight == slot) {
            if let Some(d) = self.live_device_mut(device) {
                d.in_flight = NIL;
            }
            self.release(device, now, fx);
        }
        Ok(to)
    }

    /// Issues a command (PENDING → SENT) and hands it to the device link.
    fn issue(&mut self, slot: u32, now: Timestamp, fx: &mut Effects) -> bool {
        self.transition(slot, CommandEvent::Issue, now, fx).is_ok()
    }

    fn send(&self, slot: u32, attempt: u8, fx: &mut Effects) {
        if let Some(c) = self.entry(slot) {
            fx.issue(Issue {
                command_id: c.id(self.index, slot),
                device_id: self.devices[c.device as usize].id().clone(),
                body: c.body.clone(),
                attempt,
            });
        }
    }

    fn reachable(&self, d: &DeviceEntry, now: Timestamp) -> bool {
        d.profile != DeliveryProfile::Psm || now < d.awake_until
    }

    /// Sends the head of the device's queue if nothing is in flight and the
    /// device can hear. Expired heads end EXPIRED on the way: an expired
    /// command is never sent.
    fn release(&mut self, device: u32, now: Timestamp, fx: &mut Effects) {
        loop {
            let Some(d) = self.live_device(device) else { return };
            if d.in_flight != NIL || !self.reachable(d, now) || d.queue_head == NIL {
                return;
            }
            let head = d.queue_head;
            let expired = self.entry(head).is_some_and(|c| now >= c.expire_at);
            if expired {
                let _ = self.transition(head, CommandEvent::Expire, now, fx);
                continue;
            }
            if let Some(d) = self.live_device_mut(device) {
                d.in_flight = head;
            }
            if !self.issue(head, now, fx) {
                // A queued command is always PENDING (it leaves the queue on any
                // transition), so this cannot happen; recover by unlinking it.
                self.queue_unlink(device, head);
                if let Some(d) = self.live_device_mut(device) {
                    d.in_flight = NIL;
                }
                continue;
            }
            return;
        }
    }

    fn queue_push(&mut self, device: u32, slot: u32) {
        let Some(tail) = self.live_device(device).map(|d| d.queue_tail) else {
            return;
        };
        if let Some(c) = self.commands.get_mut(slot as usize) {
            c.prev = tail;
            c.next = NIL;
        }
        if tail != NIL
            && let Some(t) = self.commands.get_mut(tail as usize)
        {
            t.next = slot;
        }
        if let Some(d) = self.live_device_mut(device) {
            if d.queue_head == NIL {
                d.queue_head = slot;
            }
            d.queue_tail = slot;
        }
    }

    fn queue_unlink(&mut self, device: u32, slot: u32) {
        let Some((prev, next)) = self.entry(slot).map(|c| (c.prev, c.next)) else {
            return;
        };
        if prev != NIL
            && let Some(p) = self.commands.get_mut(prev as usize)
        {
            p.next = next;
        }
        if next != NIL
            && let Some(n) = self.commands.get_mut(next as usize)
        {
            n.prev = prev;
        }
        if let Some(d) = self.live_device_mut(device) {
            if d.queue_head == slot {
                d.queue_head = next;
            }
            if d.queue_tail == slot {
                d.queue_tail = prev;
            }
        }
        if let Some(c) = self.commands.get_mut(slot as usize) {
            c.prev = NIL;
            c.next = NIL;
        }
    }

    /// PENDING commands of a device in queue order.
    pub(crate) fn queued(&self, device: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = self.live_device(device).map_or(NIL, |d| d.queue_head);
        while cur != NIL {
            out.push(cur);
            cur = self.entry(cur).map_or(NIL, |c| c.next);
        }
        out
    }

    // ----- application operations ----------------------------------------------------------

    pub(crate) fn cancel(&mut self, slot: u32, now: Timestamp, fx: &mut Effects) -> Result<Command, CommandStatus> {
        match self.transition(slot, CommandEvent::Cancel, now, fx) {
            Ok(_) => self.snapshot(slot).ok_or(CommandStatus::Canceled),
            Err(TransitionRefused::Terminal(s) | TransitionRefused::NotApplicable { from: s, .. }) => Err(s),
        }
    }

    // ----- device events -----------------------------------------------------------------

    pub(crate) fn device_awake(&mut self, id: &DeviceId, now: Timestamp, fx: &mut Effects) -> Option<()> {
        let slot = self.find_device(id)?;
        let window = self.cfg.psm_active_window;
        let d = self.live_device_mut(slot)?;
        d.awake_until = d.awake_until.max(now.saturating_add(window));
        self.release(slot, now, fx);
        Some(())
    }

    /// Counts a late device event for a command no longer in memory.
    pub(crate) fn count_late_event(&mut self) {
        self.stats.late_events_ignored += 1;
    }

    fn ignored(&mut self, slot: u32) -> DeviceEventOutcome {
        self.stats.late_events_ignored += 1;
        DeviceEventOutcome::Ignored(self.entry(slot).map_or(CommandStatus::Canceled, |c| c.status))
    }

    pub(crate) fn ack(&mut self, slot: u32, now: Timestamp, fx: &mut Effects) -> DeviceEventOutcome {
        match self.transition(slot, CommandEvent::Ack, now, fx) {
            Ok(s) => DeviceEventOutcome::Applied(s),
            Err(_) => self.ignored(slot),
        }
    }

    /// A result: while SENT it implies the ACK first (two transitions).
    pub(crate) fn result(
        &mut self,
        slot: u32,
        outcome: CommandOutcome,
        now: Timestamp,
        fx: &mut Effects,
    ) -> DeviceEventOutcome {
        let status = self.entry(slot).map(|c| c.status);
        match status {
            Some(CommandStatus::Sent) => {
                let _ = self.transition(slot, CommandEvent::Ack, now, fx);
            }
            Some(CommandStatus::Delivered) => {}
            _ => return self.ignored(slot),
        }
        if let Some(c) = self.commands.get_mut(slot as usize) {
            c.result = outcome.detail.as_deref().map(Arc::from);
        }
        match self.transition(
            slot,
            CommandEvent::Result {
                success: outcome.success,
            },
            now,
            fx,
        ) {
            Ok(s) => DeviceEventOutcome::Applied(s),
            Err(_) => self.ignored(slot),
        }
    }

    // ----- cancel tasks ---------------------------------------------------------------------

    pub(crate) fn create_task(
        &mut self,
        app: &AppId,
        device_id: &DeviceId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<CancelTask, CreateRefusal> {
        let device = self.owned_device(app, device_id).ok_or(CreateRefusal::DeviceNotFound)?;
        if self.waiting_tasks >= self.cfg.waiting_tasks_per_shard_max {
            return Err(CreateRefusal::Overloaded);
        }
        let slot = match self.free_tasks.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.tasks.len()).map_err(|_| CreateRefusal::Overloaded)?;
                if s > TIMER_SLOT_MAX {
                    return Err(CreateRefusal::Overloaded);
                }
                self.tasks.push_empty();
                s
            }
        };
        let random = self.random80();
        let id = TaskId::compose(self.index, slot, random);
        let commands = self
            .queued(device)
            .into_iter()
            .filter_map(|c| self.entry(c).map(|e| (c, e.id(self.index, c))))
            .collect();
        let app_key = self.live_device(device).map_or(0, |d| d.owner);
        let created = now.max(self.last_created);
        self.last_created = created;
        self.seq += 1;
        self.tasks.set(
            slot as usize,
            Some(TaskEntry {
                id,
                app: app_key,
                device,
                seq: self.seq,
                status: CancelTaskStatus::Waitting,
                created,
                finished: None,
                commands,
                timer_gen: 0,
            }),
        );
        self.apps[app_key as usize].tasks.push_back(slot);
        self.waiting_tasks += 1;
        self.arm_task(slot, now);
        fx.put_task(|| self.task_record(slot));
        self.task_snapshot(slot).ok_or(CreateRefusal::Overloaded)
    }

    /// Runs a waiting task: WAITTING → RUNNING → SUCCESS | PART_SUCCESS | FAILED.
    fn run_task(&mut self, slot: u32, now: Timestamp, fx: &mut Effects) {
        let Some(device) = self.tasks.get_mut(slot as usize).map(|t| {
            t.status = CancelTaskStatus::Running;
            t.device
        }) else {
            return;
        };
        fx.put_task(|| self.task_record(slot));
        let listed: Vec<(u32, CommandId)> = self
            .tasks
            .get(slot as usize)
            .map(|t| t.commands.clone())
            .unwrap_or_default();
        let mut covered = listed.clone();
        let listed_ids: std::collections::HashSet<CommandId> = listed.iter().map(|(_, id)| *id).collect();
        // Every command PENDING now is cancelled, listed or not.
        for c in self.queued(device) {
            if let Some(id) = self.entry(c).map(|e| e.id(self.index, c)) {
                if !listed_ids.contains(&id) {
                    covered.push((c, id));
                }
                let _ = self.transition(c, CommandEvent::Cancel, now, fx);
            }
        }
        let cancelled = covered
            .iter()
            .filter(|(s, id)| {
                self.entry(*s)
                    .is_some_and(|e| e.id(self.index, *s) == *id && e.status == CommandStatus::Canceled)
            })
            .count();
        let status = if cancelled == covered.len() {
            CancelTaskStatus::Success
        } else if cancelled == 0 {
            CancelTaskStatus::Failed
        } else {
            CancelTaskStatus::PartSuccess
        };
        if let Some(t) = self.tasks.get_mut(slot as usize) {
            t.status = status;
            t.finished = Some(now);
            t.commands = covered;
        }
        self.waiting_tasks = self.waiting_tasks.saturating_sub(1);
        fx.put_task(|| self.task_record(slot));
    }

    pub(crate) fn find_task(&self, app: &AppId, id: TaskId) -> Option<u32> {
        let t = self.tasks.get(id.slot() as usize)?;
        (t.id == id && self.apps[t.app as usize].id == *app).then_some(id.slot())
    }

    fn task_record(&self, slot: u32) -> Option<CancelTaskRecord> {
        let t = self.tasks.get(slot as usize)?;
        Some(CancelTaskRecord {
            id: t.id,
            app_id: self.apps[t.app as usize].id.clone(),
            device_id: self.devices[t.device as usize].id().clone(),
            status: t.status,
            creation_time: t.created,
            finish_time: t.finished,
            command_ids: t.commands.iter().map(|(_, id)| *id).collect(),
        })
    }

    pub(crate) fn task_snapshot(&self, slot: u32) -> Option<CancelTask> {
        let (mut task, commands) = self.task_parts(slot)?;
        task.commands = commands.into_iter().filter_map(Result::ok).collect();
        Some(task)
    }

    /// A task (its `commands` left empty) and its commands as memory has
    /// them, in the task's order: `Err(id)` for one that has left memory
    /// (the dispatcher looks it up in the history).
    pub(crate) fn task_parts(&self, slot: u32) -> Option<TaskParts> {
        let t = self.tasks.get(slot as usize)?;
        let task = CancelTask {
            id: t.id,
            app_id: self.apps[t.app as usize].id.clone(),
            device_id: self.devices[t.device as usize].id().clone(),
            status: t.status,
            creation_time: t.created,
            finish_time: t.finished,
            commands: Vec::new(),
        };
        let commands = t
            .commands
            .iter()
            .map(|&(s, id)| {
                self.entry(s)
                    .filter(|e| e.id(self.index, s) == id)
                    .and_then(|_| self.snapshot(s))
                    .ok_or(id)
            })
            .collect();
        Some((task, commands))
    }

    /// Tasks of `app` in this shard, oldest first, that pass `keep` (which
    /// sees each task without its commands).
    pub(crate) fn tasks_of(&self, app: &AppId, keep: &dyn Fn(&CancelTask) -> bool) -> Vec<(Timestamp, u64, TaskParts)> {
        let Some(key) = self.app_key(app) else {
            return Vec::new();
        };
        self.apps[key as usize]
            .tasks
            .iter()
            .filter_map(|&slot| {
                let seq = self.tasks.get(slot as usize)?.seq;
                self.task_parts(slot).map(|t| (t.0.creation_time, seq, t))
            })
            .filter(|(_, _, t)| keep(&t.0))
            .collect()
    }

    // ----- timers --------------------------------------------------------------------------

    fn arm_command(&mut self, slot: u32, at: Timestamp) {
        let Some(c) = self.commands.get_mut(slot as usize) else {
            return;
        };
        c.timer_gen = c.timer_gen.wrapping_add(1);
        if !c.timer_armed {
            c.timer_armed = true;
            self.timed_live += 1;
        }
        let g = c.timer_gen;
        self.timers.arm(at, TimerTarget::Command(slot), g);
    }

    fn disarm_command(&mut self, slot: u32) {
        let Some(c) = self.commands.get_mut(slot as usize) else {
            return;
        };
        c.timer_gen = c.timer_gen.wrapping_add(1);
        if c.timer_armed {
            c.timer_armed = false;
            self.timed_live = self.timed_live.saturating_sub(1);
        }
    }

    fn arm_task(&mut self, slot: u32, at: Timestamp) {
        if let Some(t) = self.tasks.get_mut(slot as usize) {
            t.timer_gen = t.timer_gen.wrapping_add(1);
            let g = t.timer_gen;
            self.timed_live += 1;
            self.timers.arm(at, TimerTarget::Task(slot), g);
        }
    }

    fn arm_sweep(&mut self, now: Timestamp) {
        self.sweep_gen = self.sweep_gen.wrapping_add(1);
        self.timers.arm(
            now.saturating_add(self.cfg.sweep_interval),
            TimerTarget::Sweep,
            self.sweep_gen,
        );
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.next_deadline()
    }

    /// Fires every deadline due at `now`; returns how many live ones fired.
    /// Fires what is due. `may_archive`: the sweep may move commands to the
    /// history now (otherwise they wait for a later sweep).
    pub(crate) fn fire_due(&mut self, now: Timestamp, fx: &mut Effects, may_archive: bool) -> usize {
        let mut fired = 0;
        while let Some(due) = self.timers.pop_due(now) {
            match due.target {
                TimerTarget::Command(slot) => {
                    let live = self
                        .entry(slot)
                        .is_some_and(|c| c.timer_armed && c.timer_gen == due.generation);
                    if live {
                        if let Some(c) = self.commands.get_mut(slot as usize) {
                            c.timer_armed = false;
                        }
                        self.timed_live = self.timed_live.saturating_sub(1);
                        self.on_command_deadline(slot, now, fx);
                        fired += 1;
                    }
                }
                TimerTarget::Task(slot) => {
                    let live = self
                        .tasks
                        .get(slot as usize)
                        .is_some_and(|t| t.timer_gen == due.generation);
                    if live {
                        self.timed_live = self.timed_live.saturating_sub(1);
                        self.run_task(slot, now, fx);
                        fired += 1;
                    }
                }
                TimerTarget::Sweep => {
                    if due.generation == self.sweep_gen {
                        self.sweep(now, fx, may_archive);
                        fired += 1;
                    }
                }
            }
        }
        let commands = &self.commands;
        let tasks = &self.tasks;
        let sweep_gen = self.sweep_gen;
        self.timers
            .compact_if_needed(self.timed_live + 1, |target, g| match target {
                TimerTarget::Command(s) => commands
                    .get(s as usize)
                    .is_some_and(|c| c.timer_armed && c.timer_gen == g),
                TimerTarget::Task(s) => tasks
                    .get(s as usize)
                    .is_some_and(|t| t.timer_gen == g && !t.status.is_final()),
                TimerTarget::Sweep => g == sweep_gen,
            });
        fired
    }

    fn on_command_deadline(&mut self, slot: u32, now: Timestamp, fx: &mut Effects) {
        let cfg = Arc::clone(&self.cfg);
        let Some(c) = self.entry(slot) else { return };
        match c.status {
            CommandStatus::Pending => {
                if now >= c.expire_at {
                    let _ = self.transition(slot, CommandEvent::Expire, now, fx);
                } else {
                    let at = c.expire_at;
                    self.arm_command(slot, at);
                }
            }
            CommandStatus::Sent => {
                let issued = c.issued_at;
                let timeout_at = issued.saturating_add(cfg.command_timeout);
                if now >= timeout_at {
                    let _ = self.transition(slot, CommandEvent::Timeout, now, fx);
                    return;
                }
                let resend_at = resend_at(issued, c.issued_times, &cfg);
                // Expiry is checked before every resend: an expired command is not sent again.
                let may_resend = c.issued_times < c.max_retransmit && now < c.expire_at;
                if may_resend && now >= resend_at {
                    let attempt = c.issued_times + 1;
                    if let Some(c) = self.commands.get_mut(slot as usize) {
                        c.issued_times = attempt;
                    }
                    self.stats.retransmissions += 1;
                    self.send(slot, attempt, fx);
                    fx.put_command(|| self.snapshot(slot));
                }
                let next = self.entry(slot).map_or(timeout_at, |c| sent_deadline(c, &cfg, now));
                self.arm_command(slot, next);
            }
            CommandStatus::Delivered => {
                let _ = self.transition(slot, CommandEvent::Timeout, now, fx);
            }
            _ => {}
        }
    }

    /// Frees terminal commands past their grace (to the history) or their
    /// retention, in the order they ended, and finished tasks past their
    /// retention, oldest first per application; at most [`SWEEP_BATCH_MAX`]
    /// per call.
    fn sweep(&mut self, now: Timestamp, fx: &mut Effects, may_archive: bool) {
        let retention = self.cfg.retention;
        let stay = if self.archive {
            self.cfg.history_grace.min(retention)
        } else {
            retention
        };
        let mut leaving: Vec<u32> = Vec::new();
        while leaving.len() < SWEEP_BATCH_MAX && (may_archive || !self.archive) {
            let Some(&front) = self.ended.front() else { break };
            let due = match self.entry(front) {
                Some(c) if c.status.is_terminal() => c.terminal_at.saturating_add(stay) <= now,
                // Not a terminal command (cannot happen: `ended` only names
                // terminal slots, which only this sweep frees): drop the entry.
                _ => {
                    self.ended.pop_front();
                    continue;
                }
            };
            if !due {
                break;
            }
            self.ended.pop_front();
            leaving.push(front);
        }
        let budget = SWEEP_BATCH_MAX - leaving.len();
        self.free_ended(&leaving, now, fx);
        self.sweep_tasks(budget, now, fx);
    }

    /// Takes the terminal commands in `leaving` out of the indexes and
    /// memory, handing each to the history or telling the store to forget it.
    /// Indexes are filtered once per application and device touched: a
    /// sweep costs the size of those indexes, not a removal each.
    fn free_ended(&mut self, leaving: &[u32], now: Timestamp, fx: &mut Effects) {
        if leaving.is_empty() {
            return;
        }
        let mut sorted = leaving.to_vec();
        sorted.sort_unstable();
        let gone = |s: &u32| sorted.binary_search(s).is_ok();
        let mut apps: Vec<u32> = leaving.iter().filter_map(|&s| self.entry(s).map(|c| c.app)).collect();
        apps.sort_unstable();
        apps.dedup();
        for a in apps {
            if let Some(app) = self.apps.get_mut(a as usize) {
                app.commands.retain(|s| !gone(s));
            }
        }
        let mut devices: Vec<u32> = leaving
            .iter()
            .filter_map(|&s| self.entry(s).map(|c| c.device))
            .collect();
        devices.sort_unstable();
        devices.dedup();
        for d in devices {
            if let Some(d) = self.live_device_mut(d)
                && let Some(h) = d.history.as_mut()
            {
                h.retain(|s| !gone(s));
                if h.is_empty() {
                    d.history = None;
                }
            }
        }
        let retention = self.cfg.retention;
        for &slot in leaving {
            let expired = self
                .entry(slot)
                .is_some_and(|c| c.terminal_at.saturating_add(retention) <= now);
            if self.archive && !expired {
                fx.archive_command(|| self.snapshot(slot));
                self.stats.archived += 1;
            } else {
                fx.forget_command(|| self.snapshot(slot));
            }
            // Past every generation the freed command used (see `free_commands`).
            let next_gen = self.entry(slot).map_or(0, |c| c.timer_gen.wrapping_add(1));
            self.commands.set(slot as usize, None);
            self.free_commands.push((slot, next_gen));
            self.stats.swept += 1;
        }
    }

    /// Frees up to `budget` finished tasks past their retention, then arms the next sweep.
    fn sweep_tasks(&mut self, mut budget: usize, now: Timestamp, fx: &mut Effects) {
        let retention = self.cfg.retention;
        for a in 0..self.apps.len() {
            while budget > 0 {
                let Some(front) = self.apps[a].tasks.front().copied() else {
                    break;
                };
                let done = self
                    .tasks
                    .get(front as usize)
                    .and_then(|t| t.finished)
                    .is_some_and(|t| t.saturating_add(retention) <= now);
                if !done {
                    break;
                }
                self.apps[a].tasks.pop_front();
                if let Some(t) = self.tasks.set(front as usize, None) {
                    fx.forget_task(t.id);
                }
                self.free_tasks.push(front);
                budget -= 1;
            }
        }
        if budget == 0 {
            // More is due: come back at the next tick rather than hold the lock longer.
            self.sweep_gen = self.sweep_gen.wrapping_add(1);
            self.timers.arm(now, TimerTarget::Sweep, self.sweep_gen);
        } else {
            self.arm_sweep(now);
        }
    }

    // ----- queries ---------------------------------------------------------------------------

    /// The `(created, seq)` key of a slot named by an index (a missing one
    /// sorts last; indexes only name live slots).
    fn key(&self, slot: u32) -> (Timestamp, u64) {
        self.entry(slot).map_or((Timestamp::NEVER, u64::MAX), CommandEntry::key)
    }

    /// Positions `[lo, hi)` of the window `[from, to)` in an index.
    fn window(&self, index: &VecDeque<u32>, from: Timestamp, to: Timestamp) -> (usize, usize) {
        let lo = index.partition_point(|&s| self.key(s).0 < from);
        let hi = index.partition_point(|&s| self.key(s).0 < to);
        (lo, hi.max(lo))
    }

    /// The in-memory index of a scope: an application's commands in this
    /// shard, or one device's.
    fn scope_index(&self, scope: HistoryScope<'_>) -> Option<&VecDeque<u32>> {
        match scope {
            HistoryScope::App(app) => self.app_key(app).map(|k| &self.apps[k as usize].commands),
            HistoryScope::Device(id) => self.live_device(self.find_device(id)?)?.history.as_deref(),
        }
    }

    /// Number of the scope's commands in memory created in `[from, to)`.
    pub(crate) fn count(&self, scope: HistoryScope<'_>, from: Timestamp, to: Timestamp) -> u64 {
        let Some(idx) = self.scope_index(scope) else { return 0 };
        let (lo, hi) = self.window(idx, from, to);
        (hi - lo) as u64
    }

    /// Creation times of the scope's first and last commands in memory created in `[from, to)`.
    pub(crate) fn bounds(
        &self,
        scope: HistoryScope<'_>,
        from: Timestamp,
        to: Timestamp,
    ) -> Option<(Timestamp, Timestamp)> {
        let idx = self.scope_index(scope)?;
        let (lo, hi) = self.window(idx, from, to);
        if lo >= hi {
            return None;
        }
        Some((self.key(*idx.get(lo)?).0, self.key(*idx.get(hi - 1)?).0))
    }

    /// The `skip`-th of the scope's commands created exactly at `t`, as a cursor, if any.
    pub(crate) fn tie_cursor(&self, scope: HistoryScope<'_>, t: Timestamp, skip: u64) -> Option<(Timestamp, u64)> {
        let idx = self.scope_index(scope)?;
        let lo = idx.partition_point(|&s| self.key(s).0 < t);
        let pos = lo.checked_add(usize::try_from(skip).ok()?)?;
        idx.get(pos).map(|&s| self.key(s)).filter(|k| k.0 == t)
    }

    /// Up to `n` of the scope's commands with key ≥ `cursor` and creation before `to`.
    pub(crate) fn fetch(
        &self,
        scope: HistoryScope<'_>,
        cursor: (Timestamp, u64),
        to: Timestamp,
        n: usize,
    ) -> Vec<((Timestamp, u64), Command)> {
        let Some(idx) = self.scope_index(scope) else {
            return Vec::new();
        };
        let start = idx.partition_point(|&s| self.key(s) < cursor);
        idx.range(start..)
            .take_while(|&&s| self.key(s).0 < to)
            .take(n)
            .filter_map(|&s| self.snapshot(s).map(|c| (self.key(s), c)))
            .collect()
    }

    /// How many devices have a number of live commands in each bucket:
    /// `counts[i]` is the devices with at most `bounds[i]` (and more than
    /// `bounds[i-1]`); the last entry counts those above every bound.
    pub(crate) fn live_depths(&self, bounds: &[u32], counts: &mut [u64]) {
        for d in &self.devices {
            let DeviceSlot::Live(d) = d else { continue };
            let i = bounds.partition_point(|&b| b < d.live);
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
        }
    }

    /// The device's slot if it is one of `app`'s.
    pub(crate) fn device_slot(&self, app: &AppId, id: &DeviceId) -> Option<u32> {
        self.owned_device(app, id)
    }

    /// Checks the shard's invariants (tests and fuzzing): queue links agree,
    /// queued commands are PENDING and cached, counters match.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut live = 0u64;
        for c in self.commands.iter() {
            if !c.status.is_terminal() {
                live += 1;
            }
        }
        if live != self.stats.live {
            return Err(format!("live count {} != {}", self.stats.live, live));
        }
        let terminal = self.commands.iter().filter(|c| c.status.is_terminal()).count();
        if terminal != self.ended.len()
            || self
                .ended
                .iter()
                .any(|&s| !self.entry(s).is_some_and(|c| c.status.is_terminal()))
        {
            return Err(format!(
                "{} terminal commands in memory, {} in the ended queue",
                terminal,
                self.ended.len()
            ));
        }
        let mut by_status = [0u64; 3];
        for c in self.commands.iter() {
            if !c.status.is_terminal() {
                by_status[usize::from(c.status.rank())] += 1;
            }
        }
        if by_status != self.stats.live_by_status {
            return Err(format!(
                "live by status {:?} != {:?}",
                self.stats.live_by_status, by_status
            ));
        }
        for (i, d) in self.devices.iter().enumerate() {
            let DeviceSlot::Live(d) = d else { continue };
            let slot = i as u32;
            let mut prev = NIL;
            let mut cur = d.queue_head;
            let mut last_seq = 0;
            while cur != NIL {
                let c = self.entry(cur).ok_or("queue names a free slot")?;
                if c.status != CommandStatus::Pending || !c.cached || c.device != slot || c.prev != prev {
                    return Err(format!("bad queue entry {cur}: {:?}", c.status));
                }
                let seq = c.seq;
                if seq <= last_seq {
                    return Err("queue out of creation order".into());
                }
                last_seq = seq;
                prev = cur;
                cur = c.next;
            }
            if d.queue_tail != prev {
                return Err("queue tail mismatch".into());
            }
            let dev_live = d
                .history()
                .filter(|&s| self.entry(s).is_some_and(|c| !c.status.is_terminal()))
                .count();
            if dev_live as u32 != d.live {
                return Err(format!("device live {} != {}", d.live, dev_live));
            }
            if d.in_flight != NIL {
                let c = self.entry(d.in_flight).ok_or("in-flight names a free slot")?;
                if c.status != CommandStatus::Sent || !c.cached {
                    return Err(format!("in-flight command is {}", c.status));
                }
            }
            let sent_cached = d
                .history()
                .filter(|&s| {
                    self.entry(s)
                        .is_some_and(|c| c.cached && c.status == CommandStatus::Sent)
                })
                .count();
            if sent_cached > 1 {
                return Err("more than one cached command in flight".into());
            }
        }
        Ok(())
    }
}

/// When a SENT command's next resend is due: the first wait is `ack_timeout`,
/// doubling after each resend (2 s, 4 s, 8 s … with the default).
fn resend_at(issued: Timestamp, issued_times: u8, cfg: &CoreConfig) -> Timestamp {
    let ack_ms = u64::try_from(cfg.ack_timeout.as_millis()).unwrap_or(u64::MAX);
    let factor = (1u64 << (u32::from(issued_times) + 1).min(62)) - 1;
    Timestamp::from_millis(issued.as_millis().saturating_add(ack_ms.saturating_mul(factor)))
}

/// The next deadline of a SENT command: its next resend, or its timeout.
fn sent_deadline(c: &CommandEntry, cfg: &CoreConfig, now: Timestamp) -> Timestamp {
    let issued = c.issued_at;
    let timeout_at = issued.saturating_add(cfg.command_timeout);
    if c.issued_times < c.max_retransmit && now < c.expire_at {
        resend_at(issued, c.issued_times, cfg).min(timeout_at)
    } else {
        timeout_at
    }
}

#[cfg(test)]
mod tests {
    /// The memory budget (10 M pending commands in 3 GiB) depends on these sizes.
    #[test]
    fn entries_stay_compact() {
        assert!(
            std::mem::size_of::<Option<super::CommandEntry>>() <= 152,
            "{}",
            std::mem::size_of::<super::CommandEntry>()
        );
        assert!(
            std::mem::size_of::<super::DeviceSlot>() <= 88,
            "{}",
            std::mem::size_of::<super::DeviceSlot>()
        );
    }
}
