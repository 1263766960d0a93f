//! Cancel tasks: WAITTING → RUNNING → SUCCESS / PART_SUCCESS / FAILED.

mod common;

use common::Harness;
use devcmd_core::*;

#[test]
fn cancels_every_pending_command_of_the_device() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let other = h.device(DeliveryProfile::Psm);
    let c: Vec<Command> = (0..3).map(|_| h.cached(&dev)).collect();
    let untouched = h.cached(&other);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    assert_eq!(task.status, CancelTaskStatus::Waitting);
    assert_eq!(task.total_count(), 3);
    assert!(task.commands.iter().all(|c| c.status == CommandStatus::Pending));
    assert_eq!(h.store.snapshot().tasks[&task.id].status, CancelTaskStatus::Waitting);

    h.core.tick();
    let done = h.core.cancel_task(&h.caller, task.id).unwrap();
    assert_eq!(done.status, CancelTaskStatus::Success);
    assert_eq!(
        done.commands.iter().map(|c| c.id).collect::<Vec<_>>(),
        c.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    assert!(done.commands.iter().all(|c| c.status == CommandStatus::Canceled));
    assert!(done.finish_time.is_some());
    assert_eq!(h.status(untouched.id), CommandStatus::Pending);
    assert_eq!(h.store.snapshot().tasks[&task.id].status, CancelTaskStatus::Success);
    assert!(h.core.queued_commands(&h.caller, &dev).unwrap().is_empty());
    h.core.check_invariants().unwrap();
}

#[test]
fn part_success_when_a_listed_command_was_issued_in_between() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let a = h.cached(&dev);
    let b = h.cached(&dev);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    h.core.device_awake(&dev).unwrap().durable().unwrap(); // a is issued before the task runs
    h.core.tick();
    let done = h.core.cancel_task(&h.caller, task.id).unwrap();
    assert_eq!(done.status, CancelTaskStatus::PartSuccess);
    assert_eq!(h.status(a.id), CommandStatus::Sent);
    assert_eq!(h.status(b.id), CommandStatus::Canceled);
}

#[test]
fn failed_when_nothing_could_be_cancelled() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let a = h.cached(&dev);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    h.core.device_awake(&dev).unwrap().durable().unwrap();
    h.core.tick();
    assert_eq!(
        h.core.cancel_task(&h.caller, task.id).unwrap().status,
        CancelTaskStatus::Failed
    );
    assert_eq!(h.status(a.id), CommandStatus::Sent);
}

#[test]
fn a_task_over_nothing_succeeds_with_zero() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    assert_eq!(task.total_count(), 0);
    h.core.tick();
    assert_eq!(
        h.core.cancel_task(&h.caller, task.id).unwrap().status,
        CancelTaskStatus::Success
    );
}

#[test]
fn commands_created_before_the_task_runs_are_cancelled_too() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let a = h.cached(&dev);
    let task = h.core.create_cancel_task(&h.caller, &dev).unwrap().durable().unwrap();
    let late = h.cached(&dev);
    h.core.tick();
    let done = h.core.cancel_task(&h.caller, task.id).unwrap();
    assert_eq!(done.status, CancelTaskStatus::Success);
    assert_eq!(done.total_count(), 2);
    assert_eq!(h.status(a.id), CommandStatus::Canceled);
    assert_eq!(h.status(late.id), CommandStatus::Canceled);
}

#[test]
fn tasks_are_queryable_by_id_device_status_and_window() {
    let h = Harness::new();
    let d1 = h.device(DeliveryProfile::Psm);
    let d2 = h.device(DeliveryProfile::Psm);
    h.cached(&d1);
    let t1 = h.core.create_cancel_task(&h.caller, &d1).unwrap().durable().unwrap();
    h.core.tick();
    h.clock.advance(std::time::Duration::from_millis(1));
    let t2 = h.core.create_cancel_task(&h.caller, &d2).unwrap().durable().unwrap();
    let all = h.core.list_cancel_tasks(&h.caller, &TaskQuery::default()).unwrap();
    assert_eq!(all.total_size, 2);
    assert_eq!(all.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![t1.id, t2.id]);
    let by_device = h.core.list_cancel_tasks(
        &h.caller,
        &TaskQuery {
            device_id: Some(d2.clone()),
            ..TaskQuery::default()
        },
    );
    assert_eq!(
        by_device.unwrap().items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![t2.id]
    );
    let waiting = TaskQuery {
        status: Some(CancelTaskStatus::Waitting),
        ..TaskQuery::default()
    };
    assert_eq!(
        h.core.list_cancel_tasks(&h.caller, &waiting).unwrap().items[0].id,
        t2.id
    );
    let by_id = TaskQuery {
        task_id: Some(t1.id),
        ..TaskQuery::default()
    };
    assert_eq!(h.core.list_cancel_tasks(&h.caller, &by_id).unwrap().total_size, 1);
    let later = TaskQuery {
        from: Some(h.clock.now().saturating_add(std::time::Duration::from_secs(1))),
        ..TaskQuery::default()
    };
    assert_eq!(h.core.list_cancel_tasks(&h.caller, &later).unwrap().total_size, 0);
    let paged = TaskQuery {
        page_no: 1,
        page_size: 1,
        ..TaskQuery::default()
    };
    let p = h.core.list_cancel_tasks(&h.caller, &paged).unwrap();
    assert_eq!((p.total_size, p.items.len(), p.items[0].id), (2, 1, t2.id));
    assert_eq!(
        h.core.cancel_task(&h.caller, TaskId::compose(0, 77, 1)).unwrap_err(),
        QueryError::TaskNotFound
    );
    assert_eq!(
        h.core
            .create_cancel_task(&h.caller, &DeviceId::new("ghost").unwrap())
            .unwrap_err(),
        CancelTaskError::DeviceNotFound
    );
}
