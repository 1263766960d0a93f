//! Every transition of the command state machine, driven by the virtual clock.

mod common;

use std::time::Duration;

use common::{Harness, T0};
use devcmd_core::*;

use CommandStatus as S;

#[test]
fn cached_command_waits_for_a_sleeping_psm_device_then_completes() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let cmd = h.cached(&dev);
    assert_eq!(cmd.status, S::Pending);
    assert_eq!(cmd.expire_time_s, None);
    assert_eq!(cmd.max_retransmit, 3);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.status(cmd.id), S::Pending, "never sent while the device sleeps");
    assert!(h.sent_ids().is_empty());

    h.core.device_awake(&dev).unwrap().durable().unwrap();
    assert_eq!(h.sent_ids(), vec![(cmd.id, 0)]);
    let sent = h.get(cmd.id);
    assert_eq!(sent.status, S::Sent);
    assert_eq!(sent.platform_issued_time, Some(h.clock.now()));
    assert_eq!(sent.issued_times, 0);

    h.advance(Duration::from_millis(500));
    assert_eq!(
        h.core.ack(cmd.id).unwrap().durable().unwrap(),
        DeviceEventOutcome::Applied(S::Delivered)
    );
    h.advance(Duration::from_millis(500));
    let outcome = CommandOutcome {
        success: true,
        detail: Some(r#"{"light_state":1}"#.into()),
    };
    assert_eq!(
        h.core.result(cmd.id, outcome).unwrap().durable().unwrap(),
        DeviceEventOutcome::Applied(S::Successful)
    );

    let done = h.get(cmd.id);
    assert_eq!(done.status, S::Successful);
    assert_eq!(h.ms_since_t0(done.delivered_time.unwrap()), 3_600_500);
    assert_eq!(h.ms_since_t0(done.execute_time.unwrap()), 3_601_000);
    assert_eq!(done.result.as_deref(), Some(r#"{"light_state":1}"#));
    assert_eq!(
        h.changes_of(cmd.id),
        vec![
            (None, S::Pending),
            (Some(S::Pending), S::Sent),
            (Some(S::Sent), S::Delivered),
            (Some(S::Delivered), S::Successful)
        ]
    );
    assert_eq!(h.store.command(cmd.id), Some(done), "the store holds the latest record");
}

#[test]
fn drx_device_gets_a_cached_command_at_once() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Drx);
    let cmd = h.cached(&dev);
    assert_eq!(cmd.status, S::Sent, "a DRX device can always hear");
    assert_eq!(h.sent_ids(), vec![(cmd.id, 0)]);
}

#[test]
fn cached_commands_leave_in_fifo_order_one_in_flight() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let c: Vec<Command> = (0..3).map(|_| h.cached(&dev)).collect();
    assert_eq!(
        h.core.queued_commands(&h.caller, &dev).unwrap(),
        c.iter().map(|c| c.id).collect::<Vec<_>>()
    );

    h.core.device_awake(&dev).unwrap().durable().unwrap();
    assert_eq!(h.sent_ids(), vec![(c[0].id, 0)], "only the head goes out");
    assert_eq!(h.status(c[1].id), S::Pending);

    // The next goes when the previous is DELIVERED, not when it is SUCCESSFUL.
    h.core.ack(c[0].id).unwrap().durable().unwrap();
    assert_eq!(h.sent_ids(), vec![(c[1].id, 0)]);
    assert_eq!(h.status(c[2].id), S::Pending);

    // ...or when it ends TIMEOUT (the device is still in its active window? no: the
    // window is 30 s, so wake it again before the timeout releases the next one).
    h.advance(Duration::from_secs(170));
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    assert_eq!(h.status(c[2].id), S::Pending, "still one in flight");
    h.sent.try_iter().for_each(drop);
    h.advance(Duration::from_secs(10));
    assert_eq!(h.status(c[1].id), S::Timeout);
    assert_eq!(h.status(c[2].id), S::Sent);
    assert_eq!(h.sent_ids(), vec![(c[2].id, 0)]);
    h.core.check_invariants().unwrap();
}

#[test]
fn psm_device_stops_hearing_after_its_active_window() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let a = h.cached(&dev);
    let b = h.cached(&dev);
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    // a is never acknowledged: it times out after 180 s, long after the 30 s window.
    h.advance(Duration::from_secs(180));
    assert_eq!(h.status(a.id), S::Timeout);
    assert_eq!(
        h.status(b.id),
        S::Pending,
        "the device sleeps again, b waits for its next report"
    );
}

#[test]
fn immediate_command_to_a_sleeping_device_retransmits_then_times_out() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let cmd = h.immediate(&dev);
    assert_eq!(cmd.status, S::Sent, "the create response already says SENT");
    assert_eq!(cmd.expire_time_s, Some(0));
    assert_eq!(cmd.platform_issued_time, Some(cmd.creation_time));
    assert_eq!(h.sent_ids(), vec![(cmd.id, 0)]);

    // Resends at 2 s, 2+4 = 6 s and 6+8 = 14 s.
    let mut times = Vec::new();
    for _ in 0..200 {
        h.advance(Duration::from_secs(1));
        for (_, attempt) in h.sent_ids() {
            times.push((h.ms_since_t0(h.clock.now()), attempt));
        }
    }
    assert_eq!(times, vec![(2_000, 1), (6_000, 2), (14_000, 3)]);
    let done = h.get(cmd.id);
    assert_eq!(done.status, S::Timeout);
    assert_eq!(done.issued_times, 3);
    assert_eq!(
        h.ms_since_t0(done.terminal_time.unwrap()),
        180_000,
        "TIMEOUT 180 s after the first send"
    );
    assert_eq!(h.changes_of(cmd.id), vec![(None, S::Sent), (Some(S::Sent), S::Timeout)]);
}

#[test]
fn max_retransmit_zero_sends_once() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Drx);
    let mut req = NewCommand::new(dev.clone(), "S", "M", "{}");
    req.max_retransmit = Some(0);
    let cmd = h.create(req);
    h.at_ms(179_999);
    assert_eq!(h.status(cmd.id), S::Sent);
    h.at_ms(180_000);
    assert_eq!(h.status(cmd.id), S::Timeout);
    assert_eq!(h.sent_ids(), vec![(cmd.id, 0)]);
    assert_eq!(h.get(cmd.id).issued_times, 0);
}

#[test]
fn default_expiry_is_48_hours_and_an_expired_command_is_never_sent() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let cmd = h.cached(&dev);
    h.at_ms(172_799_999);
    assert_eq!(h.status(cmd.id), S::Pending);
    h.at_ms(172_800_000);
    let done = h.get(cmd.id);
    assert_eq!(done.status, S::Expired);
    assert_eq!(h.ms_since_t0(done.terminal_time.unwrap()), 172_800_000);
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    assert!(h.sent_ids().is_empty());
    assert_eq!(done.platform_issued_time, None);
    assert_eq!(
        h.changes_of(cmd.id),
        vec![(None, S::Pending), (Some(S::Pending), S::Expired)]
    );
}

#[test]
fn expiry_is_checked_before_issuing_even_if_its_deadline_has_not_fired() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let mut req = NewCommand::new(dev.clone(), "S", "M", "{}");
    req.expire_time_s = Some(60);
    let old = h.create(req);
    let fresh = h.cached(&dev);
    // The clock moves without a tick: the expiry deadline has not fired yet.
    h.clock.advance(Duration::from_secs(61));
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    assert_eq!(h.status(old.id), S::Expired);
    assert_eq!(h.status(fresh.id), S::Sent, "the next in line goes instead");
    assert_eq!(h.sent_ids(), vec![(fresh.id, 0)]);
}

#[test]
fn expiry_is_checked_before_every_resend() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Drx);
    let mut req = NewCommand::new(dev.clone(), "S", "M", "{}");
    req.expire_time_s = Some(5);
    let cmd = h.create(req);
    h.at_ms(200_000);
    let done = h.get(cmd.id);
    assert_eq!(
        h.sent_ids(),
        vec![(cmd.id, 0), (cmd.id, 1)],
        "resent at 2 s, not at 6 s (expired at 5 s)"
    );
    assert_eq!(
        done.status,
        S::Timeout,
        "already sent, so it times out rather than expiring"
    );
    assert_eq!(done.issued_times, 1);
}

#[test]
fn delivered_without_result_times_out_after_result_timeout() {
    let h = Harness::with_config(CoreConfig {
        shard_count: 2,
        result_timeout: Duration::from_secs(60),
        ..CoreConfig::default()
    });
    let dev = h.device(DeliveryProfile::Drx);
    let cmd = h.cached(&dev);
    h.at_ms(1_000);
    h.core.ack(cmd.id).unwrap().durable().unwrap();
    h.at_ms(60_999);
    assert_eq!(h.status(cmd.id), S::Delivered);
    h.at_ms(61_000);
    assert_eq!(h.status(cmd.id), S::Timeout);
    assert_eq!(h.sent_ids(), vec![(cmd.id, 0)], "no resend once delivered");
}

#[test]
fn a_result_while_sent_implies_the_ack() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Drx);
    let cmd = h.cached(&dev);
    let out = h
        .core
        .result(
            cmd.id,
            CommandOutcome {
                success: false,
                detail: None,
            },
        )
        .unwrap()
        .durable()
        .unwrap();
    assert_eq!(out, DeviceEventOutcome::Applied(S::Failed));
    let done = h.get(cmd.id);
    assert!(done.delivered_time.is_some());
    assert_eq!(
        h.changes_of(cmd.id),
        vec![
            (None, S::Pending),
            (Some(S::Pending), S::Sent),
            (Some(S::Sent), S::Delivered),
            (Some(S::Delivered), S::Failed)
        ]
    );
}

#[test]
fn late_and_duplicate_device_events_are_ignored_and_counted() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Drx);
    let cmd = h.cached(&dev);
    h.core.ack(cmd.id).unwrap().durable().unwrap();
    assert_eq!(
        h.core.ack(cmd.id).unwrap().durable().unwrap(),
        DeviceEventOutcome::Ignored(S::Delivered)
    );
    h.core
        .result(
            cmd.id,
            CommandOutcome {
                success: true,
                detail: None,
            },
        )
        .unwrap()
        .durable()
        .unwrap();
    let late = h
        .core
        .result(
            cmd.id,
            CommandOutcome {
                success: false,
                detail: None,
            },
        )
        .unwrap()
        .durable()
        .unwrap();
    assert_eq!(late, DeviceEventOutcome::Ignored(S::Successful));
    assert_eq!(
        h.core.ack(cmd.id).unwrap().durable().unwrap(),
        DeviceEventOutcome::Ignored(S::Successful)
    );
    assert_eq!(h.status(cmd.id), S::Successful);
    assert_eq!(h.core.stats().late_events_ignored, 3);

    // An ACK for a command that was never sent changes nothing either.
    let psm = h.device(DeliveryProfile::Psm);
    let pending = h.cached(&psm);
    assert_eq!(
        h.core.ack(pending.id).unwrap().durable().unwrap(),
        DeviceEventOutcome::Ignored(S::Pending)
    );
    assert_eq!(h.status(pending.id), S::Pending);

    let unknown = CommandId::compose(0, 12345, 1);
    assert_eq!(h.core.ack(unknown).unwrap_err(), DeviceEventError::UnknownCommand);
    assert_eq!(
        h.core.device_awake(&DeviceId::new("nope").unwrap()).unwrap_err(),
        DeviceEventError::UnknownDevice
    );
}

#[test]
fn cancel_succeeds_only_from_pending() {
    let h = Harness::new();
    let psm = h.device(DeliveryProfile::Psm);
    let pending = h.cached(&psm);
    let cancelled = h.core.cancel_command(&h.caller, pending.id).unwrap().durable().unwrap();
    assert_eq!(cancelled.status, S::Canceled);
    assert_eq!(h.core.stats().live, 0);

    let drx = h.device(DeliveryProfile::Drx);
    let sent = h.cached(&drx);
    let refused = |id| {
        h.core
            .cancel_command(&h.caller, id)
            .map(|r| r.value.status)
            .unwrap_err()
    };
    assert_eq!(refused(sent.id), CancelError::NotCancellable { status: S::Sent });
    h.core.ack(sent.id).unwrap().durable().unwrap();
    assert_eq!(refused(sent.id), CancelError::NotCancellable { status: S::Delivered });
    h.core
        .result(
            sent.id,
            CommandOutcome {
                success: true,
                detail: None,
            },
        )
        .unwrap()
        .durable()
        .unwrap();
    assert_eq!(refused(sent.id), CancelError::NotCancellable { status: S::Successful });
    assert_eq!(refused(pending.id), CancelError::NotCancellable { status: S::Canceled });
    let expired = {
        let mut req = NewCommand::new(psm.clone(), "S", "M", "{}");
        req.expire_time_s = Some(1);
        h.create(req)
    };
    h.advance(Duration::from_secs(2));
    assert_eq!(refused(expired.id), CancelError::NotCancellable { status: S::Expired });
    assert_eq!(refused(CommandId::compose(1, 999, 3)), CancelError::CommandNotFound);
    assert_eq!(h.core.stats().live, 0);
    h.core.check_invariants().unwrap();
}

#[test]
fn a_cancelled_command_leaves_the_middle_of_the_queue() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let c: Vec<Command> = (0..3).map(|_| h.cached(&dev)).collect();
    h.core.cancel_command(&h.caller, c[1].id).unwrap().durable().unwrap();
    assert_eq!(h.core.queued_commands(&h.caller, &dev).unwrap(), vec![c[0].id, c[2].id]);
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    h.core.ack(c[0].id).unwrap().durable().unwrap();
    assert_eq!(h.sent_ids(), vec![(c[0].id, 0), (c[2].id, 0)]);
    h.core.check_invariants().unwrap();
}

#[test]
fn removing_a_device_cancels_pending_and_times_out_in_flight() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let a = h.cached(&dev);
    let b = h.cached(&dev);
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    h.core.remove_device(&h.caller, &dev).unwrap().durable().unwrap();
    assert_eq!(h.status(a.id), S::Timeout);
    assert_eq!(h.status(b.id), S::Canceled);
    assert!(!h.store.snapshot().devices.contains_key(&dev));
    let again = h
        .core
        .create_command(&h.caller, NewCommand::new(dev.clone(), "S", "M", "{}"));
    assert!(matches!(again, Err(CreateError::DeviceNotFound)));
    assert_eq!(h.core.stats().live, 0);
    h.core.check_invariants().unwrap();
}

#[test]
fn times_are_platform_times() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    h.at_ms(42_000);
    let cmd = h.cached(&dev);
    assert_eq!(cmd.creation_time, Timestamp::from_millis(T0 + 42_000));
}

/// Regression: a freed slot's next command started its timer generations
/// from 0, so a stale deadline of the slot's earlier command (cancelled
/// lazily, still in the heap) could match and fire the new command early.
/// Slots are freed after retention, and with a history after a grace of
/// seconds, which made this likely.
#[test]
fn a_reused_slot_never_fires_its_earlier_commands_deadlines() {
    let h = Harness::with_config(CoreConfig {
        shard_count: 1,
        id_seed: Some(7),
        retention: Duration::from_secs(1),
        sweep_interval: Duration::from_secs(1),
        ..CoreConfig::default()
    });
    // Live deadlines keep the heap from compacting the stale ones away.
    let idle = h.device(DeliveryProfile::Psm);
    for _ in 0..8 {
        h.cached(&idle);
    }
    // The first command at the slot is delivered (result deadline T0+180 s,
    // its third timer generation), then completes: that deadline stays in
    // the heap, stale.
    let psm = h.device(DeliveryProfile::Psm);
    let first = h.cached(&psm);
    h.core.device_awake(&psm).unwrap().durable().unwrap();
    h.core.ack(first.id).unwrap().durable().unwrap();
    let ok = CommandOutcome {
        success: true,
        detail: None,
    };
    h.core.result(first.id, ok).unwrap().durable().unwrap();
    h.advance(Duration::from_secs(3));
    assert_eq!(h.core.stats().swept, 1, "the finished command left memory");
    // The second is delivered at T0+3 s: its result deadline is T0+183 s,
    // also its third generation.
    let drx = h.device(DeliveryProfile::Drx);
    let second = h.cached(&drx);
    assert_eq!(second.id.slot(), first.id.slot(), "the slot is reused");
    h.core.ack(second.id).unwrap().durable().unwrap();
    h.at_ms(181_000);
    assert_eq!(
        h.core.command(&h.caller, second.id).map(|c| c.status),
        Ok(S::Delivered),
        "the first command's deadline is not the second's"
    );
    h.at_ms(183_500);
    assert_eq!(h.status(second.id), S::Timeout);
}
