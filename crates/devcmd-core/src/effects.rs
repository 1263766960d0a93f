//! What a shard operation must hand out once the shard lock is released.

use crate::command::Command;
use crate::id::DeviceId;
use crate::output::{CancelTaskRecord, Issue, Mutation, StatusChange};

/// Store mutations, sends and status changes recorded under a shard lock, in
/// the order they happened. Only what some sink will take is recorded.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    store: bool,
    events: bool,
    link: bool,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) issues: Vec<Issue>,
    pub(crate) changes: Vec<StatusChange>,
    /// Commands this operation took out of memory for the history.
    pub(crate) archived: usize,
}

impl Effects {
    pub(crate) fn new(store: bool, events: bool, link: bool) -> Self {
        Self {
            store,
            events,
            link,
            ..Self::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.mutations.is_empty() && self.issues.is_empty() && self.changes.is_empty()
    }

    pub(crate) fn wants_changes(&self) -> bool {
        self.events
    }

    /// A command was created: its first record and its first status.
    pub(crate) fn created(&mut self, command: impl FnOnce() -> Option<Command>) {
        if !self.events && !self.store {
            return;
        }
        let Some(c) = command() else { return };
        if self.events {
            self.changes.push(StatusChange {
                command_id: c.id,
                device_id: c.device_id.clone(),
                from: None,
                to: c.status,
                at: c.creation_time,
                callback_url: c.callback_url.clone(),
                result: None,
            });
        }
        if self.store {
            self.mutations.push(Mutation::CreateCommand(c));
        }
    }

    /// The last status change was the creation of an immediate command, which
    /// is SENT from the start: it reports no PENDING before it.
    pub(crate) fn mark_last_change_as_creation(&mut self) {
        if let Some(last) = self.changes.last_mut() {
            last.from = None;
        }
        if let Some(last) = self.mutations.pop() {
            self.mutations.push(match last {
                Mutation::PutCommand(c) => Mutation::CreateCommand(c),
                other => other,
            });
        }
    }

    pub(crate) fn change(&mut self, change: Option<StatusChange>) {
        if let Some(c) = change {
            self.changes.push(c);
        }
    }

    pub(crate) fn put_command(&mut self, command: impl FnOnce() -> Option<Command>) {
        if self.store
            && let Some(c) = command()
        {
            self.mutations.push(Mutation::PutCommand(c));
        }
    }

    pub(crate) fn put_task(&mut self, task: impl FnOnce() -> Option<CancelTaskRecord>) {
        if self.store
            && let Some(t) = task()
        {
            self.mutations.push(Mutation::PutCancelTask(t));
        }
    }

    /// A terminal command passed its retention and left memory: the store forgets it too.
    pub(crate) fn forget_command(&mut self, command: impl FnOnce() -> Option<Command>) {
        if self.store
            && let Some(c) = command()
        {
            self.mutations.push(Mutation::ForgetCommand {
                id: c.id,
                app_id: c.app_id,
                device_id: c.device_id,
                creation_time: c.creation_time,
            });
        }
    }

    /// A terminal command left memory for the history.
    pub(crate) fn archive_command(&mut self, command: impl FnOnce() -> Option<Command>) {
        self.archived += 1;
        if self.store
            && let Some(c) = command()
        {
            self.mutations.push(Mutation::ArchiveCommand(c));
        }
    }

    /// A finished cancel task passed its retention.
    pub(crate) fn forget_task(&mut self, id: crate::id::TaskId) {
        if self.store {
            self.mutations.push(Mutation::ForgetCancelTask(id));
        }
    }

    pub(crate) fn remove_device(&mut self, id: &DeviceId) {
        if self.store {
            self.mutations.push(Mutation::RemoveDevice(id.clone()));
        }
    }

    pub(crate) fn issue(&mut self, issue: Issue) {
        if self.link {
            self.issues.push(issue);
        }
    }
}
