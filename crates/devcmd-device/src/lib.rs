//! # devcmd-device
//!
//! How commands reach devices. The core's [`DeviceLink`] is the whole
//! southbound contract; the in-process transport is the core's own
//! [`devcmd_core::ChannelLink`]. This crate adds the platform's MQTT device
//! interface through a real broker ([`MqttChannel`]):
//!
//! - a device's data report (`deviceReq`) marks it awake, which releases its
//!   cached commands ([`Dispatcher::device_awake`]);
//! - each issued command is published at QoS 1 to the device's command topic
//!   as `cloudReq` with a `mid` unique per device (a resend reuses its mid);
//! - the device's `deviceRsp` with that `mid` is the command's result:
//!   `errcode` 0 → DELIVERED then SUCCESSFUL, anything else → FAILED, with
//!   `body` as the result ([`Dispatcher::result`]);
//! - malformed messages, unknown devices and unknown mids are counted and
//!   logged, never applied;
//! - the connection survives broker restarts: the event loop reconnects and
//!   subscribes again; a publish lost meanwhile is covered by the core's
//!   resends (and ends TIMEOUT if no answer ever comes).
//!
//! Choice where the platform is silent: `hasMore` is always 0 (the core
//! releases one cached command at a time, after the previous is answered).

mod message;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use devcmd_core::{CommandId, CommandOutcome, DeviceEventError, DeviceId, DeviceLink, Dispatcher, Issue, LinkFull};
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

pub use message::{
    DATA_TOPIC_FILTER, DeviceMessage, Malformed, cloud_request, command_topic, data_topic, device_of_data_topic,
    parse_device_message,
};

/// Settings of the MQTT channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// The broker, `mqtt://host:port` (port 1883 when left out).
    pub url: String,
    /// The client id; a random `devcmd-…` one when `None`.
    pub client_id: Option<String>,
    /// Commands waiting to be published; past it the core's send is refused
    /// (and its resend rules take over).
    pub queue_max: usize,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Pause between reconnection attempts.
    pub reconnect_delay: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: None,
            queue_max: 65_536,
            keep_alive: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(500),
        }
    }
}

/// Why the channel could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The broker URL is not `mqtt://host[:port]`.
    #[error("bad MQTT URL {0:?}: expected mqtt://host[:port]")]
    BadUrl(String),
}

/// Counters of the channel.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    publish_failed: AtomicU64,
    reports: AtomicU64,
    responses: AtomicU64,
    malformed: AtomicU64,
    unknown_device: AtomicU64,
    unknown_mid: AtomicU64,
    disconnects: AtomicU64,
    connects: AtomicU64,
}

/// A snapshot of the channel's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttStats {
    /// Commands published.
    pub published: u64,
    /// Publishes the client refused (disconnected and full).
    pub publish_failed: u64,
    /// Data reports received.
    pub reports: u64,
    /// Command answers applied.
    pub responses: u64,
    /// Messages that were not understood.
    pub malformed: u64,
    /// Messages from devices the core does not know.
    pub unknown_device: u64,
    /// Answers whose mid names no command sent (late, duplicate or invented).
    pub unknown_mid: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Connections made (including reconnections).
    pub connects: u64,
}

/// The core's device link for MQTT: queues each issued command for publishing.
pub struct MqttLink {
    tx: mpsc::Sender<Issue>,
}

impl DeviceLink for MqttLink {
    fn issue(&self, issue: Issue) -> Result<(), LinkFull> {
        self.tx.try_send(issue).map_err(|_| LinkFull)
    }
}

/// Recent message ids of one device, newest last (bounded).
#[derive(Default)]
struct DeviceMids {
    next: u16,
    recent: VecDeque<(u16, CommandId)>,
}

/// Message ids sent but not answered, per device.
const MIDS_PER_DEVICE: usize = 64;

/// The MQTT device channel.
pub struct MqttChannel {
    core: OnceLock<Arc<Dispatcher>>,
    client: AsyncClient,
    mids: Mutex<hashbrown::HashMap<DeviceId, DeviceMids>>,
    counters: Counters,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn options(config: &MqttConfig) -> Result<MqttOptions, MqttError> {
    let bad = || MqttError::BadUrl(config.url.clone());
    let u = url::Url::parse(&config.url).map_err(|_| bad())?;
    if u.scheme() != "mqtt" {
        return Err(bad());
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let port = u.port().unwrap_or(1883);
    let id = match &config.client_id {
        Some(id) => id.clone(),
        None => {
            let mut b = [0u8; 6];
            let _ = getrandom::fill(&mut b);
            format!("devcmd-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
    };
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(config.keep_alive);
    // The broker keeps our subscription and QoS 1 messages across our reconnects.
    o.set_clean_session(false);
    Ok(o)
}

impl MqttChannel {
    /// Connects to the broker on `runtime`. Returns the channel and the link
    /// to give [`devcmd_core::DispatcherBuilder::link`]; call
    /// [`MqttChannel::attach`] once the dispatcher exists (device messages are
    /// only read from then on).
    pub fn start(
        config: &MqttConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(Arc<Self>, Arc<MqttLink>), MqttError> {
        let opts = options(config)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let (tx, mut rx) = mpsc::channel::<Issue>(config.queue_max.max(1));
        let me = Arc::new(Self {
            core: OnceLock::new(),
            client,
            mids: Mutex::new(hashbrown::HashMap::new()),
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
        });
        let reconnect = config.reconnect_delay;
        let inbound = {
            let me = Arc::clone(&me);
            runtime.spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            me.counters.connects.fetch_add(1, Ordering::Relaxed);
                            tracing::info!("connected to the MQTT broker");
                            if me.core.get().is_some() {
                                me.subscribe();
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => me.on_message(&p.topic, &p.payload),
                        Ok(_) => {}
                        Err(e) => {
                            me.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                            tokio::time::sleep(reconnect).await;
                        }
                    }
                }
            })
        };
        let outbound = {
            let me = Arc::clone(&me);
            runtime.spawn(async move {
                while let Some(issue) = rx.recv().await {
                    me.publish(issue).await;
                }
            })
        };
        me.tasks.lock().extend([inbound, outbound]);
        Ok((Arc::clone(&me), Arc::new(MqttLink { tx })))
    }

    /// Gives the channel its dispatcher and starts reading device messages.
    pub fn attach(&self, core: Arc<Dispatcher>) {
        if self.core.set(core).is_ok() {
            self.subscribe();
        }
    }

    fn subscribe(&self) {
        if let Err(e) = self.client.try_subscribe(DATA_TOPIC_FILTER, QoS::AtLeastOnce) {
            tracing::error!(error = %e, "cannot subscribe to device data");
        }
    }

    /// The counters now.
    pub fn stats(&self) -> MqttStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MqttStats {
            published: l(&c.published),
            publish_failed: l(&c.publish_failed),
            reports: l(&c.reports),
            responses: l(&c.responses),
            malformed: l(&c.malformed),
            unknown_device: l(&c.unknown_device),
            unknown_mid: l(&c.unknown_mid),
            disconnects: l(&c.disconnects),
            connects: l(&c.connects),
        }
    }

    /// Stops the channel's tasks.
    pub fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// The message id for a send: a resend reuses the id of the first send.
    fn mid_for(&self, issue: &Issue) -> u16 {
        let mut mids = self.mids.lock();
        let d = mids.entry(issue.device_id.clone()).or_default();
        if let Some(&(mid, _)) = d.recent.iter().find(|(_, c)| *c == issue.command_id) {
            return mid;
        }
        d.next = d.next.wrapping_add(1).max(1);
        let mid = d.next;
        if d.recent.len() >= MIDS_PER_DEVICE {
            d.recent.pop_front();
        }
        d.recent.push_back((mid, issue.command_id));
        mid
    }

    async fn publish(&self, issue: Issue) {
        let mid = self.mid_for(&issue);
        let payload = cloud_request(&issue.body, u32::from(mid), false);
        let topic = command_topic(&issue.device_id);
        match self.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
            Ok(()) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // The core's resend rules cover a lost send.
                self.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, command = %issue.command_id, "command not published");
            }
        }
    }

    fn on_message(&self, topic: &str, payload: &[u8]) {
        let Some(core) = self.core.get() else { return };
        let Some(device) = device_of_data_topic(topic) else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic, "message on an unexpected topic");
            return;
        };
        let msg = match parse_device_message(payload) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%device, error = %e, "malformed device message ignored");
                return;
            }
        };
        match msg {
            DeviceMessage::Report => {
                self.counters.reports.fetch_add(1, Ordering::Relaxed);
                if let Err(DeviceEventError::UnknownDevice) = core.device_awake(&device).map(|r| drop(r.commit)) {
                    self.counters.unknown_device.fetch_add(1, Ordering::Relaxed);
                }
            }
            DeviceMessage::Response { mid, errcode, body } => {
                let command = u16::try_from(mid).ok().and_then(|mid| {
                    let mut mids = self.mids.lock();
                    let d = mids.get_mut(&device)?;
                    let i = d.recent.iter().position(|(m, _)| *m == mid)?;
                    d.recent.remove(i).map(|(_, c)| c)
                });
                let Some(command) = command else {
                    self.counters.unknown_mid.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%device, mid, "answer for no command sent");
                    return;
                };
                let outcome = CommandOutcome {
                    success: errcode == 0,
                    detail: body,
                };
                match core.result(command, outcome) {
                    Ok(r) => {
                        drop(r.commit);
                        self.counters.responses.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.counters.unknown_mid.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%device, mid, error = %e, "answer for a command the core no longer has");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_are_checked() {
        let ok = MqttConfig::default();
        assert!(options(&ok).is_ok());
        for bad in ["http://127.0.0.1:1883", "mqtt://", "127.0.0.1:1883", ""] {
            let c = MqttConfig {
                url: bad.into(),
                ..MqttConfig::default()
            };
            assert_eq!(options(&c).unwrap_err(), MqttError::BadUrl(bad.into()), "{bad}");
        }
    }
}
