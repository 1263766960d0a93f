//! The embedding API: a [`Dispatcher`] owns the shards and hands their effects out.

mod restore;
pub use restore::{RecoveredState, RestoreReport};

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::cancel_task::CancelTask;
use crate::clock::{Clock, SystemClock, Timestamp, VirtualClock};
use crate::command::{Command, CommandBody, CommandOutcome, NewCommand};
use crate::config::CoreConfig;
use crate::effects::Effects;
use crate::error::StoreError;
use crate::error::{
    CancelError, CancelTaskError, CreateError, DeviceEventError, InvalidInput, QueryError, RegistryError,
};
use crate::history::{History, HistoryScope};
use crate::id::{AppId, CommandId, DeviceId, TaskId, splitmix};
use crate::output::{CommandStore, Commit, DeviceLink, EventSink, Mutation};
use crate::query::{CommandQuery, Cursor, Page, ShardIndex, TaskQuery, merge_page, window};
use crate::registry::{App, AppRegistry, Caller, Device, NewDevice};
use crate::shard::{CreateRefusal, DeviceEventOutcome, ShardState, ShardStats, TaskParts};

/// A result together with the commit that makes it durable. Answer the
/// application only after `commit` completes (201 means synced).
#[derive(Debug)]
#[must_use = "the commit says when the change is durable"]
pub struct Receipt<T> {
    /// The result.
    pub value: T,
    /// Completes when every change behind `value` is in the store.
    pub commit: Commit,
}

impl<T> Receipt<T> {
    /// Waits for the commit (blocking) and returns the value.
    pub fn durable(self) -> Result<T, crate::error::StoreError> {
        self.commit.wait()?;
        Ok(self.value)
    }
}

struct Shard {
    state: Mutex<ShardState>,
    /// Held while a shard's effects are handed out, so they leave in the
    /// order they happened; taken before the state lock is released. Holds
    /// the commit of the shard's last store submission.
    output: Mutex<Commit>,
}

/// Counters summed over all shards.
pub type Stats = ShardStats;

/// Builds a [`Dispatcher`].
pub struct DispatcherBuilder {
    config: CoreConfig,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn CommandStore>>,
    link: Option<Arc<dyn DeviceLink>>,
    events: Option<Arc<dyn EventSink>>,
    history: Option<Arc<dyn History>>,
}

impl DispatcherBuilder {
    /// The clock to take time from (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store that keeps every change (default: none, a pure in-memory model).
    pub fn store(mut self, store: Arc<dyn CommandStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The transport that carries commands to devices (default: none; sends go nowhere).
    pub fn link(mut self, link: Arc<dyn DeviceLink>) -> Self {
        self.link = Some(link);
        self
    }

    /// The sink of status changes (default: none).
    pub fn events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = Some(events);
        self
    }

    /// The stored history terminal commands move to after
    /// [`CoreConfig::history_grace`] (default: none; they stay in memory for
    /// the whole retention). Queries then read memory and history together.
    /// Needs a store: the store is what receives the archived commands.
    pub fn history(mut self, history: Arc<dyn History>) -> Self {
        self.history = Some(history);
        self
    }

    /// Checks the configuration and builds the dispatcher.
    pub fn build(self) -> Result<Dispatcher, InvalidInput> {
        self.config.validate()?;
        if self.history.is_some() && self.store.is_none() {
            return Err(InvalidInput::new("history", "needs a store to archive into"));
        }
        let archive = self.history.is_some();
        let seed = self.config.id_seed.unwrap_or_else(os_seed);
        let cfg = Arc::new(self.config);
        let now = self.clock.now();
        let shards = (0..cfg.shard_count)
            .map(|i| Shard {
                state: Mutex::new(ShardState::new(i, Arc::clone(&cfg), seed, now, archive)),
                output: Mutex::new(Commit::done()),
            })
            .collect();
        Ok(Dispatcher {
            shards,
            mask: u64::from(cfg.shard_count) - 1,
            cfg,
            clock: self.clock,
            store: self.store,
            link: self.link,
            events: self.events,
            history: self.history,
            archives_started: AtomicU64::new(0),
            archives_finished: AtomicU64::new(0),
            archive_gate: parking_lot::RwLock::new(()),
            apps: AppRegistry::default(),
            device_ids: Mutex::new(seed.rotate_left(17) ^ 0x5851_f42d_4c95_7f2d),
        })
    }
}

/// A seed from the process's hasher randomness (which the OS provides).
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x2545_f491_4f6c_dd1d);
    h.finish()
}

/// The dispatch core: devices, their command queues, cancel tasks and timers,
/// in shards. Cheap to share (`Arc<Dispatcher>`); every method takes `&self`.
pub struct Dispatcher {
    shards: Box<[Shard]>,
    mask: u64,
    cfg: Arc<CoreConfig>,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn CommandStore>>,
    link: Option<Arc<dyn DeviceLink>>,
    events: Option<Arc<dyn EventSink>>,
    history: Option<Arc<dyn History>>,
    /// Operations that took commands out of memory for the history, counted
    /// before the memory change is visible and after its store batch is
    /// submitted: a query that saw both equal before and the first unchanged
    /// after read memory and history with nothing in between.
    archives_started: AtomicU64,
    archives_finished: AtomicU64,
    /// Held (shared) by every tick that may archive, from before the shard
    /// lock until its hand-out is submitted; a query whose optimistic runs
    /// all overlapped an archive takes it exclusively for its last run.
    archive_gate: parking_lot::RwLock<()>,
    apps: AppRegistry,
    device_ids: Mutex<u64>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A builder with `config`, the system clock, and no store, link or event sink.
    pub fn builder(config: CoreConfig) -> DispatcherBuilder {
        DispatcherBuilder {
            config,
            clock: Arc::new(SystemClock),
            store: None,
            link: None,
            events: None,
            history: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The dispatcher's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn shard_of(&self, device: &DeviceId) -> usize {
        // The mask keeps the index below the shard count, which fits in usize.
        (device.stable_hash() & self.mask) as usize
    }

    /// Runs `op` under shard `s`'s lock, then hands its effects out in order
    /// after the lock is released.
    fn with_shard<R>(&self, s: usize, op: impl FnOnce(&mut ShardState, Timestamp, &mut Effects) -> R) -> (R, Commit) {
        let shard = &self.shards[s];
        let mut state = shard.state.lock();
        let now = self.clock.now();
        let mut fx = Effects::new(self.store.is_some(), self.events.is_some(), self.link.is_some());
        let r = op(&mut state, now, &mut fx);
        if fx.is_empty() {
            return (r, Commit::done());
        }
        let archived = fx.archived > 0;
        if archived {
            self.archives_started.fetch_add(1, Ordering::SeqCst);
        }
        let mut last = shard.output.lock();
        drop(state);
        let commit = self.hand_out(fx);
        *last = commit.share();
        drop(last);
        if archived {
            self.archives_finished.fetch_add(1, Ordering::SeqCst);
        }
        (r, commit)
    }

    fn hand_out(&self, mut fx: Effects) -> Commit {
        if let (Some(events), false) = (&self.events, fx.changes.is_empty()) {
            events.records(&fx.changes, &mut fx.mutations);
        }
        let commit = match (&self.store, fx.mutations.is_empty()) {
            (Some(store), false) => store.submit(fx.mutations),
            _ => Commit::done(),
        };
        if let Some(link) = &self.link {
            // A refused send is a lost send: the resend rules cover it.
            for issue in fx.issues {
                let _ = link.issue(issue);
            }
        }
        if let (Some(events), false) = (&self.events, fx.changes.is_empty()) {
            events.publish_committed(&fx.changes, commit.share());
        }
        commit
    }

    /// Completes once every change visible in the shards so far is durable:
    /// await it after a query and before answering, so that nobody is told
    /// of a status the store could still lose (a timer or device event
    /// changes memory a moment before its record is synced). `device`
    /// narrows it to that device's shard; `None` covers every shard.
    pub fn visible_durable(&self, device: Option<&DeviceId>) -> Vec<Commit> {
        let settle = |s: &Shard| s.output.lock().share();
        match device {
            Some(d) => vec![settle(&self.shards[self.shard_of(d)])],
            None => self.shards.iter().map(settle).collect(),
        }
    }

    /// Whether terminal commands move to a [`History`] (and queries may read it).
    pub fn has_history(&self) -> bool {
        self.history.is_some()
    }

    /// Whether the store is backlogged ([`CommandStore::is_backlogged`]): new
    /// work would wait for it. Refuse work that can be refused.
    pub fn store_backlogged(&self) -> bool {
        self.store.as_ref().is_some_and(|s| s.is_backlogged())
    }

    fn submit(&self, mutations: Vec<Mutation>) -> Commit {
        match &self.store {
            Some(store) => store.submit(mutations),
            None => Commit::done(),
        }
    }

    // ----- applications --------------------------------------------------------------------

    /// Adds an application.
    pub fn add_app(&self, app: App) -> Result<Receipt<()>, RegistryError> {
        self.apps.insert(app.clone())?;
        Ok(Receipt {
            value: (),
            commit: self.submit(vec![Mutation::PutApp(app)]),
        })
    }

    /// Replaces an application's settings (secret hash, quota, authorisations).
    pub fn update_app(&self, app: App) -> Result<Receipt<()>, RegistryError> {
        self.apps.update(app.clone())?;
        Ok(Receipt {
            value: (),
            commit: self.submit(vec![Mutation::PutApp(app)]),
        })
    }

    /// Removes an application. Its devices and commands stay until removed;
    /// the HTTP layer refuses its logins from now on.
    pub fn remove_app(&self, id: &AppId) -> Result<Receipt<App>, RegistryError> {
        let app = self.apps.remove(id)?;
        Ok(Receipt {
            value: app,
            commit: self.submit(vec![Mutation::RemoveApp(id.clone())]),
        })
    }

    /// An application by id.
    pub fn app(&self, id: &AppId) -> Option<App> {
        self.apps.get(id)
    }

    /// Every application, by id.
    pub fn apps(&self) -> Vec<App> {
        self.apps.list()
    }

    /// Whether an application is registered (cheaper than [`Dispatcher::app`]).
    pub fn app_exists(&self, id: &AppId) -> bool {
        self.apps.contains(id)
    }

    /// The application whose devices `caller` acts on.
    pub fn resolve(&self, caller: &Caller) -> Result<AppId, crate::error::AccessError> {
        self.apps.resolve(caller).cloned()
    }

    // ----- devices ----------------------------------------------------------------------

    fn new_device_id(&self) -> DeviceId {
        let mut st = self.device_ids.lock();
        let hi = splitmix(&mut st);
        let lo = splitmix(&mut st);
        DeviceId::from_uuid_bits((u128::from(hi) << 64) | u128::from(lo))
    }

    /// Registers a device for the application `caller` acts for.
    pub fn register_device(&self, caller: &Caller, req: NewDevice) -> Result<Receipt<Device>, RegistryError> {
        req.validate()?;
        let owner = self.apps.resolve(caller)?.clone();
        if !self.apps.contains(&owner) {
            return Err(RegistryError::AppNotExisted);
        }
        for _ in 0..8 {
            let id = match &req.device_id {
                Some(id) => id.clone(),
                None => self.new_device_id(),
            };
            let device = Device {
                id,
                node_id: req.node_id.clone(),
                owner: owner.clone(),
                profile: req.profile,
            };
            let s = self.shard_of(&device.id);
            let (added, _) = self.with_shard(s, |st, _, _| st.add_device(&device));
            if added {
                let commit = self.submit(vec![Mutation::PutDevice(device.clone())]);
                return Ok(Receipt { value: device, commit });
            }
            if req.device_id.is_some() {
                return Err(RegistryError::DeviceExists);
            }
        }
        Err(RegistryError::DeviceExists)
    }

    /// Removes a device: its PENDING commands end CANCELED, those in flight TIMEOUT.
    pub fn remove_device(&self, caller: &Caller, id: &DeviceId) -> Result<Receipt<()>, RegistryError> {
        let app = self.apps.resolve(caller)?;
        let (r, commit) = self.with_shard(self.shard_of(id), |st, now, fx| st.remove_device(app, id, now, fx));
        r.map_err(|_| RegistryError::DeviceNotFound)?;
        Ok(Receipt { value: (), commit })
    }

    /// A device of the application `caller` acts for.
    pub fn device(&self, caller: &Caller, id: &DeviceId) -> Result<Device, QueryError> {
        let app = self.apps.resolve(caller)?;
        let (d, _) = self.with_shard(self.shard_of(id), |st, _, _| st.device(app, id));
        d.ok_or(QueryError::DeviceNotFound)
    }

    // ----- commands ---------------------------------------------------------------------

    /// Creates a command. Cached commands (expireTime omitted or > 0) wait in
    /// the device's queue; immediate ones (expireTime = 0) are SENT at once.
    pub fn create_command(&self, caller: &Caller, req: NewCommand) -> Result<Receipt<Command>, CreateError> {
        req.validate(self.cfg.paras_len_max)?;
        let app = self.apps.resolve(caller)?;
        let body = CommandBody::new(&req.service_id, &req.method, &req.paras)?;
        let s = self.shard_of(&req.device_id);
        let (r, commit) = self.with_shard(s, |st, now, fx| st.create(app, &req, body, now, fx));
        match r {
            Ok(command) => Ok(Receipt { value: command, commit }),
            Err(CreateRefusal::DeviceNotFound) => Err(CreateError::DeviceNotFound),
            Err(CreateRefusal::DeviceFull) => Err(CreateError::DeviceQueueFull {
                limit: self.cfg.device_live_max,
                request: Box::new(req),
            }),
            Err(CreateRefusal::Overloaded) => Err(CreateError::Overloaded { request: Box::new(req) }),
        }
    }

    /// Cancels one command; only a PENDING command can be cancelled.
    pub fn cancel_command(&self, caller: &Caller, id: CommandId) -> Result<Receipt<Command>, CancelError> {
        let app = self.apps.resolve(caller)?;
        let s = usize::from(id.shard());
        if s >= self.shards.len() {
            return Err(CancelError::CommandNotFound);
        }
        let (r, commit) = self.with_shard(s, |st, now, fx| {
            let slot = st.find_command(app, id).ok_or(CancelError::CommandNotFound)?;
            st.cancel(slot, now, fx)
                .map_err(|status| CancelError::NotCancellable { status })
        });
        match r {
            Ok(value) => Ok(Receipt { value, commit }),
            // Not in memory: one in the history has ended, so it cannot be cancelled.
            Err(CancelError::CommandNotFound) => match self.archived_command(app, s, id)? {
                Some(c) => Err(CancelError::NotCancellable { status: c.status }),
                None => Err(CancelError::CommandNotFound),
            },
            Err(e) => Err(e),
        }
    }

    /// A command of `app` that has left memory for the history, if any.
    /// Waits first for shard `s`'s last submission, so a command taken out
    /// of memory just before is found in the history, not lost between.
    fn archived_command(&self, app: &AppId, s: usize, id: CommandId) -> Result<Option<Command>, StoreError> {
        let Some(history) = &self.history else {
            return Ok(None);
        };
        self.settle(Some(s))?;
        Ok(history.command(id)?.filter(|c| c.app_id == *app))
    }

    /// Waits until the last submission of shard `s` (or of every shard) is durable.
    fn settle(&self, s: Option<usize>) -> Result<(), StoreError> {
        match s {
            Some(s) => self.shards[s].output.lock().share().wait(),
            None => self.shards.iter().try_for_each(|sh| sh.output.lock().share().wait()),
        }
    }

    /// One command of the application `caller` acts for, from memory or,
    /// once it has left memory, from the history. With a history attached
    /// this may block on the store: call it off async workers.
    pub fn command(&self, caller: &Caller, id: CommandId) -> Result<Command, QueryError> {
        let app = self.apps.resolve(caller)?;
        let s = usize::from(id.shard());
        let shard = self.shards.get(s).ok_or(QueryError::CommandNotFound)?;
        let found = {
            let st = shard.state.lock();
            st.find_command(app, id).and_then(|slot| st.snapshot(slot))
        };
        match found {
            Some(c) => Ok(c),
            None => self.archived_command(app, s, id)?.ok_or(QueryError::CommandNotFound),
        }
    }

    /// A page of the commands of the application `caller` acts for, oldest
    /// first, from memory and the history together.
    ///
    /// `totalSize` and the page are exact for the moment the query ran: if
    /// a shard moved commands to the history while the page was assembled
    /// (the counters in [`Dispatcher`] tell), the query waits for that batch
    /// and runs again; its last of [`QUERY_ATTEMPTS`] runs holds archiving
    /// back (the sweeps that would archive skip it until the next one).
    pub fn list_commands(&self, caller: &Caller, q: &CommandQuery) -> Result<Page<Command>, QueryError> {
        let app = self.apps.resolve(caller)?;
        let (from, to, offset) = window(q.from, q.to, q.page_no, q.page_size)?;
        let n = q.page_size as usize;
        let (scope, shard) = match &q.device_id {
            Some(device) => {
                let s = self.shard_of(device);
                if self.shards[s].state.lock().device_slot(app, device).is_none() {
                    return Err(QueryError::DeviceNotFound);
                }
                (HistoryScope::Device(device), Some(s))
            }
            None => (HistoryScope::App(app), None),
        };
        let mut attempt = 0;
        let (total, items) = loop {
            attempt += 1;
            let last = attempt >= QUERY_ATTEMPTS;
            let _gate = (last && self.history.is_some()).then(|| self.archive_gate.write());
            let started = self.archives_started.load(Ordering::SeqCst);
            if self.history.is_some() {
                if !last && self.archives_finished.load(Ordering::SeqCst) != started {
                    // A batch is between leaving memory and its submission: a moment.
                    std::thread::yield_now();
                    continue;
                }
                self.settle(shard)?;
            }
            let ix = Participants {
                d: self,
                scope,
                shard,
                history: self.history.as_deref(),
                failed: Cell::new(None),
            };
            let page = merge_page(&ix, from, to, offset, n);
            if let Some(e) = ix.failed.take() {
                return Err(QueryError::Store(e));
            }
            if self.history.is_none() || last || self.archives_started.load(Ordering::SeqCst) == started {
                break page;
            }
        };
        Ok(Page {
            items,
            page_no: q.page_no,
            page_size: q.page_size,
            total_size: total,
        })
    }

    /// A task's commands completed from the history where they left memory.
    fn complete_task(&self, app: &AppId, s: usize, (mut task, commands): TaskParts) -> Result<CancelTask, StoreError> {
        let history = match &self.history {
            Some(h) if commands.iter().any(Result::is_err) => {
                // Once for the whole task: what left memory before is in the history now.
                self.settle(Some(s))?;
                Some(h)
            }
            _ => None,
        };
        for c in commands {
            match (c, history) {
                (Ok(c), _) => task.commands.push(c),
                // Past retention it is in neither: the task lists what remains.
                (Err(id), Some(h)) => task.commands.extend(h.command(id)?.filter(|c| c.app_id == *app)),
                (Err(_), None) => {}
            }
        }
        Ok(task)
    }

    // ----- cancel tasks ----------------------------------------------------------------------

    /// Creates a cancel task for every PENDING command of a device. It is
    /// created WAITTING and runs at the next [`Dispatcher::tick`].
    pub fn create_cancel_task(
        &self,
        caller: &Caller,
        device: &DeviceId,
    ) -> Result<Receipt<CancelTask>, CancelTaskError> {
        let app = self.apps.resolve(caller)?;
        let (r, commit) = self.with_shard(self.shard_of(device), |st, now, fx| {
            st.create_task(app, device, now, fx)
        });
        match r {
            Ok(task) => Ok(Receipt { value: task, commit }),
            Err(CreateRefusal::DeviceNotFound) => Err(CancelTaskError::DeviceNotFound),
            Err(_) => Err(CancelTaskError::Overloaded),
        }
    }

    /// One cancel task.
    pub fn cancel_task(&self, caller: &Caller, id: TaskId) -> Result<CancelTask, QueryError> {
        let app = self.apps.resolve(caller)?;
        let shard = self
            .shards
            .get(usize::from(id.shard()))
            .ok_or(QueryError::TaskNotFound)?;
        let parts = {
            let st = shard.state.lock();
            st.find_task(app, id).and_then(|slot| st.task_parts(slot))
        };
        let parts = parts.ok_or(QueryError::TaskNotFound)?;
        Ok(self.complete_task(app, usize::from(id.shard()), parts)?)
    }

    /// A page of cancel tasks, oldest first. Tasks are few, so this filters
    /// the application's tasks rather than keeping more indexes.
    pub fn list_cancel_tasks(&self, caller: &Caller, q: &TaskQuery) -> Result<Page<CancelTask>, QueryError> {
        let app = self.apps.resolve(caller)?;
        let (from, to, offset) = window(q.from, q.to, q.page_no, q.page_size)?;
        let keep = |t: &CancelTask| {
            q.task_id.is_none_or(|id| id == t.id)
                && q.device_id.as_ref().is_none_or(|d| *d == t.device_id)
                && q.status.is_none_or(|s| s == t.status)
                && t.creation_time >= from
                && t.creation_time < to
        };
        let shards: Vec<usize> = match (&q.task_id, &q.device_id) {
            (Some(id), _) => vec![usize::from(id.shard())]
                .into_iter()
                .filter(|s| *s < self.shards.len())
                .collect(),
            (None, Some(d)) => vec![self.shard_of(d)],
            (None, None) => (0..self.shards.len()).collect(),
        };
        let mut all = Vec::new();
        for s in shards {
            let st = self.shards[s].state.lock();
            all.extend(st.tasks_of(app, &keep).into_iter().map(|(c, q, t)| ((c, s, q), t)));
        }
        all.sort_by_key(|a| a.0);
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(q.page_size as usize)
            .map(|((_, s, _), t)| self.complete_task(app, s, t))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            page_no: q.page_no,
            page_size: q.page_size,
            total_size: total,
        })
    }

    // ----- device events ------------------------------------------------------------------

    /// The device reported data or connected: it can hear now. Releases its
    /// cached commands (PSM devices stay reachable for the active window).
    pub fn device_awake(&self, id: &DeviceId) -> Result<Receipt<()>, DeviceEventError> {
        let (r, commit) = self.with_shard(self.shard_of(id), |st, now, fx| st.device_awake(id, now, fx));
        r.ok_or(DeviceEventError::UnknownDevice)?;
        Ok(Receipt { value: (), commit })
    }

    fn command_event(
        &self,
        id: CommandId,
        ev: impl FnOnce(&mut ShardState, u32, Timestamp, &mut Effects) -> DeviceEventOutcome,
    ) -> Result<Receipt<DeviceEventOutcome>, DeviceEventError> {
        let s = usize::from(id.shard());
        if s >= self.shards.len() {
            return Err(DeviceEventError::UnknownCommand);
        }
        let (r, commit) = self.with_shard(s, |st, now, fx| {
            st.find_command_any(id).map(|slot| ev(st, slot, now, fx))
        });
        if let Some(value) = r {
            return Ok(Receipt { value, commit });
        }
        // A late event for a command in the history is ignored like one for a
        // terminal command in memory. No wait for the archive's batch here (a
        // device channel must not block): in that moment it reads as unknown,
        // which the device cannot tell apart.
        let archived = self.history.as_ref().and_then(|h| h.command(id).ok().flatten());
        match archived {
            Some(c) => {
                self.shards[s].state.lock().count_late_event();
                Ok(Receipt {
                    value: DeviceEventOutcome::Ignored(c.status),
                    commit: Commit::done(),
                })
            }
            None => Err(DeviceEventError::UnknownCommand),
        }
    }

    /// The device acknowledged a command (SENT → DELIVERED).
    pub fn ack(&self, id: CommandId) -> Result<Receipt<DeviceEventOutcome>, DeviceEventError> {
        self.command_event(id, |st, slot, now, fx| st.ack(slot, now, fx))
    }

    /// The device reported a command's result (→ SUCCESSFUL or FAILED; a
    /// result while SENT implies the ACK first).
    pub fn result(
        &self,
        id: CommandId,
        outcome: CommandOutcome,
    ) -> Result<Receipt<DeviceEventOutcome>, DeviceEventError> {
        self.command_event(id, |st, slot, now, fx| st.result(slot, outcome, now, fx))
    }

    // ----- time -------------------------------------------------------------------------

    /// Fires every deadline due now, shard by shard; returns how many fired.
    /// A server calls it every few milliseconds; a simulation after moving its clock.
    pub fn tick(&self) -> usize {
        (0..self.shards.len())
            .map(|s| {
                // Archiving waits while a query holds the gate (it comes back at
                // the next sweep); the guard lasts until the hand-out is submitted.
                let gate = self.history.as_ref().and_then(|_| self.archive_gate.try_read());
                let may_archive = gate.is_some();
                let fired = self.with_shard(s, |st, now, fx| st.fire_due(now, fx, may_archive)).0;
                drop(gate);
                fired
            })
            .sum()
    }

    /// The earliest deadline over all shards (a lower bound: it may be a cancelled one).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.shards.iter().filter_map(|s| s.state.lock().next_deadline()).min()
    }

    /// Moves a virtual clock forward by `by`, stopping at every deadline on
    /// the way so that each fires at its own instant. Returns how many fired.
    /// The dispatcher must have been built with this clock.
    pub fn advance(&self, clock: &VirtualClock, by: Duration) -> usize {
        let target = clock.now().saturating_add(by);
        let mut fired = self.tick();
        while let Some(next) = self.next_deadline() {
            if next > target {
                break;
            }
            clock.advance_to(next);
            fired += self.tick();
        }
        clock.advance_to(target);
        fired + self.tick()
    }

    // ----- introspection ------------------------------------------------------------------

    /// Counters summed over the shards.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.shards.iter() {
            let st = s.state.lock().stats();
            total.created += st.created;
            total.transitions += st.transitions;
            total.retransmissions += st.retransmissions;
            total.late_events_ignored += st.late_events_ignored;
            total.swept += st.swept;
            total.archived += st.archived;
            total.live += st.live;
            total.devices += st.devices;
            total.timer_entries += st.timer_entries;
            for (t, n) in total.live_by_status.iter_mut().zip(st.live_by_status) {
                *t += n;
            }
        }
        total
    }

    /// How many devices hold how many live commands: `counts[i]` is the
    /// devices with more than `bounds[i-1]` and at most `bounds[i]` live
    /// commands (`bounds` ascending); the last entry counts those above every
    /// bound. Takes each shard's lock in turn for a scan of its devices: for
    /// metrics every few seconds, not for a hot path.
    pub fn device_depths(&self, bounds: &[u32]) -> Vec<u64> {
        let mut counts = vec![0u64; bounds.len() + 1];
        for s in self.shards.iter() {
            s.state.lock().live_depths(bounds, &mut counts);
        }
        counts
    }

    /// The PENDING commands of a device in the order they will be sent.
    pub fn queued_commands(&self, caller: &Caller, device: &DeviceId) -> Result<Vec<CommandId>, QueryError> {
        let app = self.apps.resolve(caller)?;
        let st = self.shards[self.shard_of(device)].state.lock();
        let slot = st.device_slot(app, device).ok_or(QueryError::DeviceNotFound)?;
        Ok(st
            .queued(slot)
            .into_iter()
            .filter_map(|c| st.snapshot(c).map(|c| c.id))
            .collect())
    }

    /// Checks every shard's internal invariants; for tests, fuzzing and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.shards.iter().try_for_each(|s| s.state.lock().check_invariants())
    }
}

/// Most runs of one [`Dispatcher::list_commands`] (the first, and one more
/// each time a shard moved commands to the history meanwhile).
pub const QUERY_ATTEMPTS: u32 = 4;

/// The participants of one merged query: every shard (or the one shard of a
/// device), then the history if there is one.
struct Participants<'a> {
    d: &'a Dispatcher,
    scope: HistoryScope<'a>,
    shard: Option<usize>,
    history: Option<&'a dyn History>,
    /// The first history read that failed; the query reports it.
    failed: Cell<Option<StoreError>>,
}

enum Participant<'a> {
    Shard(usize),
    History(&'a dyn History),
}

impl<'a> Participants<'a> {
    fn memory(&self) -> usize {
        if self.shard.is_some() { 1 } else { self.d.shards.len() }
    }

    fn at(&self, i: usize) -> Participant<'a> {
        match (self.history, i.checked_sub(self.memory())) {
            (Some(h), Some(_)) => Participant::History(h),
            _ => Participant::Shard(self.shard.unwrap_or(i)),
        }
    }

    fn read<T: Default>(&self, r: Result<T, StoreError>) -> T {
        r.unwrap_or_else(|e| {
            let first = self.failed.take().unwrap_or(e);
            self.failed.set(Some(first));
            T::default()
        })
    }
}

impl ShardIndex for Participants<'_> {
    fn shards(&self) -> usize {
        self.memory() + usize::from(self.history.is_some())
    }
    fn count(&self, i: usize, from: Timestamp, to: Timestamp) -> u64 {
        match self.at(i) {
            Participant::Shard(s) => self.d.shards[s].state.lock().count(self.scope, from, to),
            Participant::History(h) => self.read(h.count(self.scope, from, to)),
        }
    }
    fn bounds(&self, i: usize, from: Timestamp, to: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match self.at(i) {
            Participant::Shard(s) => self.d.shards[s].state.lock().bounds(self.scope, from, to),
            Participant::History(h) => self.read(h.bounds(self.scope, from, to)),
        }
    }
    fn tie_cursor(&self, i: usize, t: Timestamp, skip: u64) -> Option<Cursor> {
        match self.at(i) {
            Participant::Shard(s) => {
                let c = self.d.shards[s].state.lock().tie_cursor(self.scope, t, skip);
                c.map(|(t, q)| (t, u128::from(q)))
            }
            Participant::History(h) => self.read(h.tie(self.scope, t, skip)).map(|id| (t, id.to_u128())),
        }
    }
    fn fetch(&self, i: usize, cursor: Cursor, to: Timestamp, n: usize) -> Vec<(Cursor, Command)> {
        match self.at(i) {
            Participant::Shard(s) => {
                // Shard cursors are sequences, which fit in u64; a larger one is past them all.
                let seq = u64::try_from(cursor.1).unwrap_or(u64::MAX);
                let page = self.d.shards[s].state.lock().fetch(self.scope, (cursor.0, seq), to, n);
                page.into_iter().map(|((t, q), c)| ((t, u128::from(q)), c)).collect()
            }
            Participant::History(h) => {
                let from = (cursor.0, CommandId::from_u128(cursor.1));
                let page = self.read(h.fetch(self.scope, from, to, n));
                page.into_iter()
                    .map(|c| ((c.creation_time, c.id.to_u128()), c))
                    .collect()
            }
        }
    }
}
