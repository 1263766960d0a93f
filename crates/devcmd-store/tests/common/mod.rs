//! A dispatcher on a virtual clock over the real store, closed and reopened by the tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use devcmd_core::*;
use devcmd_store::{FjallStore, StoreConfig};

pub const T0: u64 = 1_700_000_000_000;

pub struct Node {
    pub core: Dispatcher,
    pub store: Arc<FjallStore>,
    pub clock: VirtualClock,
    pub report: RestoreReport,
}

/// Opens the store in `dir`, builds a dispatcher at `at` (with the store as
/// its history if `history`) and restores what the store holds; nothing
/// may be corrupt or refused.
pub fn open_with(dir: &std::path::Path, at: u64, config: CoreConfig, history: bool) -> Node {
    let (store, recovered) = FjallStore::open(dir, StoreConfig::default()).expect("store opens");
    assert!(recovered.corrupt.is_empty(), "{:?}", recovered.corrupt);
    let clock = VirtualClock::new(Timestamp::from_millis(at));
    let mut builder = Dispatcher::builder(config)
        .clock(Arc::new(clock.clone()))
        .store(store.clone());
    if history {
        builder = builder.history(store.clone());
    }
    let core = builder.build().unwrap();
    let report = core.restore(recovered.state);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    Node {
        core,
        store,
        clock,
        report,
    }
}

/// Drops the dispatcher and closes the store (the directory is free again).
pub fn shut(n: Node) {
    drop(n.core);
    n.store.close();
}

pub fn caller() -> Caller {
    Caller::own(AppId::new("app").unwrap())
}

/// Adds the application `app` the tests act for.
pub fn add_app(n: &Node) {
    n.core
        .add_app(App {
            id: AppId::new("app").unwrap(),
            secret_hash: "h".into(),
            quota: None,
            authorized_apps: vec![],
        })
        .unwrap()
        .durable()
        .unwrap();
}

/// A cached command for `d`, durable.
pub fn create(n: &Node, d: &DeviceId) -> Command {
    n.core
        .create_command(&caller(), NewCommand::new(d.clone(), "S", "M", r#"{"v":1}"#))
        .unwrap()
        .durable()
        .unwrap()
}
