//! Typed errors, one enum per family of operations.
//!
//! The HTTP layer maps each variant to the platform's error code in one
//! place; the comments name the code each variant is meant for.

use thiserror::Error;

use crate::command::{CommandStatus, NewCommand};

/// A field of a request that breaks its documented limits (platform 100022).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    /// The field, by its API name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl InvalidInput {
    /// A new invalid-input error.
    pub const fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}

/// Refusals about who may act on whose devices.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The application named in `?appId=` does not exist (platform 100203).
    #[error("the application is not existed")]
    AppNotExisted,
    /// The application named in `?appId=` has not authorised the caller (platform 100217).
    #[error("the application hasn't been authorized")]
    AppNotAuthorized,
}

/// Why a command could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A field is out of its limits (100022).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The caller may not act for the named application.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such device, or not one of the acting application's devices (100418).
    #[error("the device does not exist")]
    DeviceNotFound,
    /// The device already has the maximum number of live commands (project code
    /// 100223, "Command counts has reached the upLimit."). The request is handed back.
    #[error("the device already has {limit} live commands")]
    DeviceQueueFull {
        /// The per-device bound that was reached.
        limit: u32,
        /// The refused request, returned untouched.
        request: Box<NewCommand>,
    },
    /// The live-command bound of the platform is reached (503 / 100501). The request is handed back.
    #[error("the platform is overloaded")]
    Overloaded {
        /// The refused request, returned untouched.
        request: Box<NewCommand>,
    },
}

/// Why a single command could not be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CancelError {
    /// The caller may not act for the named application.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such command for this application (project code 100434).
    #[error("the command does not exist")]
    CommandNotFound,
    /// Only PENDING commands can be cancelled (project code 100435).
    #[error("the command is {status} and cannot be cancelled")]
    NotCancellable {
        /// The command's status when the cancel arrived.
        status: CommandStatus,
    },
    /// Reading the history failed (the command was not in memory).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a cancel task could not be created.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CancelTaskError {
    /// The caller may not act for the named application.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such device for this application (100418).
    #[error("the device does not exist")]
    DeviceNotFound,
    /// Too many cancel tasks are waiting in the shard (503 / 100501).
    #[error("the platform is overloaded")]
    Overloaded,
}

/// Why a query could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter is out of its limits (100022).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The caller may not act for the named application.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The device filter names no device of this application (100418).
    #[error("the device does not exist")]
    DeviceNotFound,
    /// No such command for this application (project code 100434).
    #[error("the command does not exist")]
    CommandNotFound,
    /// No such cancel task for this application (project code 100436).
    #[error("the cancel task does not exist")]
    TaskNotFound,
    /// Reading the history failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a registry change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A field is out of its limits (100022).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The application already exists.
    #[error("the application already exists")]
    AppExists,
    /// No such application (100203).
    #[error("the application is not existed")]
    AppNotExisted,
    /// The device id is taken.
    #[error("the device already exists")]
    DeviceExists,
    /// No such device, or not one of the acting application's devices (100418).
    #[error("the device does not exist")]
    DeviceNotFound,
    /// The caller may not act for the named application.
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Why an event from a device could not be applied. Late or duplicate events
/// for commands that already moved on are not errors: they are counted and
/// reported as [`crate::DeviceEventOutcome::Ignored`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeviceEventError {
    /// The device is not registered.
    #[error("unknown device")]
    UnknownDevice,
    /// The command is not known (never existed, or left memory).
    #[error("unknown command")]
    UnknownCommand,
}

/// A failure of the command store.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A write or sync failed; nothing in the batch is durable.
    #[error("store write failed: {0}")]
    Io(String),
    /// An earlier sync failed, so the store accepts nothing more.
    #[error("store is poisoned by an earlier failed sync")]
    Poisoned,
    /// The store has shut down.
    #[error("store is closed")]
    Closed,
}
