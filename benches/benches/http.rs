//! Criterion benchmark of the `POST deviceCommands` handler path in-process
//! (router, token check, quota, JSON parse, core create, JSON answer), beside
//! a bare axum route through the same `oneshot` call, so the ratio shows what
//! the API adds. The Prometheus recorder is installed, as in the server. The
//! store is the in-memory one: the durable figure over a
//! real socket is in BENCHMARKS.md (wrk).
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use devcmd_core::{App, AppId, Caller, CoreConfig, Dispatcher, NewDevice, Quota, SystemClock};
use devcmd_http::{Api, ApiConfig, SecretCost, hash_secret, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

const DEVICES: usize = 20_000;

fn setup(rt: &tokio::runtime::Runtime) -> (Router, String, Vec<String>) {
    // Metrics on, as `devcmd serve` runs (the per-call counters and latency histograms).
    devcmd_metrics::install_prometheus().expect("the only recorder");
    let config = CoreConfig {
        device_live_max: u32::MAX,
        live_max: u64::MAX,
        ..CoreConfig::default()
    };
    let core = Arc::new(Dispatcher::builder(config).build().expect("valid config"));
    let app = AppId::new("bench").expect("valid");
    core.add_app(App {
        id: app.clone(),
        secret_hash: hash_secret("bench-secret", SecretCost::Minimal).expect("hashed"),
        quota: Some(Quota {
            calls: u32::MAX,
            period_s: 1,
        }),
        authorized_apps: vec![],
    })
    .expect("new")
    .durable()
    .expect("in memory");
    let caller = Caller::own(app);
    let devices = (0..DEVICES)
        .map(|i| {
            core.register_device(&caller, NewDevice::new(&format!("n{i}")))
                .expect("registered")
                .value
                .id
                .to_string()
        })
        .collect();
    let api = Arc::new(Api::new(ApiConfig::default(), Arc::new(SystemClock)).expect("valid quota"));
    api.attach(core);
    let r = router(api);
    let login = Request::post("/iocm/app/sec/v1.1.0/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("appId=bench&secret=bench-secret"))
        .expect("request");
    let body = rt.block_on(async {
        let resp = r.clone().oneshot(login).await.expect("infallible");
        resp.into_body().collect().await.expect("body").to_bytes()
    });
    let v: serde_json::Value = serde_json::from_slice(&body).expect("token JSON");
    let token = v["accessToken"].as_str().expect("token").to_owned();
    (r, token, devices)
}

fn bench_create(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (api, token, devices) = setup(&rt);
    let bearer = format!("Bearer {token}");
    let bodies: Vec<String> = devices
        .iter()
        .map(|d| {
            format!(r#"{{"deviceId":"{d}","command":{{"serviceId":"Meter","method":"SET","paras":{{"value":1}}}}}}"#)
        })
        .collect();
    let bare: Router = Router::new().route("/hello", get(|| async { "hello" }));

    let mut g = c.benchmark_group("http_in_process");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_axum_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let req = Request::get("/hello").body(Body::empty()).expect("request");
                    let resp = bare.clone().oneshot(req).await.expect("infallible");
                    let _ = resp.into_body().collect().await.expect("body");
                }
                start.elapsed()
            })
        })
    });
    let mut n = 0usize;
    g.bench_function("post_device_commands", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let req = Request::post("/iocm/app/cmd/v1.4.0/deviceCommands")
                        .header("app_key", "bench")
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .body(Body::from(bodies[n % DEVICES].clone()))
                        .expect("request");
                    n += 1;
                    let resp = api.clone().oneshot(req).await.expect("infallible");
                    assert_eq!(resp.status(), 201);
                    let _ = resp.into_body().collect().await.expect("body");
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench_create);
criterion_main!(benches);
