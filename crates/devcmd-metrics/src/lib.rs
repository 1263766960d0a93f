//! # devcmd-metrics
//!
//! Metric names in one module ([`names`]), and what fills them, through the
//! [`metrics`] facade: with no recorder installed everything here is a no-op,
//! so an embedder chooses. The server installs the Prometheus recorder
//! ([`install_prometheus`]) and renders it on `GET /metrics`.
//!
//! - [`MetricsSink`] is an event sink that counts creations and transitions
//!   (combine it with the callback outbox through [`Fanout`]).
//! - [`sample_core`] reads the dispatcher's counters and gauges (live
//!   commands by status, device queue depths, ...) when a scrape asks.
//! - [`AppLabels`] caps the number of distinct application labels.

pub mod names;

pub use metrics_exporter_prometheus::PrometheusHandle;

use std::collections::HashMap;
use std::sync::Arc;

use devcmd_core::{AppId, CommandStatus, Commit, Dispatcher, EventSink, Mutation, StatusChange};
use metrics::{SharedString, counter, gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use parking_lot::RwLock;

/// Upper bounds of the device queue depth buckets.
pub const DEPTH_BOUNDS: [u32; 8] = [0, 1, 2, 5, 10, 50, 100, 1000];

/// Installs the Prometheus recorder as the global one (once per process),
/// with histogram buckets fitted to each histogram, and describes every metric.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[0.000_1, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::STORE_BATCH_MUTATIONS.into()),
            &[1.0, 2.0, 8.0, 32.0, 128.0, 512.0, 2048.0, 4096.0],
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Describes every metric to the installed recorder (help texts).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::COMMANDS_CREATED, "Commands created.");
    describe_counter!(names::TRANSITIONS, "Command status changes by from and to status.");
    describe_counter!(names::COMMANDS_TERMINAL, "Commands that reached a terminal status.");
    describe_gauge!(names::LIVE_COMMANDS, "Live commands by status.");
    describe_gauge!(names::DEVICES, "Registered devices.");
    describe_gauge!(
        names::DEVICE_QUEUE_DEPTH,
        "Devices by number of live commands (bucket upper bound le)."
    );
    describe_counter!(names::RETRANSMISSIONS, "Command resends.");
    describe_counter!(names::LATE_EVENTS_IGNORED, "Late device events ignored.");
    describe_gauge!(names::TIMER_ENTRIES, "Deadlines in the timer heaps.");
    describe_counter!(
        names::COMMANDS_LEFT_MEMORY,
        "Terminal commands that left memory, to the history or gone."
    );
    describe_counter!(
        names::HISTORY_DELETED,
        "Commands deleted from the history past retention."
    );
    describe_histogram!(
        names::TIMER_LAG_SECONDS,
        "Lateness of the earliest due deadline at a tick."
    );
    describe_counter!(names::API_CALLS, "API calls by route, method, status and app.");
    describe_histogram!(names::API_LATENCY_SECONDS, "API call latency by route and method.");
    describe_counter!(names::API_THROTTLED, "API calls refused over quota, by app.");
    describe_histogram!(
        names::STORE_COMMIT_SECONDS,
        "Store batch latency, submission to synced."
    );
    describe_histogram!(names::STORE_BATCH_MUTATIONS, "Mutations per synced store batch.");
    describe_gauge!(names::RECOVERY_SECONDS, "Recovery time at the last start.");
    describe_counter!(names::CALLBACK_PUSHES, "Callback pushes by outcome.");
    describe_counter!(names::CALLBACK_SUSPENSIONS, "Callback address suspensions.");
    describe_gauge!(names::CALLBACK_SUSPENDED_ADDRESSES, "Callback addresses suspended now.");
    describe_gauge!(names::CALLBACK_OUTBOX_DEPTH, "Callback notifications waiting.");
    describe_counter!(names::MQTT_MESSAGES, "MQTT device channel messages by kind.");
    describe_counter!(names::MQTT_CONNECTS, "MQTT broker connections made.");
    describe_counter!(names::MQTT_DISCONNECTS, "MQTT broker connections lost.");
}

/// Counts creations, transitions and terminal outcomes from the core's events.
#[derive(Debug, Default, Clone, Copy)]
pub struct MetricsSink;

impl EventSink for MetricsSink {
    fn publish(&self, changes: &[StatusChange]) {
        for c in changes {
            match c.from {
                None => counter!(names::COMMANDS_CREATED).increment(1),
                Some(from) => {
                    counter!(names::TRANSITIONS, "from" => from.as_str(), "to" => c.to.as_str()).increment(1);
                }
            }
            if c.to.is_terminal() {
                counter!(names::COMMANDS_TERMINAL, "status" => c.to.as_str()).increment(1);
            }
        }
    }
}

/// Several event sinks as one: records from all, every batch to all, in the
/// order given.
pub struct Fanout(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn publish(&self, changes: &[StatusChange]) {
        self.0.iter().for_each(|s| s.publish(changes));
    }

    fn records(&self, changes: &[StatusChange], out: &mut Vec<Mutation>) {
        self.0.iter().for_each(|s| s.records(changes, out));
    }

    fn publish_committed(&self, changes: &[StatusChange], commit: Commit) {
        self.0.iter().for_each(|s| s.publish_committed(changes, commit.share()));
    }
}

/// Sets the core's gauges and counters from its current state (call it when
/// a scrape asks). Scans devices for the queue depth buckets: a few
/// milliseconds per million devices.
pub fn sample_core(core: &Dispatcher) {
    let s = core.stats();
    for (status, n) in [CommandStatus::Pending, CommandStatus::Sent, CommandStatus::Delivered]
        .into_iter()
        .zip(s.live_by_status)
    {
        gauge!(names::LIVE_COMMANDS, "status" => status.as_str()).set(n as f64);
    }
    gauge!(names::DEVICES).set(s.devices as f64);
    gauge!(names::TIMER_ENTRIES).set(s.timer_entries as f64);
    counter!(names::RETRANSMISSIONS).absolute(s.retransmissions);
    counter!(names::LATE_EVENTS_IGNORED).absolute(s.late_events_ignored);
    counter!(names::COMMANDS_LEFT_MEMORY, "to" => "history").absolute(s.archived);
    counter!(names::COMMANDS_LEFT_MEMORY, "to" => "gone").absolute(s.swept.saturating_sub(s.archived));
    let depths = core.device_depths(&DEPTH_BOUNDS);
    for (i, n) in depths.iter().enumerate() {
        let le: SharedString = match DEPTH_BOUNDS.get(i) {
            Some(b) => b.to_string().into(),
            None => "+Inf".into(),
        };
        gauge!(names::DEVICE_QUEUE_DEPTH, "le" => le).set(*n as f64);
    }
}

/// Application labels, at most `cap` distinct ones; later applications share
/// the label `other`.
#[derive(Debug)]
pub struct AppLabels {
    cap: usize,
    known: RwLock<HashMap<AppId, SharedString>>,
}

impl AppLabels {
    /// At most `cap` distinct application labels.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// The label for `app`.
    pub fn label(&self, app: &AppId) -> SharedString {
        if let Some(l) = self.known.read().get(app) {
            return l.clone();
        }
        let mut known = self.known.write();
        if let Some(l) = known.get(app) {
            return l.clone();
        }
        if known.len() >= self.cap {
            return SharedString::const_str("other");
        }
        let l: SharedString = app.as_str().to_owned().into();
        known.insert(app.clone(), l.clone());
        l
    }
}

impl Default for AppLabels {
    /// 100 application labels.
    fn default() -> Self {
        Self::new(100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_labels_are_capped() {
        let labels = AppLabels::new(2);
        let (a, b, c) = (
            AppId::new("a").unwrap(),
            AppId::new("b").unwrap(),
            AppId::new("c").unwrap(),
        );
        assert_eq!(&*labels.label(&a), "a");
        assert_eq!(&*labels.label(&b), "b");
        assert_eq!(&*labels.label(&c), "other");
        assert_eq!(&*labels.label(&a), "a");
    }

    #[test]
    fn the_sink_counts_creations_transitions_and_outcomes() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let core = Dispatcher::builder(devcmd_core::CoreConfig {
                shard_count: 2,
                ..Default::default()
            })
            .events(Arc::new(MetricsSink))
            .build()
            .unwrap();
            let app = AppId::new("a").unwrap();
            let _ = core.add_app(devcmd_core::App {
                id: app.clone(),
                secret_hash: String::new(),
                quota: None,
                authorized_apps: vec![],
            });
            let caller = devcmd_core::Caller::own(app);
            let d = core
                .register_device(&caller, devcmd_core::NewDevice::new("n"))
                .unwrap()
                .value
                .id;
            let c1 = core
                .create_command(&caller, devcmd_core::NewCommand::new(d.clone(), "S", "M", "{}"))
                .unwrap()
                .value;
            let _ = core
                .create_command(&caller, devcmd_core::NewCommand::new(d, "S", "M", "{}"))
                .unwrap();
            let _ = core.cancel_command(&caller, c1.id).unwrap();
            sample_core(&core);
        });
        let text = handle.render();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("devcmd_commands_created_total 2"), "{text}");
        assert!(
            has(r#"devcmd_transitions_total{from="PENDING",to="CANCELED"} 1"#),
            "{text}"
        );
        assert!(has(r#"devcmd_commands_terminal_total{status="CANCELED"} 1"#), "{text}");
        assert!(has(r#"devcmd_live_commands{status="PENDING"} 1"#), "{text}");
        assert!(has(r#"devcmd_device_queue_depth_devices{le="1"} 1"#), "{text}");
        assert!(has("devcmd_devices 1"), "{text}");
    }
}
