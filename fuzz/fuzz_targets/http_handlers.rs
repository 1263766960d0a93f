//! Arbitrary requests through the whole router (authenticated as a real app,
//! against a real in-memory core): never a panic, never a 5xx for a client's
//! bytes, every error body in one of the platform's two shapes, and the core's
//! invariants hold afterwards.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Method, Request};
use devcmd_core::{App, AppId, Caller, CoreConfig, Dispatcher, NewDevice, Quota};
use devcmd_http::{Api, ApiConfig, SecretCost, hash_secret, router};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct World {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    core: Arc<Dispatcher>,
    token: String,
    device: String,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let core = Arc::new(Dispatcher::builder(CoreConfig { shard_count: 4, ..CoreConfig::default() }).build().unwrap());
        for id in ["fz", "fz-other"] {
            let app = App {
                id: AppId::new(id).unwrap(),
                secret_hash: hash_secret("fuzz-secret", SecretCost::Minimal).unwrap(),
                quota: None,
                authorized_apps: vec![AppId::new("fz-other").unwrap()],
            };
            core.add_app(app).unwrap().durable().unwrap();
        }
        let device = core
            .register_device(&Caller::own(AppId::new("fz").unwrap()), NewDevice::new("fuzz-node"))
            .unwrap()
            .durable()
            .unwrap()
            .id
            .to_string();
        let config = ApiConfig {
            default_quota: Quota { calls: u32::MAX, period_s: 1 },
            ..ApiConfig::default()
        };
        let api = Arc::new(Api::new(config, Arc::new(devcmd_core::SystemClock)).unwrap());
        api.attach(core.clone());
        let router = router(api);
        let login = Request::post("/iocm/app/sec/v1.1.0/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("appId=fz&secret=fuzz-secret"))
            .unwrap();
        let body = rt.block_on(async {
            let r = router.clone().oneshot(login).await.unwrap();
            r.into_body().collect().await.unwrap().to_bytes()
        });
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let token = v["accessToken"].as_str().unwrap().to_owned();
        World { rt, router, core, token, device }
    })
}

#[derive(Debug, Arbitrary)]
struct Call<'a> {
    endpoint: u8,
    with_device: bool,
    query: &'a str,
    tail: &'a str,
    body: &'a [u8],
    json: bool,
}

const ENDPOINTS: [(&str, &str); 9] = [
    ("POST", "/iocm/app/sec/v1.1.0/login"),
    ("POST", "/iocm/app/sec/v1.1.0/refreshToken"),
    ("POST", "/iocm/app/reg/v1.1.0/deviceCredentials"),
    ("DELETE", "/iocm/app/dm/v1.4.0/devices/"),
    ("POST", "/iocm/app/cmd/v1.4.0/deviceCommands"),
    ("GET", "/iocm/app/cmd/v1.4.0/deviceCommands"),
    ("PUT", "/iocm/app/cmd/v1.4.0/deviceCommands/"),
    ("POST", "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"),
    ("GET", "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"),
];

fuzz_target!(|calls: Vec<Call<'_>>| {
    let w = world();
    for call in calls.into_iter().take(16) {
        let (method, path) = ENDPOINTS[usize::from(call.endpoint) % ENDPOINTS.len()];
        let mut uri = path.to_owned();
        if path.ends_with('/') {
            uri.push_str(if call.with_device && path.contains("devices") { &w.device } else { call.tail });
        }
        if !call.query.is_empty() {
            uri.push('?');
            uri.push_str(call.query);
        }
        // A create with a valid envelope now and then reaches deep into the core.
        let body = if call.with_device && path.ends_with("deviceCommands") && method == "POST" {
            format!(
                r#"{{"deviceId":"{}","command":{{"serviceId":"S","method":"M","paras":{}}},"expireTime":{}}}"#,
                w.device,
                String::from_utf8_lossy(call.body),
                call.body.len() % 3
            )
            .into_bytes()
        } else {
            call.body.to_vec()
        };
        let Ok(req) = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .header("app_key", "fz")
            .header("authorization", format!("Bearer {}", w.token))
            .header("content-type", if call.json { "application/json" } else { "application/x-www-form-urlencoded" })
            .body(Body::from(body))
        else {
            continue; // not a valid URI: never reaches a server
        };
        let (status, bytes) = w.rt.block_on(async {
            let r = w.router.clone().oneshot(req).await.unwrap();
            let status = r.status();
            (status, r.into_body().collect().await.unwrap().to_bytes())
        });
        if status.is_server_error() {
            let text = String::from_utf8_lossy(&bytes);
            // 503/100501 (bounds) is allowed; a 500 for a client's bytes is not.
            assert!(status.as_u16() == 503 && text.contains("100501"), "{method} {uri}: {status} {text}");
        }
        if !bytes.is_empty() && !status.is_success() || (status.as_u16() == 200 && bytes.starts_with(b"{\"error_code\"")) {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{method} {uri}: {status} body not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
            let o = v.as_object().unwrap();
            assert!(
                (o.contains_key("error_code") && o.contains_key("error_desc")) || (o.contains_key("resultcode") && o.contains_key("resultmsg")),
                "{v}"
            );
        }
        if status.is_success() && !bytes.is_empty() {
            assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{method} {uri}: not JSON");
        }
    }
    w.core.check_invariants().unwrap();
});
