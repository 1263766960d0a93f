//! An API over a core on a virtual clock, called in-process through
//! `tower::ServiceExt::oneshot`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use devcmd_core::*;
use devcmd_http::{Api, ApiConfig, SecretCost, hash_secret, router};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::Value;
use tower::ServiceExt;

/// 2017-02-22T16:40:00Z, the platform's example time.
pub const T0_MS: u64 = 1_487_781_600_000;
pub const SECRET: &str = "s3cret-of-the-app";

/// A store whose commits complete only when the test says so.
#[derive(Default)]
pub struct GatedStore {
    held: Mutex<Vec<Arc<CommitSignal>>>,
    pub gate_closed: std::sync::atomic::AtomicBool,
    pub backlogged: std::sync::atomic::AtomicBool,
}

impl GatedStore {
    pub fn release(&self, result: Result<(), StoreError>) -> usize {
        let held = std::mem::take(&mut *self.held.lock());
        for s in &held {
            s.complete(result.clone());
        }
        held.len()
    }
    pub fn close_gate(&self) {
        self.gate_closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CommandStore for GatedStore {
    fn is_backlogged(&self) -> bool {
        self.backlogged.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn submit(&self, _batch: Vec<Mutation>) -> Commit {
        if !self.gate_closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Commit::done();
        }
        let s = CommitSignal::new();
        self.held.lock().push(s.clone());
        Commit::pending(s)
    }
}

pub struct TestApi {
    pub clock: VirtualClock,
    pub api: Arc<Api>,
    pub core: Arc<Dispatcher>,
    pub store: Arc<GatedStore>,
    pub router: Router,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// Asserts a business error `{"error_code","error_desc"}` with this status and code.
    pub fn business(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["error_code"], code, "body {v}");
        assert!(v["error_desc"].is_string());
        assert_eq!(v.as_object().unwrap().len(), 2, "body {v}");
    }
    /// Asserts a gateway error `{"resultcode","resultmsg"}`.
    pub fn gateway(&self, status: u16, code: &str, msg: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v, serde_json::json!({"resultcode": code, "resultmsg": msg}));
    }
}

pub fn app(id: &str, quota: Option<Quota>, authorized: &[&str]) -> App {
    App {
        id: AppId::new(id).unwrap(),
        secret_hash: hash_secret(SECRET, SecretCost::Minimal).unwrap(),
        quota,
        authorized_apps: authorized.iter().map(|a| AppId::new(a).unwrap()).collect(),
    }
}

impl TestApi {
    pub fn new() -> Self {
        Self::with(ApiConfig::default(), CoreConfig::default())
    }

    /// Quotas large enough never to matter.
    pub fn roomy(core_config: CoreConfig) -> Self {
        let quota = Quota {
            calls: 1_000_000,
            period_s: 1,
        };
        Self::with(
            ApiConfig {
                default_quota: quota,
                ..ApiConfig::default()
            },
            core_config,
        )
    }

    pub fn with(api_config: ApiConfig, mut core_config: CoreConfig) -> Self {
        core_config.shard_count = 4;
        let clock = VirtualClock::new(Timestamp::from_millis(T0_MS));
        let store = Arc::new(GatedStore::default());
        let core = Arc::new(
            Dispatcher::builder(core_config)
                .clock(Arc::new(clock.clone()))
                .store(store.clone())
                .build()
                .unwrap(),
        );
        // app-a has authorised app-b to act on its devices; app-c has not.
        for a in [
            app("app-a", None, &["app-b"]),
            app("app-b", None, &[]),
            app("app-c", None, &[]),
        ] {
            core.add_app(a).unwrap().durable().unwrap();
        }
        let api = Arc::new(Api::new(api_config, Arc::new(clock.clone())).unwrap());
        api.attach(core.clone());
        let router = router(api.clone());
        Self {
            clock,
            api,
            core,
            store,
            router,
        }
    }

    pub async fn call(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    pub async fn login(&self, app: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/iocm/app/sec/v1.1.0/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                format!("appId={app}&secret={SECRET}"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()["accessToken"].as_str().unwrap().to_owned()
    }

    /// An authenticated JSON call as `app` with `token`.
    pub async fn as_app(&self, app: &str, token: &str, method: Method, uri: &str, body: &str) -> Resp {
        let auth = format!("Bearer {token}");
        self.call(
            method,
            uri,
            &[
                ("app_key", app),
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
    }

    pub async fn register(&self, app: &str, token: &str, node: &str) -> String {
        let r = self
            .as_app(
                app,
                token,
                Method::POST,
                "/iocm/app/reg/v1.1.0/deviceCredentials",
                &format!(r#"{{"nodeId":"{node}"}}"#),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        r.json()["deviceId"].as_str().unwrap().to_owned()
    }

    pub async fn create(&self, app: &str, token: &str, device: &str, extra: &str) -> Resp {
        self.as_app(
            app,
            token,
            Method::POST,
            "/iocm/app/cmd/v1.4.0/deviceCommands",
            &format!(
                r#"{{"deviceId":"{device}","command":{{"serviceId":"Light","method":"SET","paras":{{"on":true}}}}{extra}}}"#
            ),
        )
        .await
    }

    pub fn advance(&self, d: Duration) {
        self.core.advance(&self.clock, d);
    }
}
