//! The core's settings, with the platform's defaults.

use std::time::Duration;

use crate::error::InvalidInput;

/// Settings of a [`crate::Dispatcher`]. `Default` gives the platform's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Number of shards; a power of two in 1..=4096. Fixed for the life of a
    /// store: command ids record their shard.
    pub shard_count: u16,
    /// First wait for an ACK before a resend; doubles after each resend.
    pub ack_timeout: Duration,
    /// From the first send: no ACK by then ends the command TIMEOUT.
    pub command_timeout: Duration,
    /// From delivery: no result by then ends the command TIMEOUT.
    pub result_timeout: Duration,
    /// How long a PSM device stays reachable after it reports data or connects.
    pub psm_active_window: Duration,
    /// How long terminal commands and finished cancel tasks stay queryable.
    pub retention: Duration,
    /// How long a terminal command stays in memory before it moves to the
    /// stored history, when the dispatcher has one ([`crate::History`]);
    /// without one, terminal commands stay in memory for all of `retention`.
    pub history_grace: Duration,
    /// How often each shard sweeps out what passed its grace or retention.
    pub sweep_interval: Duration,
    /// Live (non-terminal) commands one device may have.
    pub device_live_max: u32,
    /// Live commands over the whole dispatcher; each shard holds an equal part.
    pub live_max: u64,
    /// Largest raw `paras` text, in bytes.
    pub paras_len_max: usize,
    /// Cancel tasks waiting to run, per shard.
    pub waiting_tasks_per_shard_max: u32,
    /// Seed of the id generator (commands, tasks, devices); `None` takes one from the OS.
    pub id_seed: Option<u64>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            shard_count: 64,
            ack_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(180),
            result_timeout: Duration::from_secs(180),
            psm_active_window: Duration::from_secs(30),
            retention: Duration::from_secs(72 * 3600),
            history_grace: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(60),
            device_live_max: 1000,
            live_max: 50_000_000,
            paras_len_max: 16 * 1024,
            waiting_tasks_per_shard_max: 10_000,
            id_seed: None,
        }
    }
}

impl CoreConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !self.shard_count.is_power_of_two() || self.shard_count > 4096 {
            return Err(InvalidInput::new("shard_count", "must be a power of two in 1..=4096"));
        }
        if self.ack_timeout.is_zero() || self.command_timeout.is_zero() || self.result_timeout.is_zero() {
            return Err(InvalidInput::new("timeouts", "must be greater than zero"));
        }
        if self.sweep_interval.is_zero() {
            return Err(InvalidInput::new("sweep_interval", "must be greater than zero"));
        }
        if self.device_live_max == 0 || self.live_max == 0 {
            return Err(InvalidInput::new("live bounds", "must be greater than zero"));
        }
        Ok(())
    }
}
