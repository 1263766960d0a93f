//! Commands after memory: the stored history the core reads back.
//!
//! A terminal command stays in memory for [`crate::CoreConfig::history_grace`]
//! (so that the application polling it, and its callback, see it at memory
//! speed). Then, when the dispatcher has a [`History`]
//! ([`crate::DispatcherBuilder::history`]), the shard's sweep hands the
//! command to the store as [`crate::Mutation::ArchiveCommand`] and frees
//! its memory; the store keeps it, indexed by application and by device,
//! until [`crate::CoreConfig::retention`] ends, and deletes it itself
//! (`FjallStore::sweep_history`, [`MemoryStore::sweep_history`]). Without a
//! history terminal commands stay in memory for the whole retention.
//!
//! Queries combine both: a command is in exactly one of them once its
//! archive batch is durable, and the dispatcher waits for that batch
//! whenever a read could fall into the moment between (see
//! [`crate::Dispatcher::list_commands`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::clock::Timestamp;
use crate::command::Command;
use crate::error::StoreError;
use crate::id::{AppId, CommandId, DeviceId};
use crate::output::MemoryStore;

/// Which stored commands a history read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryScope<'a> {
    /// One application's commands.
    App(&'a AppId),
    /// One device's commands (a device belongs to one application, which
    /// the dispatcher checks before it asks).
    Device(&'a DeviceId),
}

/// Archived commands, ordered within a scope by `(creation_time, id)`.
///
/// Implemented by `devcmd-store` (durable, the server's) and by
/// [`MemoryStore`] (tests, pure-model runs). Reads may block on I/O: call
/// the dispatcher's queries off async workers when a history is attached.
pub trait History: Send + Sync + 'static {
    /// Number of commands in `scope` created in `[from, to)`.
    fn count(&self, scope: HistoryScope<'_>, from: Timestamp, to: Timestamp) -> Result<u64, StoreError>;

    /// Creation times of the first and last commands in `scope` created in `[from, to)`.
    fn bounds(
        &self,
        scope: HistoryScope<'_>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StoreError>;

    /// The id of the `skip`-th command (0-based) in `scope` created exactly at `t`.
    fn tie(&self, scope: HistoryScope<'_>, t: Timestamp, skip: u64) -> Result<Option<CommandId>, StoreError>;

    /// Up to `n` commands in `scope` at or after `(from, after_id)` in
    /// `(creation_time, id)` order and created before `to`, in that order.
    fn fetch(
        &self,
        scope: HistoryScope<'_>,
        from: (Timestamp, CommandId),
        to: Timestamp,
        n: usize,
    ) -> Result<Vec<Command>, StoreError>;

    /// One archived command.
    fn command(&self, id: CommandId) -> Result<Option<Command>, StoreError>;
}

/// The archived part of a [`MemoryStore`].
#[derive(Debug, Default, Clone)]
pub struct MemoryHistory {
    /// Archived commands by id.
    pub commands: BTreeMap<CommandId, Command>,
    by_app: BTreeSet<(AppId, Timestamp, CommandId)>,
    by_device: BTreeSet<(DeviceId, Timestamp, CommandId)>,
}

impl MemoryHistory {
    pub(crate) fn archive(&mut self, c: Command) {
        self.by_app.insert((c.app_id.clone(), c.creation_time, c.id));
        self.by_device.insert((c.device_id.clone(), c.creation_time, c.id));
        self.commands.insert(c.id, c);
    }

    fn remove(&mut self, id: CommandId) {
        if let Some(c) = self.commands.remove(&id) {
            self.by_app.remove(&(c.app_id, c.creation_time, id));
            self.by_device.remove(&(c.device_id, c.creation_time, id));
        }
    }

    /// Ids in `scope` from `(from, from_id)` inclusive to `to` exclusive, in order.
    fn range(
        &self,
        scope: HistoryScope<'_>,
        from: (Timestamp, CommandId),
        to: Timestamp,
    ) -> Box<dyn Iterator<Item = (Timestamp, CommandId)> + '_> {
        // Callers make sure `from.0 < to` (BTreeSet::range refuses a reversed range).
        match scope {
            HistoryScope::App(a) => Box::new(
                self.by_app
                    .range((
                        Bound::Included((a.clone(), from.0, from.1)),
                        Bound::Excluded((a.clone(), to, CommandId::from_u128(0))),
                    ))
                    .map(|(_, t, id)| (*t, *id)),
            ),
            HistoryScope::Device(d) => Box::new(
                self.by_device
                    .range((
                        Bound::Included((d.clone(), from.0, from.1)),
                        Bound::Excluded((d.clone(), to, CommandId::from_u128(0))),
                    ))
                    .map(|(_, t, id)| (*t, *id)),
            ),
        }
    }
}

impl MemoryStore {
    /// Deletes up to `max` archived commands that ended before `ended_before`
    /// and returns how many went.
    pub fn sweep_history(&self, ended_before: Timestamp, max: usize) -> usize {
        let mut st = self.state.lock();
        let due: Vec<CommandId> = st
            .history
            .commands
            .values()
            .filter(|c| c.terminal_time.is_some_and(|t| t < ended_before))
            .map(|c| c.id)
            .take(max)
            .collect();
        for id in &due {
            st.history.remove(*id);
        }
        due.len()
    }
}

impl History for MemoryStore {
    fn count(&self, scope: HistoryScope<'_>, from: Timestamp, to: Timestamp) -> Result<u64, StoreError> {
        if from >= to {
            return Ok(0);
        }
        let st = self.state.lock();
        Ok(st.history.range(scope, (from, CommandId::from_u128(0)), to).count() as u64)
    }

    fn bounds(
        &self,
        scope: HistoryScope<'_>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StoreError> {
        if from >= to {
            return Ok(None);
        }
        let st = self.state.lock();
        let mut r = st.history.range(scope, (from, CommandId::from_u128(0)), to);
        let first = r.next().map(|(t, _)| t);
        let last = r.last().map(|(t, _)| t).or(first);
        Ok(first.zip(last))
    }

    fn tie(&self, scope: HistoryScope<'_>, t: Timestamp, skip: u64) -> Result<Option<CommandId>, StoreError> {
        let after = Timestamp::from_millis(t.as_millis().saturating_add(1));
        if after <= t {
            return Ok(None);
        }
        let st = self.state.lock();
        let n = usize::try_from(skip).unwrap_or(usize::MAX);
        Ok(st
            .history
            .range(scope, (t, CommandId::from_u128(0)), after)
            .nth(n)
            .map(|(_, id)| id))
    }

    fn fetch(
        &self,
        scope: HistoryScope<'_>,
        from: (Timestamp, CommandId),
        to: Timestamp,
        n: usize,
    ) -> Result<Vec<Command>, StoreError> {
        if from.0 >= to {
            return Ok(Vec::new());
        }
        let st = self.state.lock();
        Ok(st
            .history
            .range(scope, from, to)
            .take(n)
            .filter_map(|(_, id)| st.history.commands.get(&id).cloned())
            .collect())
    }

    fn command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        Ok(self.state.lock().history.commands.get(&id).cloned())
    }
}
