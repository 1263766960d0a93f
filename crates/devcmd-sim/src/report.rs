//! What a simulation reports: a table for people, JSON for tools. Nothing in
//! it depends on wall-clock time, so one seed gives one report, byte for byte.

use std::fmt::Write;

use serde::Serialize;

use crate::SimConfig;

/// Commands by how they ended (or where they are at the end of the run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Ended SUCCESSFUL.
    pub successful: u64,
    /// Ended FAILED.
    pub failed: u64,
    /// Ended TIMEOUT.
    pub timeout: u64,
    /// Ended EXPIRED.
    pub expired: u64,
    /// Ended CANCELED.
    pub canceled: u64,
    /// Still PENDING at the end.
    pub pending: u64,
    /// Still SENT at the end.
    pub sent: u64,
    /// Still DELIVERED at the end.
    pub delivered: u64,
}

/// Percentiles of a latency, in milliseconds of platform time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: u64,
    /// 90th percentile.
    pub p90_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Largest.
    pub max_ms: u64,
}

impl Latency {
    /// Percentiles of the samples (sorted here).
    pub fn of(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            u64::from(samples[i.min(samples.len() - 1)])
        };
        Self {
            count: samples.len() as u64,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: samples.last().map_or(0, |&m| u64::from(m)),
        }
    }
}

/// The platform at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Minutes since the start.
    pub minute: u64,
    /// Live commands: PENDING, SENT, DELIVERED.
    pub live: [u64; 3],
    /// Devices by live commands: 0, 1, 2–5, 6–10, 11–50, 51–100, 101–1000, more.
    pub depth: Vec<u64>,
}

/// A simulation's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The settings it ran with.
    pub config: SimConfig,
    /// Devices by profile: PSM, DRX, eDRX.
    pub devices_by_profile: [u64; 3],
    /// Commands created.
    pub created: u64,
    /// Of them, immediate.
    pub immediate: u64,
    /// Cancels the applications asked for (PUT), and how many succeeded.
    pub cancels_asked: u64,
    /// Cancels that succeeded (the command was still PENDING).
    pub cancels_done: u64,
    /// Cancel tasks run.
    pub cancel_tasks: u64,
    /// Commands refused because a device's queue was full.
    pub refused_queue_full: u64,
    /// Device data reports.
    pub reports: u64,
    /// Where commands ended.
    pub outcomes: Outcomes,
    /// Created → DELIVERED.
    pub delivery_latency: Latency,
    /// Created → SUCCESSFUL or FAILED.
    pub result_latency: Latency,
    /// Resends.
    pub retransmissions: u64,
    /// Device events for commands that had moved on.
    pub late_events_ignored: u64,
    /// Live commands and queue depths over time.
    pub samples: Vec<Sample>,
}

impl Report {
    /// The report as JSON (one line).
    pub fn to_json(&self) -> String {
        // Plain numbers and strings only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report as a table.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let c = &self.config;
        let o = &self.outcomes;
        let pct = |n: u64| {
            if self.created == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.created as f64
            }
        };
        // Writing into a String cannot fail.
        let _ = writeln!(
            t,
            "devcmd sim: seed {}, {} devices (PSM {}, DRX {}, eDRX {}), {} h of platform time",
            c.seed,
            c.devices,
            self.devices_by_profile[0],
            self.devices_by_profile[1],
            self.devices_by_profile[2],
            c.hours
        );
        let _ = writeln!(
            t,
            "commands: {} created ({} immediate), {} queue-full refusals, {} cancels asked ({} done), {} cancel tasks, {} reports",
            self.created,
            self.immediate,
            self.refused_queue_full,
            self.cancels_asked,
            self.cancels_done,
            self.cancel_tasks,
            self.reports
        );
        let _ = writeln!(t, "\n{:<12} {:>12} {:>8}", "status", "commands", "%");
        for (name, n) in [
            ("SUCCESSFUL", o.successful),
            ("FAILED", o.failed),
            ("TIMEOUT", o.timeout),
            ("EXPIRED", o.expired),
            ("CANCELED", o.canceled),
            ("PENDING", o.pending),
            ("SENT", o.sent),
            ("DELIVERED", o.delivered),
        ] {
            let _ = writeln!(t, "{name:<12} {n:>12} {:>7.2}%", pct(n));
        }
        let _ = writeln!(
            t,
            "\n{:<22} {:>10} {:>10} {:>10} {:>10} {:>12}",
            "latency (ms)", "count", "p50", "p90", "p99", "max"
        );
        for (name, l) in [
            ("created → DELIVERED", &self.delivery_latency),
            ("created → result", &self.result_latency),
        ] {
            let _ = writeln!(
                t,
                "{name:<22} {:>10} {:>10} {:>10} {:>10} {:>12}",
                l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        }
        let _ = writeln!(
            t,
            "\nretransmissions {}, late device events ignored {}",
            self.retransmissions, self.late_events_ignored
        );
        let _ = writeln!(
            t,
            "\n{:>8} {:>10} {:>8} {:>10}  devices by live commands (0,1,2-5,6-10,11-50,51-100,101-1000,more)",
            "minute", "PENDING", "SENT", "DELIVERED"
        );
        for s in &self.samples {
            let depth: Vec<String> = s.depth.iter().map(u64::to_string).collect();
            let _ = writeln!(
                t,
                "{:>8} {:>10} {:>8} {:>10}  {}",
                s.minute,
                s.live[0],
                s.live[1],
                s.live[2],
                depth.join(" ")
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let l = Latency::of((1..=100).collect());
        assert_eq!(
            (l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (100, 51, 90, 99, 100)
        );
        assert_eq!(Latency::of(vec![]), Latency::default());
    }
}
