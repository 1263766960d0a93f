//! Limits with defined behaviour: per-device and overall live commands.

mod common;

use common::Harness;
use devcmd_core::*;

#[test]
fn one_command_over_the_device_bound_is_refused_and_handed_back() {
    let h = Harness::with_config(CoreConfig {
        shard_count: 2,
        device_live_max: 3,
        ..CoreConfig::default()
    });
    let dev = h.device(DeliveryProfile::Psm);
    let made: Vec<Command> = (0..3).map(|_| h.cached(&dev)).collect();
    let req = NewCommand::new(dev.clone(), "S", "ONE-TOO-MANY", "{}");
    match h.core.create_command(&h.caller, req.clone()) {
        Err(CreateError::DeviceQueueFull { limit, request }) => {
            assert_eq!(limit, 3);
            assert_eq!(*request, req, "the refused request comes back untouched");
        }
        other => panic!("expected DeviceQueueFull, got {other:?}"),
    }
    assert_eq!(h.core.stats().live, 3);
    assert_eq!(h.core.queued_commands(&h.caller, &dev).unwrap().len(), 3);
    assert_eq!(h.store.snapshot().commands.len(), 3, "nothing stored for the refusal");

    // A terminal command frees its place.
    h.core.cancel_command(&h.caller, made[0].id).unwrap().durable().unwrap();
    h.create(req);
    h.core.check_invariants().unwrap();
}

#[test]
fn the_overall_bound_gives_overloaded() {
    let h = Harness::with_config(CoreConfig {
        shard_count: 1,
        live_max: 5,
        ..CoreConfig::default()
    });
    let devs: Vec<DeviceId> = (0..3).map(|_| h.device(DeliveryProfile::Psm)).collect();
    for i in 0..5 {
        h.cached(&devs[i % 3]);
    }
    let req = NewCommand::new(devs[2].clone(), "S", "M", "{}");
    assert!(matches!(
        h.core.create_command(&h.caller, req),
        Err(CreateError::Overloaded { .. })
    ));
    assert_eq!(h.core.stats().live, 5);
}

#[test]
fn a_full_device_link_loses_the_send_and_the_resend_covers_it() {
    let clock = VirtualClock::new(Timestamp::from_millis(common::T0));
    let (link, rx) = ChannelLink::bounded(1);
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 1,
        ..CoreConfig::default()
    })
    .clock(std::sync::Arc::new(clock.clone()))
    .link(std::sync::Arc::new(link))
    .build()
    .unwrap();
    let app = AppId::new("a").unwrap();
    core.add_app(common::app_record(&app)).unwrap().durable().unwrap();
    let caller = Caller::own(app);
    let mut req = NewDevice::new("n");
    req.profile = DeliveryProfile::Drx;
    let dev = core.register_device(&caller, req).unwrap().durable().unwrap().id;
    let a = core
        .create_command(&caller, NewCommand::new(dev.clone(), "S", "M", "{}"))
        .unwrap()
        .durable()
        .unwrap();
    let mut imm = NewCommand::new(dev.clone(), "S", "M", "{}");
    imm.expire_time_s = Some(0);
    let b = core.create_command(&caller, imm).unwrap().durable().unwrap();
    assert_eq!(
        b.status,
        CommandStatus::Sent,
        "the link was full, the command is SENT all the same"
    );
    assert_eq!(rx.try_recv().unwrap().command_id, a.id);
    assert!(rx.try_recv().is_err());
    core.ack(a.id).unwrap().durable().unwrap();
    core.advance(&clock, std::time::Duration::from_secs(2));
    let resent: Vec<_> = rx.try_iter().map(|i| (i.command_id, i.attempt)).collect();
    assert_eq!(resent, vec![(b.id, 1)]);
}
