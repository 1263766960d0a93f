//! A real HTTP receiver on 127.0.0.1 that records pushes and answers as the
//! test scripts it, and a dispatcher on a virtual clock feeding the outbox.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use devcmd_callback::{CallbackConfig, Callbacks};
use devcmd_core::*;
use parking_lot::Mutex;
use serde_json::Value;

pub const T0: u64 = 1_700_000_000_000;

#[derive(Default)]
pub struct Receiver {
    /// (path, content type, body) of every push that reached it.
    pub log: Mutex<Vec<(String, String, Value)>>,
    /// Statuses to answer, in order; then `default_status`.
    pub script: Mutex<VecDeque<u16>>,
    pub default_status: AtomicU16,
    /// Never answer.
    pub hang: AtomicBool,
}

impl Receiver {
    /// Starts a receiver; returns it and its base URL.
    pub async fn start() -> (Arc<Self>, String) {
        let me = Arc::new(Self::default());
        me.default_status.store(200, Ordering::SeqCst);
        let app = axum::Router::new().fallback(receive).with_state(me.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (me, format!("http://{addr}"))
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.log.lock().iter().map(|(_, _, b)| b.clone()).collect()
    }

    pub fn count(&self) -> usize {
        self.log.lock().len()
    }
}

async fn receive(State(r): State<Arc<Receiver>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let status = r
        .script
        .lock()
        .pop_front()
        .unwrap_or(r.default_status.load(Ordering::SeqCst));
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.log.lock().push((uri.path().to_owned(), ct, v));
    StatusCode::from_u16(status).unwrap()
}

pub use devcmd_testkit::eventually;

pub struct World {
    pub clock: VirtualClock,
    pub core: Dispatcher,
    pub callbacks: Arc<Callbacks>,
    pub store: Arc<dyn CommandStore>,
    pub caller: Caller,
}

impl World {
    pub fn new(config: CallbackConfig, store: Arc<dyn CommandStore>) -> Self {
        let clock = VirtualClock::new(Timestamp::from_millis(T0));
        let (callbacks, sink) = Callbacks::start(
            config,
            Arc::new(clock.clone()),
            Some(store.clone()),
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let core = Dispatcher::builder(CoreConfig {
            shard_count: 4,
            ..CoreConfig::default()
        })
        .clock(Arc::new(clock.clone()))
        .store(store.clone())
        .events(sink)
        .build()
        .unwrap();
        let app = AppId::new("cb-app").unwrap();
        let _ = core.add_app(App {
            id: app.clone(),
            secret_hash: String::new(),
            quota: None,
            authorized_apps: vec![],
        });
        Self {
            clock,
            core,
            callbacks,
            store,
            caller: Caller::own(app),
        }
    }

    pub fn device(&self, profile: DeliveryProfile) -> DeviceId {
        let mut d = NewDevice::new("node");
        d.profile = profile;
        self.core
            .register_device(&self.caller, d)
            .unwrap()
            .durable()
            .unwrap()
            .id
    }

    pub fn command(&self, device: &DeviceId, url: &str, expire_s: Option<u32>) -> CommandId {
        let mut c = NewCommand::new(device.clone(), "Light", "SET", r#"{"on":1}"#);
        c.callback_url = Some(url.to_owned());
        c.expire_time_s = expire_s;
        self.core.create_command(&self.caller, c).unwrap().durable().unwrap().id
    }

    /// Moves the virtual clock, firing the core's deadlines on the way.
    pub fn advance(&self, d: Duration) {
        self.core.advance(&self.clock, d);
    }
}
