//! What the core hands out: store mutations, commands to issue, status changes.
//!
//! The core never does I/O. Under a shard lock it only changes state and
//! records what must happen; after the state lock is released it hands the
//! records, in transition order per shard, to three sinks the embedder gives
//! it: a [`CommandStore`], a [`DeviceLink`] and an [`EventSink`]. Each must be
//! bounded: a full store or event sink blocks (backpressure), a full device
//! link refuses the send, which the retransmission rules then cover.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::cancel_task::CancelTaskStatus;
use crate::clock::Timestamp;
use crate::command::{Command, CommandBody, CommandStatus};
use crate::error::StoreError;
use crate::id::{AppId, CommandId, DeviceId, TaskId};
use crate::registry::{App, Device};

/// The stored form of a cancel task: its commands by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTaskRecord {
    /// Its id.
    pub id: TaskId,
    /// The owning application.
    pub app_id: AppId,
    /// Its device.
    pub device_id: DeviceId,
    /// Its status.
    pub status: CancelTaskStatus,
    /// When it was created.
    pub creation_time: Timestamp,
    /// When it finished.
    pub finish_time: Option<Timestamp>,
    /// The commands it covers.
    pub command_ids: Vec<CommandId>,
}

/// One change to durable state. Records are whole (upserts), so applying the
/// same mutation twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// An application was added or changed.
    PutApp(App),
    /// An application was removed.
    RemoveApp(AppId),
    /// A device was registered or changed.
    PutDevice(Device),
    /// A device was removed.
    RemoveDevice(DeviceId),
    /// A command was created: its first record (a store indexes it by app and
    /// device here, once).
    CreateCommand(Command),
    /// A command changed (status, resend count): its whole record again.
    PutCommand(Command),
    /// A cancel task was created or changed status.
    PutCancelTask(CancelTaskRecord),
    /// A terminal command passed its retention: its record and index entries go.
    ForgetCommand {
        /// The command.
        id: CommandId,
        /// Its application (names its index entry).
        app_id: AppId,
        /// Its device (names its index entry).
        device_id: DeviceId,
        /// Its creation time (names its index entries).
        creation_time: Timestamp,
    },
    /// A terminal command left memory after its grace period: the store
    /// moves it from the live records to the history (indexed by application
    /// and device, kept until retention ends), where recovery does not load
    /// it. Sent only by a dispatcher that has a [`crate::History`].
    ArchiveCommand(Command),
    /// A finished cancel task passed its retention.
    ForgetCancelTask(TaskId),
    /// An entry of the callback outbox was recorded (a notification to push).
    /// Key and value are opaque here: the callback crate defines them, the
    /// store keeps them durably and hands them back after a restart.
    PutOutbox {
        /// The entry's key (its order is the order of replay).
        key: Vec<u8>,
        /// The entry.
        value: Vec<u8>,
    },
    /// An entry of the callback outbox was delivered and can go.
    RemoveOutbox {
        /// The entry's key.
        key: Vec<u8>,
    },
}

/// Durable storage of the core's state. Implemented by `devcmd-store`; an
/// in-memory version, [`MemoryStore`], lives here for tests.
pub trait CommandStore: Send + Sync + 'static {
    /// Accepts a batch, in order, and returns the handle that completes once
    /// the batch is durable. Must not wait for durability itself; may block
    /// briefly when its queue is full (backpressure).
    fn submit(&self, batch: Vec<Mutation>) -> Commit;

    /// Whether the store's queue is nearly full, so that a new submission may
    /// block. Callers that can refuse new work (the HTTP API answers
    /// 503/100501) should rather than wait. Default: never.
    fn is_backlogged(&self) -> bool {
        false
    }
}

/// Completion of a submitted batch: wait on it (blocking) or `.await` it.
#[derive(Debug)]
#[must_use = "a commit says when the change is durable"]
pub struct Commit(CommitState);

#[derive(Debug)]
enum CommitState {
    Done(Result<(), StoreError>),
    Waiting(Arc<CommitSignal>),
}

impl Commit {
    /// A commit that is already complete (nothing to store, or a store without sync).
    pub fn done() -> Self {
        Self(CommitState::Done(Ok(())))
    }

    /// A commit that already failed.
    pub fn failed(err: StoreError) -> Self {
        Self(CommitState::Done(Err(err)))
    }

    /// A commit completed later through `signal`.
    pub fn pending(signal: Arc<CommitSignal>) -> Self {
        Self(CommitState::Waiting(signal))
    }

    /// A second handle on the same completion.
    pub fn share(&self) -> Self {
        match &self.0 {
            CommitState::Done(r) => Self(CommitState::Done(r.clone())),
            CommitState::Waiting(signal) => Self(CommitState::Waiting(Arc::clone(signal))),
        }
    }

    /// Blocks until the batch is durable, or its write failed.
    pub fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            CommitState::Done(r) => r,
            CommitState::Waiting(signal) => signal.wait(),
        }
    }
}

impl Future for Commit {
    type Output = Result<(), StoreError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            CommitState::Done(r) => Poll::Ready(r.clone()),
            CommitState::Waiting(signal) => signal.poll(cx.waker()),
        }
    }
}

/// The shared cell through which a store completes a [`Commit`]. Many
/// commits may wait on one signal (a store completes a whole group at
/// once): blocked threads are unparked one by one rather than woken through
/// a shared condition variable, so they do not queue on its mutex.
#[derive(Debug, Default)]
pub struct CommitSignal {
    state: Mutex<SignalState>,
}

#[derive(Debug, Default)]
struct SignalState {
    result: Option<Result<(), StoreError>>,
    wakers: Vec<Waker>,
    threads: Vec<std::thread::Thread>,
}

impl CommitSignal {
    /// A new, incomplete signal.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Completes every commit waiting on this signal. Later calls change nothing.
    pub fn complete(&self, result: Result<(), StoreError>) {
        let (wakers, threads) = {
            let mut st = self.state.lock();
            if st.result.is_some() {
                return;
            }
            st.result = Some(result);
            (std::mem::take(&mut st.wakers), std::mem::take(&mut st.threads))
        };
        threads.iter().for_each(std::thread::Thread::unpark);
        wakers.into_iter().for_each(Waker::wake);
    }

    fn wait(&self) -> Result<(), StoreError> {
        loop {
            {
                let mut st = self.state.lock();
                if let Some(r) = &st.result {
                    return r.clone();
                }
                st.threads.push(std::thread::current());
            }
            // An unpark before this park makes it return at once; a spurious
            // return finds no result and parks again.
            std::thread::park();
        }
    }

    fn poll(&self, waker: &Waker) -> Poll<Result<(), StoreError>> {
        let mut st = self.state.lock();
        match &st.result {
            Some(r) => Poll::Ready(r.clone()),
            None => {
                if !st.wakers.iter().any(|w| w.will_wake(waker)) {
                    st.wakers.push(waker.clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A store that keeps everything in memory and completes at once: for tests
/// and for explicitly chosen pure-model runs. It keeps the latest record of
/// everything ever put, so tests can compare it with the dispatcher.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub(crate) state: Mutex<MemoryStoreState>,
}

/// The contents of a [`MemoryStore`].
#[derive(Debug, Default, Clone)]
pub struct MemoryStoreState {
    /// Applications by id.
    pub apps: std::collections::HashMap<AppId, App>,
    /// Devices by id.
    pub devices: std::collections::HashMap<DeviceId, Device>,
    /// Commands by id.
    pub commands: std::collections::HashMap<CommandId, Command>,
    /// Cancel tasks by id.
    pub tasks: std::collections::HashMap<TaskId, CancelTaskRecord>,
    /// Archived commands ([`Mutation::ArchiveCommand`]).
    pub history: crate::history::MemoryHistory,
    /// Callback outbox entries by key.
    pub outbox: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    /// Number of batches submitted.
    pub batches: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A copy of everything stored.
    pub fn snapshot(&self) -> MemoryStoreState {
        self.state.lock().clone()
    }

    /// Everything stored, in the form [`crate::Dispatcher::restore`] takes.
    pub fn recovered_state(&self) -> crate::RecoveredState {
        let st = self.state.lock();
        crate::RecoveredState {
            apps: st.apps.values().cloned().collect(),
            devices: st.devices.values().cloned().collect(),
            commands: st.commands.values().cloned().collect(),
            tasks: st.tasks.values().cloned().collect(),
        }
    }

    /// The stored record of one command.
    pub fn command(&self, id: CommandId) -> Option<Command> {
        self.state.lock().commands.get(&id).cloned()
    }
}

impl CommandStore for MemoryStore {
    fn submit(&self, batch: Vec<Mutation>) -> Commit {
        let mut st = self.state.lock();
        st.batches += 1;
        for m in batch {
            match m {
                Mutation::PutApp(a) => {
                    st.apps.insert(a.id.clone(), a);
                }
                Mutation::RemoveApp(id) => {
                    st.apps.remove(&id);
                }
                Mutation::PutDevice(d) => {
                    st.devices.insert(d.id.clone(), d);
                }
                Mutation::RemoveDevice(id) => {
                    st.devices.remove(&id);
                }
                Mutation::CreateCommand(c) | Mutation::PutCommand(c) => {
                    st.commands.insert(c.id, c);
                }
                Mutation::PutCancelTask(t) => {
                    st.tasks.insert(t.id, t);
                }
                Mutation::ForgetCommand { id, .. } => {
                    st.commands.remove(&id);
                }
                Mutation::ArchiveCommand(c) => {
                    st.commands.remove(&c.id);
                    st.history.archive(c);
                }
                Mutation::ForgetCancelTask(id) => {
                    st.tasks.remove(&id);
                }
                Mutation::PutOutbox { key, value } => {
                    st.outbox.insert(key, value);
                }
                Mutation::RemoveOutbox { key } => {
                    st.outbox.remove(&key);
                }
            }
        }
        Commit::done()
    }
}

/// A command the platform sends (or resends) to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The command.
    pub command_id: CommandId,
    /// The device to send it to.
    pub device_id: DeviceId,
    /// Its service id, method and parameters.
    pub body: CommandBody,
    /// 0 for the first send, then 1, 2, … for resends.
    pub attempt: u8,
}

/// The device link refused a send because its queue is full. The command
/// stays SENT; its resend or timeout follows the usual rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device link is full")]
pub struct LinkFull;

/// The southbound side: how commands reach devices. Transports implement it;
/// devices answer through [`crate::Dispatcher::device_awake`],
/// [`crate::Dispatcher::ack`] and [`crate::Dispatcher::result`].
pub trait DeviceLink: Send + Sync + 'static {
    /// Hands a command to the transport. Must not block.
    fn issue(&self, issue: Issue) -> Result<(), LinkFull>;
}

/// The in-process transport: issued commands arrive on a bounded channel.
#[derive(Debug, Clone)]
pub struct ChannelLink(Sender<Issue>);

impl ChannelLink {
    /// A link and the receiving end of its channel, holding at most `capacity` sends.
    pub fn bounded(capacity: usize) -> (Self, Receiver<Issue>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (Self(tx), rx)
    }
}

impl DeviceLink for ChannelLink {
    fn issue(&self, issue: Issue) -> Result<(), LinkFull> {
        match self.0.try_send(issue) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(LinkFull),
        }
    }
}

/// One status change of one command, for callbacks, metrics and watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The command.
    pub command_id: CommandId,
    /// Its device.
    pub device_id: DeviceId,
    /// The status before; `None` when the command was just created.
    pub from: Option<CommandStatus>,
    /// The status after.
    pub to: CommandStatus,
    /// When it changed.
    pub at: Timestamp,
    /// The command's callback address, if any.
    pub callback_url: Option<Arc<str>>,
    /// The device's result (raw JSON text), for SUCCESSFUL and FAILED.
    pub result: Option<Arc<str>>,
}

/// Receives every status change, in transition order per device.
///
/// `publish` runs while the shard's output lock is held (that is what keeps
/// the order), so whatever drains a blocking sink must not wait on the same
/// dispatcher while the sink is full: drain it on a thread of its own and
/// hand work on (callbacks, metrics) from there.
pub trait EventSink: Send + Sync + 'static {
    /// Takes a batch of changes. May block when full (backpressure); must not drop any.
    fn publish(&self, changes: &[StatusChange]);

    /// Records this sink needs stored together with `changes` (a callback
    /// outbox): they are appended to the same store batch as the changes'
    /// own records, so they are durable exactly when the changes are. Called
    /// just before the batch is submitted, under the same output lock as
    /// [`EventSink::publish_committed`]. Default: none.
    fn records(&self, changes: &[StatusChange], out: &mut Vec<Mutation>) {
        let _ = (changes, out);
    }

    /// Takes a batch of changes with the commit of the store batch holding
    /// them (and the [`EventSink::records`] made for them). A sink that tells
    /// anyone outside must wait for `commit` first. Default: [`EventSink::publish`].
    fn publish_committed(&self, changes: &[StatusChange], commit: Commit) {
        drop(commit);
        self.publish(changes);
    }
}

/// An event sink that sends every change into a bounded channel, blocking when it is full.
#[derive(Debug, Clone)]
pub struct ChannelEvents(Sender<StatusChange>);

impl ChannelEvents {
    /// A sink and the receiving end of its channel.
    pub fn bounded(capacity: usize) -> (Self, Receiver<StatusChange>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (Self(tx), rx)
    }
}

impl EventSink for ChannelEvents {
    fn publish(&self, changes: &[StatusChange]) {
        for c in changes {
            // A receiver that has gone away wants no more events; nothing to keep them for.
            if self.0.send(c.clone()).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_signal_completes_blocking_waiters_once() {
        let signal = CommitSignal::new();
        let commit = Commit::pending(signal.clone());
        let t = std::thread::spawn(move || commit.wait());
        signal.complete(Err(StoreError::Poisoned));
        signal.complete(Ok(()));
        assert_eq!(t.join().unwrap(), Err(StoreError::Poisoned));
        assert_eq!(Commit::done().wait(), Ok(()));
    }

    #[test]
    fn one_signal_releases_every_thread_waiting_on_it() {
        let signal = CommitSignal::new();
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let commit = Commit::pending(signal.clone());
                std::thread::spawn(move || commit.wait())
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        signal.complete(Ok(()));
        for w in waiters {
            assert_eq!(w.join().unwrap(), Ok(()));
        }
        // A commit taken after completion returns at once.
        assert_eq!(Commit::pending(signal).wait(), Ok(()));
    }

    #[test]
    fn full_link_refuses() {
        let (link, rx) = ChannelLink::bounded(1);
        let issue = Issue {
            command_id: CommandId::compose(0, 0, 1),
            device_id: DeviceId::new("d").unwrap(),
            body: crate::command::CommandBody::new("s", "m", "{}").unwrap(),
            attempt: 0,
        };
        assert_eq!(link.issue(issue.clone()), Ok(()));
        assert_eq!(link.issue(issue.clone()), Err(LinkFull));
        assert_eq!(rx.recv().unwrap(), issue);
    }
}
