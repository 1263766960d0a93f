//! The real binary over a real socket: add an app, serve, log in, register,
//! create, query, cancel, cancel task; stop (SIGTERM) and start again on the
//! same data directory and find everything still there.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use devcmd_testkit::{Mosquitto, Subscriber};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_devcmd");
const SECRET: &str = "e2e-secret-value";

struct Server {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("devcmd starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut base = None;
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the server prints its progress");
            if let Some(addr) = line.strip_prefix("listening on ") {
                base = Some(addr.trim().to_owned());
            }
            if line.starts_with("ready in ") {
                break;
            }
        }
        Self {
            child,
            base: base.expect("the server printed its address"),
            lines,
        }
    }

    /// The text of `GET /metrics`.
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// SIGTERM, then wait for a clean exit that says it stopped.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "devcmd exited with {exit}");
        let rest: Vec<String> = std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
        assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn login(base: &str) -> Self {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/iocm/app/sec/v1.1.0/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("appId=e2e&secret={SECRET}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        Self {
            http,
            base: base.to_owned(),
            token: v["accessToken"].as_str().unwrap().to_owned(),
        }
    }

    /// Registers a device (`deviceCredentials`); the answer must be 200.
    async fn register(&self, reg: Value) -> Value {
        let (s, dev) = self
            .call(
                reqwest::Method::POST,
                "/iocm/app/reg/v1.1.0/deviceCredentials",
                Some(reg),
            )
            .await;
        assert_eq!(s, 200, "{dev}");
        dev
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("app_key", "e2e")
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn run_cli(args: &[&str], dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const COMMANDS: &str = "/iocm/app/cmd/v1.4.0/deviceCommands";

const TASKS: &str = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_survives_a_restart_with_everything_in_place() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    assert!(run_cli(&["app", "add", "e2e", "--secret", SECRET], dir.path()).contains("added application e2e"));
    assert!(run_cli(&["app", "list"], dir.path()).starts_with("e2e\t"));

    let server = Server::start(dir.path());
    let c = Client::login(&server.base).await;
    let reg = json!({"nodeId": "imei-e2e"});
    let dev = c.register(reg).await;
    let device = dev["deviceId"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..4 {
        let body =
            json!({"deviceId": device, "command": {"serviceId": "Light", "method": "SET", "paras": {"level": i}}});
        let (s, v) = c.call(Method::POST, COMMANDS, Some(body)).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["status"], "PENDING");
        ids.push(v["commandId"].as_str().unwrap().to_owned());
    }
    let cancel = json!({"status": "CANCELED"});
    let (s, v) = c
        .call(Method::PUT, &format!("{COMMANDS}/{}", ids[0]), Some(cancel.clone()))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("CANCELED")));
    let (s, task) = c.call(Method::POST, TASKS, Some(json!({"deviceId": device}))).await;
    assert_eq!(
        (s, task["status"].as_str(), task["totalCount"].as_u64()),
        (201, Some("WAITTING"), Some(3))
    );
    // The ticker runs the task within milliseconds.
    let mut done = false;
    for _ in 0..500 {
        let (_, page) = c.call(Method::GET, TASKS, None).await;
        if page["data"][0]["status"] == "SUCCESS" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(done, "the cancel task never ran");
    // One more command that stays PENDING across the restart.
    let body = json!({"deviceId": device, "command": {"serviceId": "Light", "method": "OFF"}, "expireTime": 3600});
    let (s, v) = c.call(Method::POST, COMMANDS, Some(body)).await;
    assert_eq!(s, 201);
    let survivor = v["commandId"].as_str().unwrap().to_owned();
    let (_, before) = c.call(Method::GET, COMMANDS, None).await;
    assert_eq!(before["pagination"]["totalSize"], 5);
    server.stop();

    let server = Server::start(dir.path());
    let c = Client::login(&server.base).await;
    let (s, after) = c.call(Method::GET, COMMANDS, None).await;
    assert_eq!(s, 200);
    assert_eq!(after, before, "the same commands, states and times after a restart");
    let statuses: Vec<&str> = after["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["CANCELED", "CANCELED", "CANCELED", "CANCELED", "PENDING"]);
    assert_eq!(after["data"][4]["commandId"], survivor.as_str());
    let (_, tasks) = c.call(Method::GET, TASKS, None).await;
    assert_eq!(tasks["data"][0]["taskId"], task["taskId"]);
    assert_eq!(tasks["data"][0]["status"], "SUCCESS");
    // The device is still registered: its command can be cancelled and it can be deleted.
    let (s, _) = c
        .call(Method::PUT, &format!("{COMMANDS}/{survivor}"), Some(cancel))
        .await;
    assert_eq!(s, 200);
    let (s, _) = c
        .call(Method::DELETE, &format!("/iocm/app/dm/v1.4.0/devices/{device}"), None)
        .await;
    assert_eq!(s, 204);
    server.stop();
}

/// Terminal commands leave the server's memory for the store's history a
/// second after they end; the API answers exactly as before, across a
/// restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_the_history_answer_as_they_did_in_memory() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("devcmd.toml");
    std::fs::write(
        &config,
        format!(
            "[core]\nhistory_grace_s = 1\nsweep_interval_ms = 100\n\n[[apps]]\nid = \"e2e\"\nsecret = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let server = Server::start_with(&data, &args);
    let c = Client::login(&server.base).await;
    let dev = c.register(json!({"nodeId": "h"})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body =
            json!({"deviceId": dev["deviceId"], "command": {"serviceId": "S", "method": "M", "paras": {"i": i}}});
        let (s, v) = c.call(Method::POST, COMMANDS, Some(body)).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["commandId"].as_str().unwrap().to_owned());
    }
    let cancel = json!({"status": "CANCELED"});
    for id in &ids[..3] {
        let (s, _) = c
            .call(Method::PUT, &format!("{COMMANDS}/{id}"), Some(cancel.clone()))
            .await;
        assert_eq!(s, 200);
    }
    let (_, before) = c.call(Method::GET, COMMANDS, None).await;
    let (_, before_page) = c
        .call(Method::GET, &format!("{COMMANDS}?pageNo=1&pageSize=2"), None)
        .await;
    let device_query = format!("{COMMANDS}?deviceId={}", dev["deviceId"].as_str().unwrap());
    let (_, before_device) = c.call(Method::GET, &device_query, None).await;
    let (_, refused_before) = c
        .call(Method::PUT, &format!("{COMMANDS}/{}", ids[0]), Some(cancel.clone()))
        .await;
    // Wait until the three cancelled commands have left memory.
    let archived = r#"devcmd_commands_left_memory_total{to="history"} "#;
    let mut moved = false;
    for _ in 0..200 {
        let text = server.metrics().await;
        if text.lines().any(|l| l.strip_prefix(archived) == Some("3")) {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "the cancelled commands never moved to the history");
    assert_eq!(before["pagination"]["totalSize"], 5);
    assert_eq!(c.call(Method::GET, COMMANDS, None).await.1, before);
    assert_eq!(
        c.call(Method::GET, &format!("{COMMANDS}?pageNo=1&pageSize=2"), None)
            .await
            .1,
        before_page
    );
    assert_eq!(c.call(Method::GET, &device_query, None).await.1, before_device);
    let (_, refused) = c
        .call(Method::PUT, &format!("{COMMANDS}/{}", ids[0]), Some(cancel))
        .await;
    assert_eq!(
        refused, refused_before,
        "a command in the history cannot be cancelled either"
    );
    server.stop();
    let server = Server::start_with(&data, &args);
    let c = Client::login(&server.base).await;
    assert_eq!(
        c.call(Method::GET, COMMANDS, None).await.1,
        before,
        "and after a restart"
    );
    server.stop();
}

#[test]
fn a_second_process_on_the_same_directory_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    run_cli(&["app", "add", "e2e", "--secret", SECRET], dir.path());
    let server = Server::start(dir.path());
    let out = Command::new(BIN)
        .args(["app", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one process per data directory"), "{err}");
    server.stop();
}

#[test]
fn a_fresh_start_with_no_apps_says_how_to_add_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let hint: Vec<String> = std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(5)).ok())
        .take_while(|l| !l.contains("/login"))
        .collect();
    assert!(hint.iter().any(|l| l.contains("devcmd app add")), "{hint:?}");
    server.stop();
}

#[tokio::test]
async fn serve_speaks_https_when_given_a_certificate_and_key() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

    let dir = tempfile::tempdir().unwrap();
    // A throwaway CA and a leaf for localhost signed by it.
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (ca, ca_key, cert, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("cert.pem"),
        p("key.pem"),
        p("leaf.csr"),
        p("ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for args in [
        [
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=devcmd-test-ca",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ][..],
            &ec,
        ]
        .concat(),
        [
            &["req", "-subj", "/CN=localhost", "-keyout", &key, "-out", &csr][..],
            &ec,
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    ] {
        let made = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is installed (.ci/run installs it)");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }

    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--tls-cert", &cert, "--tls-key", &key]);
    let addr = server
        .base
        .strip_prefix("https://")
        .expect("an https address")
        .to_owned();

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&ca).unwrap()).unwrap();
    let config = ClientConfig::builder_with_provider(std::sync::Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    server.stop();
}

#[test]
fn a_bad_certificate_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&bogus)
        .arg("--tls-key")
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pushes_status_changes_to_the_callback_url() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = seen.clone();
    let receiver = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir().unwrap();
    run_cli(&["app", "add", "e2e", "--secret", SECRET], dir.path());
    let server = Server::start(dir.path());
    let c = Client::login(&server.base).await;
    let reg = json!({"nodeId": "imei-cb", "deliveryProfile": "drx"});
    let dev = c.register(reg).await;
    let body = json!({"deviceId": dev["deviceId"], "command": {"serviceId": "S", "method": "M"}, "callbackUrl": cb, "expireTime": 0});
    let (s, cmd) = c.call(reqwest::Method::POST, COMMANDS, Some(body)).await;
    assert_eq!(s, 201, "{cmd}");
    for _ in 0..1000 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pushes = seen.lock().unwrap().clone();
    assert_eq!(
        pushes,
        [
            json!({"deviceId": dev["deviceId"], "commandId": cmd["commandId"], "result": {"resultCode": "SENT", "resultDetail": null}})
        ]
    );
    // A bad callback URL is refused at creation.
    let bad =
        json!({"deviceId": dev["deviceId"], "command": {"serviceId": "S", "method": "M"}, "callbackUrl": "ftp://x/y"});
    let (s, err) = c.call(reqwest::Method::POST, COMMANDS, Some(bad)).await;
    assert_eq!((s, err["error_code"].as_str()), (400, Some("100022")));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_scripted_workload_have_the_right_values() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    run_cli(
        &[
            "app",
            "add",
            "e2e",
            "--secret",
            SECRET,
            "--quota-calls",
            "8",
            "--quota-period-s",
            "600",
        ],
        dir.path(),
    );
    let server = Server::start(dir.path());
    let c = Client::login(&server.base).await;
    let dev = c.register(json!({"nodeId": "m"})).await; // call 1
    let mut ids = Vec::new();
    for _ in 0..3 {
        let body = json!({"deviceId": dev["deviceId"], "command": {"serviceId": "S", "method": "M"}});
        let (s, v) = c.call(Method::POST, COMMANDS, Some(body)).await; // calls 2-4
        assert_eq!(s, 201);
        ids.push(v["commandId"].as_str().unwrap().to_owned());
    }
    let (s, _) = c
        .call(
            Method::PUT,
            &format!("{COMMANDS}/{}", ids[0]),
            Some(json!({"status": "CANCELED"})),
        )
        .await; // call 5
    assert_eq!(s, 200);
    for _ in 0..3 {
        c.call(Method::GET, COMMANDS, None).await; // calls 6-8
    }
    let (s, _) = c.call(Method::GET, COMMANDS, None).await; // call 9: over the quota
    assert_eq!(s, 403);

    let text = server.metrics().await;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("devcmd_commands_created_total"), 3.0);
    assert_eq!(value(r#"devcmd_transitions_total{from="PENDING",to="CANCELED"}"#), 1.0);
    assert_eq!(value(r#"devcmd_commands_terminal_total{status="CANCELED"}"#), 1.0);
    assert_eq!(value(r#"devcmd_live_commands{status="PENDING"}"#), 2.0);
    assert_eq!(value(r#"devcmd_live_commands{status="SENT"}"#), 0.0);
    assert_eq!(value("devcmd_devices"), 1.0);
    assert_eq!(value(r#"devcmd_device_queue_depth_devices{le="2"}"#), 1.0);
    assert_eq!(value(r#"devcmd_device_queue_depth_devices{le="0"}"#), 0.0);
    let route = "/iocm/app/cmd/v1.4.0/deviceCommands";
    assert_eq!(
        value(&format!(
            r#"devcmd_api_calls_total{{route="{route}",method="POST",status="201",app="e2e"}}"#
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            r#"devcmd_api_calls_total{{route="{route}",method="GET",status="403",app="e2e"}}"#
        )),
        1.0
    );
    assert_eq!(value(r#"devcmd_api_throttled_total{app="e2e"}"#), 1.0);
    assert_eq!(
        value(&format!(
            r#"devcmd_api_latency_seconds_count{{route="{route}",method="POST"}}"#
        )),
        3.0
    );
    // Every write went through a synced batch: the device, 3 creates, 1 cancel.
    assert!(value("devcmd_store_batch_mutations_sum") >= 5.0, "{text}");
    assert!(value("devcmd_store_commit_seconds_count") >= 1.0);
    assert!(value("devcmd_recovery_seconds") >= 0.0);
    assert_eq!(value(r#"devcmd_callback_pushes_total{outcome="delivered"}"#), 0.0);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_serves_apps_from_the_config_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("devcmd.toml");
    std::fs::write(&config, format!("[[apps]]\nid = \"e2e\"\nsecret = \"{SECRET}\"\n")).unwrap();
    let data = dir.path().join("data");
    let args = ["--in-memory", "--config", config.to_str().unwrap()];
    let server = Server::start_with(&data, &args);
    let c = Client::login(&server.base).await;
    let reg = json!({"nodeId": "m"});
    let dev = c.register(reg).await;
    let body = json!({"deviceId": dev["deviceId"], "command": {"serviceId": "S", "method": "M"}});
    let (s, _) = c.call(reqwest::Method::POST, COMMANDS, Some(body)).await;
    assert_eq!(s, 201);
    let (_, page) = c.call(reqwest::Method::GET, COMMANDS, None).await;
    assert_eq!(page["pagination"]["totalSize"], 1);
    server.stop();
    assert!(!data.exists(), "--in-memory wrote a data directory");
    let server = Server::start_with(&data, &args);
    let c = Client::login(&server.base).await;
    let (_, page) = c.call(reqwest::Method::GET, COMMANDS, None).await;
    assert_eq!(page["pagination"]["totalSize"], 0, "the command did not survive");
    let gone = format!("/iocm/app/dm/v1.4.0/devices/{}", dev["deviceId"].as_str().unwrap());
    let (s, err) = c.call(reqwest::Method::DELETE, &gone, None).await;
    assert_eq!(
        (s, err["error_code"].as_str()),
        (200, Some("100418")),
        "the device did not survive"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_over_mqtt_receive_commands_created_through_the_api() {
    use rumqttc::QoS;
    let broker = Mosquitto::start();
    let port = broker.port();

    let dir = tempfile::tempdir().unwrap();
    run_cli(&["app", "add", "e2e", "--secret", SECRET], dir.path());
    let server = Server::start_with(dir.path(), &["--mqtt-url", &format!("mqtt://127.0.0.1:{port}")]);
    let c = Client::login(&server.base).await;
    let reg = json!({"nodeId": "imei-mqtt", "deliveryProfile": "psm"});
    let dev = c.register(reg).await;
    let device = dev["deviceId"].as_str().unwrap().to_owned();

    // The device: subscribes to its command topic, then reports data.
    let topic = format!("/huawei/v1/devices/{device}/command/json");
    let Subscriber {
        client,
        messages: mut commands,
    } = Subscriber::connect(port, "e2e-device", &topic).await;
    let body = json!({"deviceId": device, "command": {"serviceId": "Light", "method": "ON", "paras": {"v": 1}}});
    let (s, cmd) = c.call(reqwest::Method::POST, COMMANDS, Some(body)).await;
    assert_eq!(
        (s, cmd["status"].as_str()),
        (201, Some("PENDING")),
        "a PSM device sleeps until it reports"
    );
    let data = format!("/huawei/v1/devices/{device}/data/json");
    let report = json!({"msgType": "deviceReq", "data": [{"serviceId": "Light", "serviceData": {"on": 0}}]});
    client
        .publish(data.clone(), QoS::AtLeastOnce, false, report.to_string())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(20), commands.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m["cmd"].as_str(), m["paras"].clone()), (Some("ON"), json!({"v": 1})));
    let answer = json!({"msgType": "deviceRsp", "mid": m["mid"], "errcode": 0, "body": {"on": 1}});
    client
        .publish(data, QoS::AtLeastOnce, false, answer.to_string())
        .await
        .unwrap();
    let mut last = Value::Null;
    for _ in 0..500 {
        let (_, page) = c.call(reqwest::Method::GET, COMMANDS, None).await;
        last = page["data"][0].clone();
        if last["status"] == "SUCCESSFUL" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last["status"], "SUCCESSFUL", "{last}");
    assert_eq!(last["result"], json!({"on": 1}));
    assert!(last["deliveredTime"].is_string() && last["executeTime"].is_string());
    let metrics = server.metrics().await;
    for line in [
        r#"devcmd_mqtt_messages_total{kind="published"} 1"#,
        r#"devcmd_mqtt_messages_total{kind="report"} 1"#,
        r#"devcmd_mqtt_messages_total{kind="response"} 1"#,
        r#"devcmd_mqtt_messages_total{kind="malformed"} 0"#,
        "devcmd_mqtt_connects_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    server.stop();
}

#[test]
fn a_live_sim_drives_a_real_server_over_http_and_mqtt() {
    let broker = Mosquitto::start();
    let port = broker.port();
    let dir = tempfile::tempdir().unwrap();
    let big = ["--quota-calls", "1000000", "--quota-period-s", "1"];
    run_cli(
        &[&["app", "add", "e2e", "--secret", SECRET][..], &big].concat(),
        dir.path(),
    );
    let mqtt = format!("mqtt://127.0.0.1:{port}");
    let server = Server::start_with(dir.path(), &["--mqtt-url", &mqtt]);
    let out = Command::new(BIN)
        .args([
            "sim",
            "--server",
            &server.base,
            "--mqtt-url",
            &mqtt,
            "--app-id",
            "e2e",
            "--secret",
            SECRET,
        ])
        .args([
            "--devices",
            "20",
            "--seconds",
            "3",
            "--commands-per-second",
            "20",
            "--psm-share",
            "0.5",
        ])
        .args(["--report-every-s", "1", "--ack-loss", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let created = r["created"].as_u64().unwrap();
    assert!(created >= 30, "{r}");
    assert_eq!(
        (r["throttled"].as_u64(), r["http_errors"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let counted: u64 = r["statuses"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, created, "every command of the run found through the API: {r}");
    assert!(r["statuses"]["SUCCESSFUL"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(
        r["commands_received"].as_u64().unwrap() > 0 && r["answers"].as_u64().unwrap() > 0,
        "{r}"
    );
    server.stop();
}
