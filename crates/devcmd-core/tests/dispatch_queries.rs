//! Queries: by id, by app across shards with pagination, by device, by window; retention.

mod common;

use std::time::Duration;

use common::{Harness, T0};
use devcmd_core::*;

#[test]
fn pages_over_all_shards_match_a_sorted_list() {
    let h = Harness::with_config(CoreConfig {
        shard_count: 16,
        id_seed: Some(3),
        ..CoreConfig::default()
    });
    let devs: Vec<DeviceId> = (0..40).map(|_| h.device(DeliveryProfile::Psm)).collect();
    let mut made = Vec::new();
    // Several commands per millisecond, over many devices and shards.
    for i in 0..600u64 {
        if i % 7 == 0 {
            h.clock.advance(Duration::from_millis(1 + i % 3));
        }
        made.push(h.cached(&devs[(i * 13 % 40) as usize]));
    }
    let all = h.core.list_commands(&h.caller, &CommandQuery::default()).unwrap();
    assert_eq!(all.total_size, 600);
    assert_eq!(all.items.len(), 600);
    assert!(
        all.items.windows(2).all(|w| w[0].creation_time <= w[1].creation_time),
        "oldest first"
    );
    let mut ids: Vec<_> = all.items.iter().map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 600, "no duplicates");

    for page_size in [1u32, 7, 50, 599, 1000] {
        let mut paged = Vec::new();
        let mut page_no = 0;
        loop {
            let q = CommandQuery {
                page_no,
                page_size,
                ..CommandQuery::default()
            };
            let p = h.core.list_commands(&h.caller, &q).unwrap();
            assert_eq!(p.total_size, 600);
            if p.items.is_empty() {
                break;
            }
            paged.extend(p.items.into_iter().map(|c| c.id));
            page_no += 1;
        }
        assert_eq!(
            paged,
            all.items.iter().map(|c| c.id).collect::<Vec<_>>(),
            "page size {page_size}"
        );
    }

    // A window [from, to).
    let from = made[100].creation_time;
    let to = made[500].creation_time;
    let q = CommandQuery {
        from: Some(from),
        to: Some(to),
        page_size: 1000,
        ..CommandQuery::default()
    };
    let w = h.core.list_commands(&h.caller, &q).unwrap();
    let expected: Vec<_> = all
        .items
        .iter()
        .filter(|c| c.creation_time >= from && c.creation_time < to)
        .map(|c| c.id)
        .collect();
    assert_eq!(w.items.iter().map(|c| c.id).collect::<Vec<_>>(), expected);
    assert_eq!(w.total_size as usize, expected.len());
}

#[test]
fn device_filter_and_bad_parameters() {
    let h = Harness::new();
    let d1 = h.device(DeliveryProfile::Psm);
    let d2 = h.device(DeliveryProfile::Psm);
    let a = h.cached(&d1);
    h.cached(&d2);
    let b = h.cached(&d1);
    let q = CommandQuery {
        device_id: Some(d1.clone()),
        ..CommandQuery::default()
    };
    let p = h.core.list_commands(&h.caller, &q).unwrap();
    assert_eq!(p.items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![a.id, b.id]);
    let second = CommandQuery {
        device_id: Some(d1.clone()),
        page_no: 1,
        page_size: 1,
        ..CommandQuery::default()
    };
    let p = h.core.list_commands(&h.caller, &second).unwrap();
    assert_eq!((p.total_size, p.items[0].id), (2, b.id));
    let far = CommandQuery {
        device_id: Some(d1),
        page_no: u32::MAX,
        page_size: 1000,
        ..CommandQuery::default()
    };
    assert!(h.core.list_commands(&h.caller, &far).unwrap().items.is_empty());
    let ghost = CommandQuery {
        device_id: Some(DeviceId::new("ghost").unwrap()),
        ..CommandQuery::default()
    };
    assert_eq!(
        h.core.list_commands(&h.caller, &ghost).unwrap_err(),
        QueryError::DeviceNotFound
    );
    for page_size in [0, 1001] {
        let bad = CommandQuery {
            page_size,
            ..CommandQuery::default()
        };
        assert!(matches!(
            h.core.list_commands(&h.caller, &bad),
            Err(QueryError::Invalid(_))
        ));
    }
    let other = Caller::own(AppId::new("nobody").unwrap());
    assert_eq!(
        h.core
            .list_commands(&other, &CommandQuery::default())
            .unwrap()
            .total_size,
        0
    );
}

#[test]
fn terminal_commands_stay_queryable_for_the_retention_then_leave() {
    let h = Harness::with_config(CoreConfig {
        shard_count: 2,
        retention: Duration::from_secs(3600),
        ..CoreConfig::default()
    });
    let dev = h.device(DeliveryProfile::Psm);
    let done = h.cached(&dev);
    let live = h.cached(&dev);
    h.core.cancel_command(&h.caller, done.id).unwrap().durable().unwrap();
    h.at_ms(3_599_000);
    assert_eq!(h.status(done.id), CommandStatus::Canceled);
    h.at_ms(3_600_000 + 60_000);
    assert_eq!(
        h.core.command(&h.caller, done.id).unwrap_err(),
        QueryError::CommandNotFound
    );
    assert_eq!(h.status(live.id), CommandStatus::Pending, "live commands never leave");
    let p = h.core.list_commands(&h.caller, &CommandQuery::default()).unwrap();
    assert_eq!(p.items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![live.id]);
    assert_eq!(h.core.stats().swept, 1);
    assert_eq!(h.store.command(done.id), None, "the store forgets it too");
    assert!(h.store.command(live.id).is_some());
    // The freed slot is reused, and the old id does not find the new command.
    let next = h.cached(&dev);
    assert_eq!(next.id.slot(), done.id.slot());
    assert_eq!(
        h.core.command(&h.caller, done.id).unwrap_err(),
        QueryError::CommandNotFound
    );
    assert_eq!(h.ms_since_t0(next.creation_time), 3_660_000);
    let _ = T0;
}

#[test]
fn live_commands_are_counted_by_status_and_devices_by_depth() {
    let h = Harness::new();
    let _idle = h.device(DeliveryProfile::Psm);
    let two = h.device(DeliveryProfile::Psm);
    let five = h.device(DeliveryProfile::Drx);
    for _ in 0..2 {
        h.cached(&two);
    }
    let first = h.cached(&five); // a DRX device hears at once: SENT
    for _ in 0..4 {
        h.cached(&five);
    }
    h.core.ack(first.id).unwrap().durable().unwrap(); // DELIVERED; the next goes SENT
    let s = h.core.stats();
    // PENDING: 2 + 3; SENT: 1; DELIVERED: 1.
    assert_eq!(s.live_by_status, [5, 1, 1]);
    assert_eq!(s.live, 7);
    assert_eq!(h.core.device_depths(&[0, 1, 4]), [1, 0, 1, 1]);
    h.core.check_invariants().unwrap();
}
