//! The MQTT channel against a real mosquitto broker (a private one per test,
//! on a free port, so it can be restarted): cached commands wait for a data
//! report and leave one at a time, answers map to results, an immediate
//! command to a sleeping device times out, malformed messages change
//! nothing, and a broker restart loses nothing.

use std::sync::Arc;
use std::time::Duration;

use devcmd_core::*;
use devcmd_device::{MqttChannel, MqttConfig, command_topic, data_topic};
use devcmd_testkit::{Mosquitto, Subscriber};
use rumqttc::{AsyncClient, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A simulated device: receives its commands, reports, answers.
struct TestDevice {
    id: DeviceId,
    client: AsyncClient,
    commands: mpsc::UnboundedReceiver<Value>,
}

impl TestDevice {
    async fn connect(port: u16, id: &DeviceId) -> Self {
        let sub = Subscriber::connect(port, &format!("dev-{id}"), &command_topic(id)).await;
        Self {
            id: id.clone(),
            client: sub.client,
            commands: sub.messages,
        }
    }

    async fn send(&self, body: Value) {
        self.client
            .publish(data_topic(&self.id), QoS::AtLeastOnce, false, body.to_string())
            .await
            .unwrap();
    }

    async fn send_raw(&self, bytes: Vec<u8>) {
        self.client
            .publish(data_topic(&self.id), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }

    async fn report(&self) {
        self.send(json!({"msgType": "deviceReq", "data": [{"serviceId": "Meter", "serviceData": {"v": 1}}]}))
            .await;
    }

    async fn answer(&self, mid: &Value, errcode: i64, body: Value) {
        self.send(json!({"msgType": "deviceRsp", "mid": mid, "errcode": errcode, "body": body}))
            .await;
    }

    async fn next_command(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(20), self.commands.recv())
            .await
            .expect("a command within 20 s")
            .expect("device task alive")
    }

    /// Nothing arrives within `ms` (a quiet period, not a speed check).
    async fn nothing_within(&mut self, ms: u64) {
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(ms), self.commands.recv()).await {
            panic!("unexpected command {v}");
        }
    }
}

struct World {
    clock: VirtualClock,
    core: Arc<Dispatcher>,
    channel: Arc<MqttChannel>,
    caller: Caller,
}

impl World {
    fn new(port: u16) -> Self {
        let clock = VirtualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let config = MqttConfig {
            url: format!("mqtt://127.0.0.1:{port}"),
            reconnect_delay: Duration::from_millis(100),
            ..MqttConfig::default()
        };
        let (channel, link) = MqttChannel::start(&config, &tokio::runtime::Handle::current()).unwrap();
        let core = Arc::new(
            Dispatcher::builder(CoreConfig {
                shard_count: 4,
                ..CoreConfig::default()
            })
            .clock(Arc::new(clock.clone()))
            .link(link)
            .build()
            .unwrap(),
        );
        channel.attach(core.clone());
        let app = AppId::new("mqtt-app").unwrap();
        let _ = core.add_app(App {
            id: app.clone(),
            secret_hash: String::new(),
            quota: None,
            authorized_apps: vec![],
        });
        Self {
            clock,
            core,
            channel,
            caller: Caller::own(app),
        }
    }

    fn device(&self, profile: DeliveryProfile) -> DeviceId {
        let mut d = NewDevice::new("imei");
        d.profile = profile;
        self.core.register_device(&self.caller, d).unwrap().value.id
    }

    fn create(&self, device: &DeviceId, method: &str, expire: Option<u32>) -> CommandId {
        let mut c = NewCommand::new(device.clone(), "Light", method, r#"{"level":3}"#);
        c.expire_time_s = expire;
        self.core.create_command(&self.caller, c).unwrap().value.id
    }

    fn status(&self, id: CommandId) -> CommandStatus {
        self.core.command(&self.caller, id).unwrap().status
    }

    async fn until(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        for _ in 0..2000 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}; stats {:?}", self.channel.stats());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_commands_wait_for_a_report_and_leave_one_at_a_time() {
    let broker = Mosquitto::start();
    let w = World::new(broker.port());
    let d = w.device(DeliveryProfile::Psm);
    let mut dev = TestDevice::connect(broker.port(), &d).await;
    w.until("connected", |w| w.channel.stats().connects >= 1).await;

    let c1 = w.create(&d, "FIRST", None);
    let c2 = w.create(&d, "SECOND", None);
    dev.nothing_within(300).await; // asleep: nothing is sent
    assert_eq!(w.channel.stats().published, 0);

    dev.report().await;
    let m1 = dev.next_command().await;
    assert_eq!(m1["msgType"], "cloudReq");
    assert_eq!(
        (m1["serviceId"].as_str(), m1["cmd"].as_str()),
        (Some("Light"), Some("FIRST"))
    );
    assert_eq!(m1["paras"], json!({"level": 3}));
    assert_eq!(w.status(c1), CommandStatus::Sent);
    dev.nothing_within(300).await; // one in flight at a time

    dev.answer(&m1["mid"], 0, json!({"light": 1})).await;
    let m2 = dev.next_command().await;
    assert_eq!(m2["cmd"], "SECOND");
    assert_ne!(m2["mid"], m1["mid"]);
    assert_eq!(w.status(c1), CommandStatus::Successful);
    let done = w.core.command(&w.caller, c1).unwrap();
    assert!(done.delivered_time.is_some(), "DELIVERED came first");
    assert_eq!(done.result.as_deref(), Some(r#"{"light":1}"#));

    dev.answer(&m2["mid"], 5, Value::Null).await;
    w.until("FAILED", |w| w.status(c2) == CommandStatus::Failed).await;

    // A late duplicate answer and malformed messages change nothing.
    dev.answer(&m2["mid"], 0, Value::Null).await;
    dev.send(json!({"msgType": "deviceRsp", "errcode": 0})).await;
    dev.send(json!("garbage")).await;
    dev.send_raw(vec![0xff, 0x00, 0x7b]).await;
    w.until("counted", |w| {
        let s = w.channel.stats();
        s.unknown_mid >= 1 && s.malformed >= 3
    })
    .await;
    assert_eq!(
        (w.status(c1), w.status(c2)),
        (CommandStatus::Successful, CommandStatus::Failed)
    );
    w.core.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_command_to_a_sleeping_device_times_out() {
    let broker = Mosquitto::start();
    let w = World::new(broker.port());
    let d = w.device(DeliveryProfile::Psm);
    let mut dev = TestDevice::connect(broker.port(), &d).await;
    w.until("connected", |w| w.channel.stats().connects >= 1).await;
    let c = w.create(&d, "NOW", Some(0));
    assert_eq!(w.status(c), CommandStatus::Sent);
    // It is published whatever the device's state; this device never answers.
    let m = dev.next_command().await;
    assert_eq!(m["cmd"], "NOW");
    for _ in 0..4 {
        w.core.advance(&w.clock, Duration::from_secs(50));
    }
    assert_eq!(w.status(c), CommandStatus::Timeout);
    // The resends reused the first send's mid.
    while let Ok(Some(again)) = tokio::time::timeout(Duration::from_millis(300), dev.commands.recv()).await {
        assert_eq!(again["mid"], m["mid"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    let mut broker = Mosquitto::start();
    let w = World::new(broker.port());
    let d = w.device(DeliveryProfile::Drx);
    let mut dev = TestDevice::connect(broker.port(), &d).await;
    w.until("connected", |w| w.channel.stats().connects >= 1).await;

    broker.stop();
    w.until("disconnect seen", |w| w.channel.stats().disconnects >= 1).await;
    // A DRX device hears at once: this command is issued while the broker is down.
    let c = w.create(&d, "DURING_OUTAGE", None);
    assert_eq!(w.status(c), CommandStatus::Sent);
    broker.restart();
    w.until("reconnected", |w| w.channel.stats().connects >= 2).await;

    // Either the queued publish arrives, or a resend does (the device may
    // have subscribed again only after it): step the clock until it comes.
    let mut got = None;
    for _ in 0..6 {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), dev.commands.recv()).await {
            got = Some(m);
            break;
        }
        w.core.advance(&w.clock, Duration::from_secs(2));
    }
    let m = got.expect("the command reached the device after the restart");
    assert_eq!(m["cmd"], "DURING_OUTAGE");
    dev.answer(&m["mid"], 0, json!({"ok": true})).await;
    w.until("SUCCESSFUL", |w| w.status(c) == CommandStatus::Successful)
        .await;
    // Device reports after the restart still reach the core.
    let before = w.channel.stats().reports;
    dev.report().await;
    w.until("report after restart", |w| w.channel.stats().reports > before)
        .await;
}
