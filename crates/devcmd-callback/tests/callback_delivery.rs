//! Pushes to a real local receiver: shape and order, retries, suspension,
//! isolation from a dead receiver, durability before the push, restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use devcmd_callback::CallbackConfig;
use devcmd_core::*;
use serde_json::{Value, json};

fn fast() -> CallbackConfig {
    CallbackConfig {
        poll_step: Duration::from_millis(2),
        ..CallbackConfig::default()
    }
}

fn pushes_of(bodies: &[Value], id: CommandId) -> Vec<Value> {
    let id = id.to_string();
    bodies
        .iter()
        .filter(|b| b["commandId"] == id.as_str())
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_terminal_status_is_pushed_in_order_in_the_platforms_shape() {
    let (rx, base) = Receiver::start().await;
    let store = MemoryStore::new();
    let w = World::new(fast(), store.clone());
    let url = format!("{base}/v1.0.0/messageReceiver/cmd");
    let drx = w.device(DeliveryProfile::Drx);
    let d2 = w.device(DeliveryProfile::Drx);
    let d3 = w.device(DeliveryProfile::Drx);
    let psm = w.device(DeliveryProfile::Psm);

    let ok = w.command(&drx, &url, None); // SENT at once: a DRX device hears
    w.core.ack(ok).unwrap().durable().unwrap();
    w.core
        .result(
            ok,
            CommandOutcome {
                success: true,
                detail: Some(r#"{"light_state":1}"#.into()),
            },
        )
        .unwrap()
        .durable()
        .unwrap();
    let failed = w.command(&d2, &url, None);
    w.core
        .result(
            failed,
            CommandOutcome {
                success: false,
                detail: None,
            },
        )
        .unwrap()
        .durable()
        .unwrap();
    let timeout = w.command(&d3, &url, Some(0));
    let expired = w.command(&psm, &url, Some(60));
    let canceled = w.command(&psm, &url, None);
    w.core.cancel_command(&w.caller, canceled).unwrap().durable().unwrap();
    w.advance(Duration::from_secs(200)); // TIMEOUT and EXPIRED fire

    // SENT, DELIVERED, SUCCESSFUL + SENT, DELIVERED, FAILED + SENT, TIMEOUT.
    eventually("8 pushes", || rx.count() >= 8).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 8, "{bodies:#?}");
    let codes = |id| {
        pushes_of(&bodies, id)
            .iter()
            .map(|b| b["result"]["resultCode"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(codes(ok), ["SENT", "DELIVERED", "SUCCESSFUL"]);
    assert_eq!(codes(failed), ["SENT", "DELIVERED", "FAILED"]);
    assert_eq!(codes(timeout), ["SENT", "TIMEOUT"]);
    assert!(
        codes(expired).is_empty() && codes(canceled).is_empty(),
        "EXPIRED/CANCELED are not pushed by default"
    );
    assert_eq!(
        pushes_of(&bodies, ok)[2],
        json!({"deviceId": drx.to_string(), "commandId": ok.to_string(), "result": {"resultCode": "SUCCESSFUL", "resultDetail": {"light_state": 1}}})
    );
    assert_eq!(pushes_of(&bodies, ok)[0]["result"]["resultDetail"], Value::Null);
    let log = rx.log.lock().clone();
    assert!(
        log.iter()
            .all(|(path, ct, _)| path == "/v1.0.0/messageReceiver/cmd" && ct == "application/json")
    );
    // Delivered pushes leave the outbox.
    eventually("outbox empty", || store.snapshot().outbox.is_empty()).await;
    assert_eq!(w.callbacks.stats().delivered, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_canceled_are_pushed_when_asked() {
    let (rx, base) = Receiver::start().await;
    let w = World::new(
        CallbackConfig {
            notify_expired_and_canceled: true,
            ..fast()
        },
        MemoryStore::new(),
    );
    let psm = w.device(DeliveryProfile::Psm);
    let expired = w.command(&psm, &base, Some(60));
    let canceled = w.command(&psm, &base, None);
    w.core.cancel_command(&w.caller, canceled).unwrap().durable().unwrap();
    w.advance(Duration::from_secs(61));
    eventually("2 pushes", || rx.count() == 2).await;
    let bodies = rx.bodies();
    assert_eq!(pushes_of(&bodies, expired)[0]["result"]["resultCode"], "EXPIRED");
    assert_eq!(pushes_of(&bodies, canceled)[0]["result"]["resultCode"], "CANCELED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_is_retried_after_its_backoff() {
    let (rx, base) = Receiver::start().await;
    rx.script.lock().push_back(500);
    let w = World::new(fast(), MemoryStore::new());
    let d = w.device(DeliveryProfile::Drx);
    let id = w.command(&d, &base, Some(0));
    eventually("first attempt", || rx.count() == 1).await;
    eventually("counted", || w.callbacks.stats().failed_attempts == 1).await;
    // The retry waits for its backoff (≥ 0.5 s of platform time).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.count(), 1);
    w.clock.advance(Duration::from_secs(2));
    eventually("retried", || w.callbacks.stats().delivered == 1).await;
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1]["commandId"], id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_failures_suspend_the_address_for_three_minutes_then_it_resumes() {
    let (rx, base) = Receiver::start().await;
    rx.default_status.store(503, Ordering::SeqCst);
    let w = World::new(fast(), MemoryStore::new());
    let d = w.device(DeliveryProfile::Drx);
    w.command(&d, &base, Some(0));
    for n in 1..=10u64 {
        eventually(&format!("attempt {n}: {:?}", w.callbacks.stats()), || {
            w.callbacks.stats().failed_attempts >= n
        })
        .await;
        if n < 10 {
            assert_eq!(w.callbacks.stats().suspended_addresses, 0, "suspended after {n}");
            w.clock.advance(Duration::from_secs(91)); // past any backoff (60 s cap, +50 % jitter)
        }
    }
    eventually("suspended", || w.callbacks.stats().suspended_addresses == 1).await;
    assert_eq!(w.callbacks.stats().suspensions, 1);
    rx.default_status.store(200, Ordering::SeqCst);
    // Within the 3 minutes nothing is tried, however long the backoff was.
    w.clock.advance(Duration::from_secs(170));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count(), 10);
    assert_eq!(w.callbacks.stats().delivered, 0);
    // Then one probe, which succeeds: the address is back.
    w.clock.advance(Duration::from_secs(11));
    eventually("delivered", || w.callbacks.stats().delivered == 1).await;
    let s = w.callbacks.stats();
    assert_eq!((s.resumed, s.suspended_addresses, rx.count()), (1, 0, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_delays_nobody_else() {
    let (dead, dead_base) = Receiver::start().await;
    dead.hang.store(true, Ordering::SeqCst);
    let (live, live_base) = Receiver::start().await;
    let w = World::new(fast(), MemoryStore::new());
    let n = 10_000;
    for i in 0..n {
        let d = w.device(DeliveryProfile::Drx);
        // Every tenth command calls back to the dead receiver.
        let url = if i % 10 == 0 { &dead_base } else { &live_base };
        w.command(&d, url, Some(0));
    }
    // Every create returned (dispatch never waited on a push) ...
    assert_eq!(w.core.stats().created, n);
    // ... and every push to the live receiver arrives while the dead one holds its lanes.
    eventually("9000 pushes", || live.count() == 9_000).await;
    assert_eq!(dead.count(), 0);
    let s = w.callbacks.stats();
    assert_eq!(s.delivered, 9_000);
    assert_eq!(s.queued, 1_000, "the dead receiver's pushes wait, none lost");
}

/// A store that holds every commit until released.
#[derive(Default)]
struct Gated {
    held: parking_lot::Mutex<Vec<Arc<CommitSignal>>>,
    inner: Option<Arc<MemoryStore>>,
}

impl CommandStore for Gated {
    fn submit(&self, batch: Vec<Mutation>) -> Commit {
        if let Some(m) = &self.inner {
            m.submit(batch).wait().unwrap();
        }
        let s = CommitSignal::new();
        self.held.lock().push(s.clone());
        Commit::pending(s)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_pushed_before_its_change_and_outbox_entry_are_durable() {
    let (rx, base) = Receiver::start().await;
    let mem = MemoryStore::new();
    let gated = Arc::new(Gated {
        held: Default::default(),
        inner: Some(mem.clone()),
    });
    let w = World::new(fast(), gated.clone());
    for s in gated.held.lock().drain(..) {
        s.complete(Ok(())); // registration of the app
    }
    let d = {
        let mut nd = NewDevice::new("n");
        nd.profile = DeliveryProfile::Drx;
        let r = w.core.register_device(&w.caller, nd).unwrap();
        for s in gated.held.lock().drain(..) {
            s.complete(Ok(()));
        }
        r.value.id
    };
    let mut c = NewCommand::new(d, "S", "M", "{}");
    c.callback_url = Some(base.clone());
    c.expire_time_s = Some(0);
    let receipt = w.core.create_command(&w.caller, c).unwrap();
    // The SENT change and its outbox entry went to the store in one batch.
    let snapshot = mem.snapshot();
    assert_eq!(snapshot.outbox.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count(), 0, "pushed before the batch was durable");
    for s in gated.held.lock().drain(..) {
        s.complete(Ok(()));
    }
    receipt.commit.await.unwrap();
    eventually("pushed", || rx.count() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_pending_at_a_restart_are_delivered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, base) = Receiver::start().await;
    rx.default_status.store(503, Ordering::SeqCst);
    let ids = {
        let (store, _) = devcmd_store::FjallStore::open(dir.path(), Default::default()).unwrap();
        let w = World::new(fast(), store.clone());
        let ids: Vec<CommandId> = (0..20)
            .map(|_| {
                let d = w.device(DeliveryProfile::Drx);
                w.command(&d, &base, Some(0))
            })
            .collect();
        // Lanes retry their oldest push first, so some of the 20 wait behind a failing one.
        eventually("pushes tried and refused", || w.callbacks.stats().failed_attempts >= 5).await;
        assert_eq!(w.callbacks.stats().delivered, 0);
        w.callbacks.shutdown();
        drop(w);
        store.close();
        ids
    };
    rx.default_status.store(200, Ordering::SeqCst);
    let before = rx.count();
    {
        let (store, recovered) = devcmd_store::FjallStore::open(dir.path(), Default::default()).unwrap();
        assert_eq!(recovered.outbox.len(), 20, "the SENT pushes are still owed");
        let w = World::new(fast(), store.clone());
        assert_eq!(w.callbacks.resume(&recovered.outbox), 20);
        eventually("delivered after restart", || w.callbacks.stats().delivered == 20).await;
        let late: Vec<Value> = rx.bodies()[before..].to_vec();
        for id in &ids {
            assert_eq!(pushes_of(&late, *id).len(), 1);
        }
        // Removals are written without waiting: give the writer a moment, then close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.callbacks.shutdown();
        drop(w);
        store.close();
    }
    let (_store, recovered) = devcmd_store::FjallStore::open(dir.path(), Default::default()).unwrap();
    assert!(recovered.outbox.is_empty(), "{} entries left", recovered.outbox.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lane_coalesces_intermediate_notifications_never_terminal_ones() {
    let (dead, base) = Receiver::start().await;
    dead.hang.store(true, Ordering::SeqCst);
    let store = MemoryStore::new();
    let config = CallbackConfig {
        lanes_per_address: 1,
        lane_queue_max: 2,
        ..fast()
    };
    let w = World::new(config, store.clone());
    let ids: Vec<CommandId> = (0..3)
        .map(|_| {
            let d = w.device(DeliveryProfile::Drx);
            w.command(&d, &base, Some(0))
        })
        .collect();
    // Lane: [A.SENT in flight, B.SENT, C.SENT]: past the bound, but no
    // command has a later notification, so nothing can be coalesced.
    eventually("three queued", || w.callbacks.stats().queued == 3).await;
    assert_eq!(w.callbacks.stats().coalesced, 0);
    w.advance(Duration::from_secs(181)); // all three TIMEOUT
    // B's and C's TIMEOUT supersede their SENT, which are dropped; A.SENT is
    // in flight and stays; terminal notifications are never dropped.
    // The lane holds 4 at several moments (A's TIMEOUT may arrive before B's
    // and C's, which then each drop a SENT): wait for the end state itself.
    eventually("queued and coalesced", || {
        let s = w.callbacks.stats();
        s.queued == 4 && s.coalesced == 2
    })
    .await;
    let s = w.callbacks.stats();
    assert_eq!(s.coalesced, 2);
    assert_eq!(s.parked, 0);
    // The outbox holds exactly what the lane holds: A.SENT and the three TIMEOUTs.
    let expect: Vec<Vec<u8>> = {
        let mut k: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| {
                let mut key = vec![devcmd_callback::OUTBOX_VERSION];
                key.extend_from_slice(&id.to_u128().to_be_bytes());
                key.push(CommandStatus::Timeout.rank());
                key
            })
            .collect();
        let mut a_sent = vec![devcmd_callback::OUTBOX_VERSION];
        a_sent.extend_from_slice(&ids[0].to_u128().to_be_bytes());
        a_sent.push(CommandStatus::Sent.rank());
        k.push(a_sent);
        k.sort();
        k
    };
    // Removals are written in batches (within 10 ms).
    let keys = || store.snapshot().outbox.into_keys().collect::<Vec<Vec<u8>>>();
    eventually("the outbox holds what the lane holds", || keys() == expect).await;
}
