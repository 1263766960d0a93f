//! # devcmd-core
//!
//! The dispatch core of devcmd: it queues, issues, retransmits, expires,
//! times out and cancels commands for millions of devices, with the
//! behaviour of the Huawei OceanConnect (`/iocm/app/...` v1.4.0) command
//! subsystem. It does no I/O and knows nothing of HTTP, JSON or files: time
//! comes from a [`Clock`], and everything that must leave the core goes to a
//! [`CommandStore`], a [`DeviceLink`] and an [`EventSink`] that the embedder
//! hands in.
//!
//! ## The command state machine
//! - `expireTime` omitted (48 h) or `> 0`: the command is cached, `PENDING`,
//!   in its device's FIFO queue. Cached commands leave one at a time: the
//!   next is sent when the previous is `DELIVERED` or ends. They are sent
//!   only while the device can hear: DRX and eDRX devices always, PSM devices
//!   for [`CoreConfig::psm_active_window`] after [`Dispatcher::device_awake`].
//! - `expireTime = 0`: immediate; `SENT` at once whatever the device's state.
//! - `SENT`: resent after `ack_timeout` (2 s), then 4 s, 8 s later, at most
//!   `maxRetransmit` times; no ACK within `command_timeout` (180 s) of the
//!   first send → `TIMEOUT`. ACK → `DELIVERED`; no result within
//!   `result_timeout` (180 s) → `TIMEOUT`; result → `SUCCESSFUL` / `FAILED`.
//! - `PENDING` past its expiry → `EXPIRED`, checked when its deadline fires,
//!   before it is sent and before every resend: an expired command is never
//!   sent. A `SENT` command whose expiry passes is not resent and ends
//!   `TIMEOUT` if its ACK never comes (it was already sent, so it is not
//!   `EXPIRED`). Immediate commands have no expiry.
//! - Cancel (one command, or a cancel task over a device) only from `PENDING`.
//!   Terminal statuses never change; late or duplicate device events are
//!   counted ([`Stats::late_events_ignored`]) and ignored.
//!
//! ## Choices where the platform is silent
//! - `issuedTimes` counts resends: 0 after the first send (as the platform's
//!   own responses show).
//! - A result that arrives while `SENT` is taken as ACK then result
//!   (`SENT → DELIVERED → SUCCESSFUL`), as the platform reports them.
//! - Removing a device cancels its `PENDING` commands and ends those in
//!   flight `TIMEOUT`.
//! - Naming one's own application in `?appId=` is accepted.
//! - Lists are oldest first; the window is `[from, to)`.
//! - A PSM device's active window is not stored: after a restart it counts
//!   as asleep until it next reports, so its cached commands wait for that
//!   report (nothing is lost; at worst they leave one report later).
//! - Terminal commands stay in memory for [`CoreConfig::history_grace`]
//!   (60 s), then, with a [`History`] attached, move to the store until
//!   [`CoreConfig::retention`] (72 h) ends; queries, cancels, cancel tasks
//!   and late device events see them as before. Lists are ordered by
//!   creation time; commands created in the same millisecond list those in
//!   memory first (the API's times have whole seconds, so no client can
//!   tell).
//!
//! ## Embedding
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use devcmd_core::*;
//!
//! // A virtual clock, an in-memory store (also the history terminal commands
//! // move to), the in-process device link and an event channel.
//! let clock = VirtualClock::new(Timestamp::from_millis(1_700_000_000_000));
//! let store = MemoryStore::new();
//! let (link, to_devices) = ChannelLink::bounded(1024);
//! let (events, changes) = ChannelEvents::bounded(1024);
//! let core = Dispatcher::builder(CoreConfig::default())
//!     .clock(Arc::new(clock.clone()))
//!     .store(store.clone())
//!     .history(store.clone())
//!     .link(Arc::new(link))
//!     .events(Arc::new(events))
//!     .build()?;
//!
//! // An application and one of its PSM devices.
//! let app = AppId::new("streetlights")?;
//! core.add_app(App { id: app.clone(), secret_hash: "<salted hash>".into(), quota: None, authorized_apps: vec![] })?
//!     .durable()?;
//! let caller = Caller::own(app);
//! let device = core.register_device(&caller, NewDevice::new("863703030000001"))?.durable()?;
//!
//! // A cached command waits while the device sleeps.
//! let cmd = core
//!     .create_command(&caller, NewCommand::new(device.id.clone(), "Light", "SET", r#"{"level":3}"#))?
//!     .durable()?; // 201 only once this returns: the command is in the store
//! assert_eq!(cmd.status, CommandStatus::Pending);
//!
//! // The device reports data: it can hear, the command goes out.
//! core.device_awake(&device.id)?.durable()?;
//! let sent = to_devices.try_recv().expect("the command was issued");
//! assert_eq!(sent.command_id, cmd.id);
//!
//! // The device acknowledges, then reports its result.
//! clock.advance(Duration::from_millis(300));
//! core.ack(sent.command_id)?.durable()?;
//! core.result(sent.command_id, CommandOutcome { success: true, detail: Some(r#"{"level":3}"#.into()) })?
//!     .durable()?;
//!
//! let done = core.command(&caller, cmd.id)?;
//! assert_eq!(done.status, CommandStatus::Successful);
//! assert_eq!(store.command(cmd.id).map(|c| c.status), Some(CommandStatus::Successful));
//! let seen: Vec<_> = changes.try_iter().map(|c| c.to).collect();
//! assert_eq!(seen, [CommandStatus::Pending, CommandStatus::Sent, CommandStatus::Delivered, CommandStatus::Successful]);
//!
//! // Past its grace period the finished command leaves memory for the
//! // history; it reads the same until its retention ends.
//! core.advance(&clock, Duration::from_secs(121));
//! assert_eq!(core.stats().archived, 1);
//! assert_eq!(core.command(&caller, cmd.id)?, done);
//! assert_eq!(core.list_commands(&caller, &CommandQuery::default())?.total_size, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cancel_task;
mod clock;
mod command;
mod config;
mod dispatcher;
mod effects;
mod error;
mod history;
mod id;
pub mod machine;
mod output;
mod query;
mod registry;
mod shard;
mod slab;
mod timer;

pub use cancel_task::{CancelTask, CancelTaskStatus};
pub use clock::{Clock, SystemClock, Timestamp, VirtualClock};
pub use command::{
    CALLBACK_URL_LEN_MAX, Command, CommandBody, CommandOutcome, CommandStatus, EXPIRE_TIME_DEFAULT_S,
    MAX_RETRANSMIT_DEFAULT, MAX_RETRANSMIT_MAX, METHOD_LEN_MAX, NewCommand, SERVICE_ID_LEN_MAX,
};
pub use config::CoreConfig;
pub use dispatcher::{Dispatcher, DispatcherBuilder, QUERY_ATTEMPTS, Receipt, RecoveredState, RestoreReport, Stats};
pub use error::{
    AccessError, CancelError, CancelTaskError, CreateError, DeviceEventError, InvalidInput, QueryError, RegistryError,
    StoreError,
};
pub use history::{History, HistoryScope, MemoryHistory};
pub use id::{APP_ID_LEN_MAX, AppId, CommandId, DEVICE_ID_LEN_MAX, DeviceId, TaskId};
pub use output::{
    CancelTaskRecord, ChannelEvents, ChannelLink, CommandStore, Commit, CommitSignal, DeviceLink, EventSink, Issue,
    LinkFull, MemoryStore, MemoryStoreState, Mutation, StatusChange,
};
pub use query::{CommandQuery, PAGE_SIZE_MAX, Page, TaskQuery};
pub use registry::{App, Caller, DeliveryProfile, Device, NODE_ID_LEN_MAX, NewDevice, Quota};
pub use shard::{DeviceEventOutcome, ShardStats};
