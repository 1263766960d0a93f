//! `devcmd sim --server … --mqtt-url …`: the fleet in real time against a
//! running server. Devices are registered through the API and speak the
//! platform's MQTT device interface through the broker (one connection acts
//! for the whole fleet); the application creates commands through the API at
//! a rate; at the end every command of the run is looked up through the API.
//! Real time and a real network: the report is not deterministic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use devcmd_sim::{Latency, Rng};
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::Failure;

/// What a live run needs.
pub(crate) struct Live {
    pub(crate) server: String,
    pub(crate) mqtt_url: String,
    pub(crate) app_id: String,
    pub(crate) secret: String,
    pub(crate) devices: u32,
    pub(crate) seconds: u64,
    pub(crate) commands_per_second: u64,
    pub(crate) psm_share: f64,
    pub(crate) report_every_s: u64,
    pub(crate) ack_loss: f64,
    pub(crate) result_failure: f64,
    pub(crate) seed: u64,
    pub(crate) json: bool,
}

const COMMANDS: &str = "/iocm/app/cmd/v1.4.0/deviceCommands";
/// A PSM device answers only this long after its report (under the server's 30 s window).
const AWAKE_MS: u64 = 25_000;

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    throttled: AtomicU64,
    http_errors: AtomicU64,
    commands_received: AtomicU64,
    answers: AtomicU64,
    reports: AtomicU64,
    unreachable: AtomicU64,
}

struct Device {
    id: String,
    psm: bool,
    awake_until_ms: AtomicU64,
}

struct Fleet {
    devices: Vec<Device>,
    by_id: HashMap<String, usize>,
    /// Creation instant of each command, by the `seq` its paras carry.
    created_at: Mutex<HashMap<u64, Instant>>,
    latencies: Mutex<Vec<u32>>,
    ids: Mutex<Vec<String>>,
    counters: Counters,
    started: Instant,
}

impl Fleet {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

fn broker(url: &str) -> Result<(String, u16), Failure> {
    let u = url::Url::parse(url).map_err(|_| Failure::Usage(format!("bad --mqtt-url {url:?}")))?;
    let host = u
        .host_str()
        .ok_or_else(|| Failure::Usage(format!("bad --mqtt-url {url:?}")))?;
    Ok((host.to_owned(), u.port().unwrap_or(1883)))
}

async fn call(
    http: &reqwest::Client,
    l: &Live,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), Failure> {
    loop {
        let mut req = http
            .request(method.clone(), format!("{}{path}", l.server))
            .header("app_key", &l.app_id)
            .header("authorization", format!("Bearer {token}"));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| Failure::Usage(format!("server: {e}")))?;
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if v["resultcode"] == "1010009" && method != reqwest::Method::POST {
            // Reads wait for the quota; creates are counted as throttled instead.
            tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
            continue;
        }
        return Ok((status, v));
    }
}

pub(crate) fn run(l: &Live) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(l))
}

async fn run_async(l: &Live) -> Result<(), Failure> {
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{}/iocm/app/sec/v1.1.0/login", l.server))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("appId={}&secret={}", l.app_id, l.secret))
        .send()
        .await
        .map_err(|e| Failure::Usage(format!("server: {e}")))?;
    let v: Value = login.json().await.unwrap_or(Value::Null);
    let token = v["accessToken"]
        .as_str()
        .ok_or_else(|| Failure::Usage(format!("login refused: {v}")))?
        .to_owned();

    let mut rng = Rng::new(l.seed);
    let mut devices = Vec::with_capacity(l.devices as usize);
    for i in 0..l.devices {
        let psm = rng.chance(l.psm_share);
        let body =
            json!({"nodeId": format!("live-sim-{}-{i}", l.seed), "deliveryProfile": if psm { "psm" } else { "drx" }});
        let (s, v) = call(
            &http,
            l,
            &token,
            reqwest::Method::POST,
            "/iocm/app/reg/v1.1.0/deviceCredentials",
            Some(body),
        )
        .await?;
        let id = v["deviceId"]
            .as_str()
            .ok_or_else(|| Failure::Usage(format!("registration refused ({s}): {v}")))?;
        devices.push(Device {
            id: id.to_owned(),
            psm,
            awake_until_ms: AtomicU64::new(0),
        });
    }
    let by_id = devices.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect();
    let fleet = Arc::new(Fleet {
        devices,
        by_id,
        created_at: Mutex::default(),
        latencies: Mutex::default(),
        ids: Mutex::default(),
        counters: Counters::default(),
        started: Instant::now(),
    });
    eprintln!("sim: {} devices registered", fleet.devices.len());

    // One MQTT connection acts for the whole fleet.
    let (host, port) = broker(&l.mqtt_url)?;
    let mut opts = MqttOptions::new(format!("devcmd-live-sim-{}", l.seed), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<()>();
    {
        let (fleet, client, ack_loss, failure) = (fleet.clone(), client.clone(), l.ack_loss, l.result_failure);
        let rng = Arc::new(Mutex::new(Rng::new(l.seed ^ 0xd1ce)));
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("/huawei/v1/devices/+/command/json", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        on_command(&fleet, &client, &rng, &p.topic, &p.payload, ack_loss, failure);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("sim: MQTT connection lost ({e}); reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(10), ready.recv())
        .await
        .map_err(|_| Failure::Usage(format!("no answer from the broker at {}", l.mqtt_url)))?;

    // PSM devices report every `report_every_s` (±10 %), spread over the first period.
    let end = Duration::from_secs(l.seconds);
    let reporter = {
        let (fleet, client, every_ms) = (fleet.clone(), client.clone(), l.report_every_s.max(1) * 1000);
        let mut rng = Rng::new(l.seed ^ 0xbeef);
        let mut next: Vec<u64> = fleet.devices.iter().map(|_| rng.below(every_ms)).collect();
        tokio::spawn(async move {
            while fleet.started.elapsed() < end {
                let now = fleet.now_ms();
                for (i, d) in fleet.devices.iter().enumerate() {
                    if d.psm && next[i] <= now {
                        d.awake_until_ms.store(now + AWAKE_MS, Ordering::Relaxed);
                        let body =
                            json!({"msgType": "deviceReq", "data": [{"serviceId": "Sim", "serviceData": {"t": now}}]});
                        let topic = format!("/huawei/v1/devices/{}/data/json", d.id);
                        if client
                            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
                            .await
                            .is_ok()
                        {
                            fleet.counters.reports.fetch_add(1, Ordering::Relaxed);
                        }
                        next[i] = now + rng.between(every_ms * 9 / 10, every_ms * 11 / 10);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // The application: commands at a steady rate, at most 64 in flight.
    let gap = Duration::from_secs_f64(1.0 / l.commands_per_second.max(1) as f64);
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval(gap);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (http, token) = (Arc::new(http), Arc::new(token));
    while fleet.started.elapsed() < end {
        ticker.tick().await;
        seq += 1;
        let device = fleet.devices[rng.below(fleet.devices.len() as u64) as usize].id.clone();
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (fleet, http, token, server, app) = (
            fleet.clone(),
            http.clone(),
            token.clone(),
            l.server.clone(),
            l.app_id.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            fleet.created_at.lock().insert(seq, Instant::now());
            let body = json!({"deviceId": device, "command": {"serviceId": "Sim", "method": "SET", "paras": {"seq": seq}}, "expireTime": 3600});
            let r = http
                .post(format!("{server}{COMMANDS}"))
                .header("app_key", app)
                .header("authorization", format!("Bearer {token}"))
                .json(&body)
                .send()
                .await;
            let v: Value = match r {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let c = &fleet.counters;
            if let Some(id) = v["commandId"].as_str() {
                c.created.fetch_add(1, Ordering::Relaxed);
                fleet.ids.lock().push(id.to_owned());
            } else if v["resultcode"] == "1010009" {
                c.throttled.fetch_add(1, Ordering::Relaxed);
            } else {
                c.http_errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let _ = slots.acquire_many(64).await;
    let _ = reporter.await;
    eprintln!("sim: load done, waiting 5 s for the last answers");
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Every command of the run, looked up through the API.
    let (l2, http2) = (l, (*http).clone());
    let ids: std::collections::HashSet<String> = fleet.ids.lock().iter().cloned().collect();
    let mut statuses: std::collections::BTreeMap<String, u64> = Default::default();
    let mut page = 0;
    loop {
        let (_, v) = call(
            &http2,
            l2,
            &token,
            reqwest::Method::GET,
            &format!("{COMMANDS}?pageNo={page}&pageSize=1000"),
            None,
        )
        .await?;
        let data = v["data"].as_array().cloned().unwrap_or_default();
        for c in &data {
            if c["commandId"].as_str().is_some_and(|id| ids.contains(id)) {
                *statuses
                    .entry(c["status"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
        }
        if data.len() < 1000 {
            break;
        }
        page += 1;
    }
    let c = &fleet.counters;
    let latency = Latency::of(std::mem::take(&mut *fleet.latencies.lock()));
    let report = json!({
        "devices": fleet.devices.len(),
        "psm_devices": fleet.devices.iter().filter(|d| d.psm).count(),
        "seconds": l.seconds,
        "created": c.created.load(Ordering::Relaxed),
        "throttled": c.throttled.load(Ordering::Relaxed),
        "http_errors": c.http_errors.load(Ordering::Relaxed),
        "reports": c.reports.load(Ordering::Relaxed),
        "commands_received": c.commands_received.load(Ordering::Relaxed),
        "answers": c.answers.load(Ordering::Relaxed),
        "unreachable": c.unreachable.load(Ordering::Relaxed),
        "statuses": statuses,
        "created_to_device_ms": latency,
    });
    if l.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    Ok(())
}

fn on_command(
    fleet: &Arc<Fleet>,
    client: &AsyncClient,
    rng: &Mutex<Rng>,
    topic: &str,
    payload: &[u8],
    ack_loss: f64,
    failure: f64,
) {
    let Some(device) = topic
        .strip_prefix("/huawei/v1/devices/")
        .and_then(|t| t.strip_suffix("/command/json"))
    else {
        return;
    };
    let Some(&i) = fleet.by_id.get(device) else { return };
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    fleet.counters.commands_received.fetch_add(1, Ordering::Relaxed);
    if let Some(seq) = v["paras"]["seq"].as_u64()
        && let Some(t) = fleet.created_at.lock().get(&seq)
    {
        fleet
            .latencies
            .lock()
            .push(t.elapsed().as_millis().min(u128::from(u32::MAX)) as u32);
    }
    let d = &fleet.devices[i];
    if d.psm && fleet.now_ms() >= d.awake_until_ms.load(Ordering::Relaxed) {
        fleet.counters.unreachable.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (lost, fail, delay_ms) = {
        let mut r = rng.lock();
        (r.chance(ack_loss), r.chance(failure), r.between(20, 200))
    };
    if lost {
        return;
    }
    let answer = json!({"msgType": "deviceRsp", "mid": v["mid"], "errcode": i64::from(fail), "body": {"ok": !fail}});
    let data = format!("/huawei/v1/devices/{device}/data/json");
    let (client, fleet) = (client.clone(), fleet.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if client
            .publish(data, QoS::AtLeastOnce, false, answer.to_string())
            .await
            .is_ok()
        {
            fleet.counters.answers.fetch_add(1, Ordering::Relaxed);
        }
    });
}
