//! What a simulation runs: the fleet, the applications' load, the devices'
//! behaviour.

use serde::Serialize;

/// A simulation's settings. Times are platform (virtual) time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// The seed: same seed, same report.
    pub seed: u64,
    /// Devices in the fleet.
    pub devices: u32,
    /// Length of the run in hours.
    pub hours: u32,
    /// Share of PSM devices (reachable only for the active window after each report).
    pub psm_share: f64,
    /// Share of DRX devices (always reachable); the rest are eDRX.
    pub drx_share: f64,
    /// A PSM device reports every this many minutes (±10 % jitter).
    pub report_every_min: u32,
    /// Longest eDRX paging delay in milliseconds (uniform from 0).
    pub edrx_paging_max_ms: u64,
    /// Commands the applications create per hour (a Poisson process).
    pub commands_per_hour: u64,
    /// Share of immediate commands (`expireTime = 0`).
    pub immediate_share: f64,
    /// `expireTime` of cached commands in seconds (`None`: the 48 h default).
    pub expire_s: Option<u32>,
    /// Share of commands the application cancels (PUT), at a random moment within an hour.
    pub cancel_share: f64,
    /// Cancel tasks per hour, each on a random device.
    pub cancel_tasks_per_hour: u64,
    /// Chance that a device misses one send (no ACK).
    pub ack_loss: f64,
    /// Chance that a device never reports a result after its ACK.
    pub result_loss: f64,
    /// Chance that a result is a failure.
    pub result_failure: f64,
    /// ACK latency range in milliseconds.
    pub ack_ms: (u64, u64),
    /// Result latency after the ACK, in milliseconds.
    pub result_ms: (u64, u64),
    /// Record live commands and queue depths every this many minutes.
    pub sample_every_min: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            devices: 10_000,
            hours: 48,
            psm_share: 0.7,
            drx_share: 0.2,
            report_every_min: 60,
            edrx_paging_max_ms: 20_480,
            commands_per_hour: 10_000,
            immediate_share: 0.1,
            expire_s: None,
            cancel_share: 0.02,
            cancel_tasks_per_hour: 10,
            ack_loss: 0.02,
            result_loss: 0.005,
            result_failure: 0.03,
            ack_ms: (100, 1_000),
            result_ms: (200, 5_000),
            sample_every_min: 60,
        }
    }
}

impl SimConfig {
    /// Checks the settings; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be within 0..=1, not {v}"))
            }
        };
        share("psm_share", self.psm_share)?;
        share("drx_share", self.drx_share)?;
        share("immediate_share", self.immediate_share)?;
        share("cancel_share", self.cancel_share)?;
        share("ack_loss", self.ack_loss)?;
        share("result_loss", self.result_loss)?;
        share("result_failure", self.result_failure)?;
        if self.psm_share + self.drx_share > 1.0 {
            return Err("psm_share + drx_share must be at most 1".into());
        }
        if self.devices == 0 || self.hours == 0 {
            return Err("devices and hours must be at least 1".into());
        }
        if self.report_every_min == 0 || self.sample_every_min == 0 {
            return Err("report_every_min and sample_every_min must be at least 1".into());
        }
        if self.ack_ms.0 > self.ack_ms.1 || self.result_ms.0 > self.result_ms.1 {
            return Err("latency ranges must be (low, high)".into());
        }
        Ok(())
    }
}
