//! Cancel tasks: cancel every PENDING command of one device, asynchronously.
//!
//! A task is created `WAITTING` (the platform's spelling) listing the commands
//! that are PENDING at that moment. It runs at the shard's next tick: it
//! becomes `RUNNING`, cancels every command of the device that is PENDING at
//! that moment (those listed and any created since, which join the list), and
//! ends `SUCCESS` when every listed command ended CANCELED, `PART_SUCCESS`
//! when some were issued in between, `FAILED` when none could be cancelled.
//! A task over no commands at all ends `SUCCESS` with `totalCount` 0: nothing
//! failed.

use std::fmt;
use std::str::FromStr;

use crate::clock::Timestamp;
use crate::command::Command;
use crate::error::InvalidInput;
use crate::id::{AppId, DeviceId, TaskId};

/// A cancel task's status, spelled on the wire as the platform does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelTaskStatus {
    /// Created, not yet run.
    Waitting,
    /// Running.
    Running,
    /// Every listed command was cancelled.
    Success,
    /// Some listed commands were cancelled.
    PartSuccess,
    /// No listed command could be cancelled.
    Failed,
}

impl CancelTaskStatus {
    /// Every status.
    pub const ALL: [CancelTaskStatus; 5] = [
        Self::Waitting,
        Self::Running,
        Self::Success,
        Self::PartSuccess,
        Self::Failed,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waitting => "WAITTING",
            Self::Running => "RUNNING",
            Self::Success => "SUCCESS",
            Self::PartSuccess => "PART_SUCCESS",
            Self::Failed => "FAILED",
        }
    }

    /// Whether the task has finished.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::PartSuccess | Self::Failed)
    }
}

impl fmt::Display for CancelTaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CancelTaskStatus {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(InvalidInput::new("status", "not a cancel task status"))
    }
}

/// A complete picture of one cancel task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTask {
    /// Its id.
    pub id: TaskId,
    /// The owning application.
    pub app_id: AppId,
    /// The device whose pending commands it cancels.
    pub device_id: DeviceId,
    /// Its status.
    pub status: CancelTaskStatus,
    /// When it was created.
    pub creation_time: Timestamp,
    /// When it finished.
    pub finish_time: Option<Timestamp>,
    /// The commands it cancels (`totalCount` is their number), as they are now.
    pub commands: Vec<Command>,
}

impl CancelTask {
    /// `totalCount`: the number of commands the task covers.
    pub fn total_count(&self) -> usize {
        self.commands.len()
    }
}
