//! # devcmd-testkit
//!
//! Test support shared by devcmd's crates (a dev-dependency only, never
//! linked into the server): a private [`Mosquitto`] broker per test on a
//! free port, an MQTT [`Subscriber`] that stands in for a device or a
//! watcher, and [`eventually`] for conditions reached by other threads.
//! Tests that need a broker talk to a real one: `.ci/run` installs
//! mosquitto.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

/// A mosquitto of the test's own on a free port (nothing else on the
/// machine is touched); killed when dropped, restartable on the same port.
#[derive(Debug)]
pub struct Mosquitto {
    port: u16,
    child: Child,
}

impl Mosquitto {
    /// Starts one on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        Self::on(port)
    }

    /// Starts one on `port` and waits until it accepts connections.
    pub fn on(port: u16) -> Self {
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (.ci/run installs it)");
        // Owned from here: Drop kills and waits for it on every path.
        let broker = Self { port, child };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mosquitto did not start on {port}");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address as an `mqtt://` URL.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops it and starts a new one on the same port (what clients see as a broker restart).
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::on(self.port);
    }

    /// Stops it (clients see the broker go away); [`Mosquitto::restart`] brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An MQTT client subscribed (QoS 1) to one topic: what a device or a
/// watcher receives arrives on `messages`, each payload parsed as JSON
/// (`Null` when it is not). It reconnects and resubscribes on its own.
#[derive(Debug)]
pub struct Subscriber {
    /// The client, to publish with.
    pub client: AsyncClient,
    /// Payloads received on the topic, in order.
    pub messages: mpsc::UnboundedReceiver<Value>,
}

impl Subscriber {
    /// Connects as `client_id` to the broker on `port`, subscribes to
    /// `topic`, and returns once the broker confirmed the subscription.
    pub async fn connect(port: u16, client_id: &str, topic: &str) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, messages) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let (sub, topic) = (client.clone(), topic.to_owned());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx
                            .send(serde_json::from_slice(&p.payload).unwrap_or(Value::Null))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        ready.recv().await;
        Self { client, messages }
    }
}

/// Polls `cond` every 5 ms for up to 20 s of real time (a bound for a
/// failing test, not a speed check); panics naming `what` if it never holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..4000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never happened: {what}");
}
