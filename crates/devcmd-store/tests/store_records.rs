//! Every record type round-trips through its encoding; corrupt bytes give an error, never a panic.

use std::sync::Arc;

use devcmd_core::*;
use devcmd_store::*;
use proptest::prelude::*;

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9_{{}}\":,é ]{{1,{max}}}")).unwrap()
}

fn ascii(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9_-]{{1,{max}}}")).unwrap()
}

fn opt_time() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of(any::<u64>().prop_map(Timestamp::from_millis))
}

prop_compose! {
    fn command()(
        id in any::<u128>(),
        app in text(40),
        device in prop_oneof![Just("92d3f8da-200a-4143-8d0d-591a7e11de6c".to_string()), text(64)],
        service in text(64), method in text(100), paras in text(300),
        callback in proptest::option::of(text(200)),
        expire in proptest::option::of(any::<u32>()),
        max_retransmit in 0u8..=3,
        status in 0usize..8,
        result in proptest::option::of(text(100)),
        created in any::<u64>(),
        times in (opt_time(), opt_time(), opt_time(), opt_time()),
        issued_times in 0u8..=3,
    ) -> Option<Command> {
        let body = CommandBody::new(&service, &method, &paras).ok()?;
        Some(Command {
            id: CommandId::from_u128(id),
            app_id: AppId::new(&app).ok()?,
            device_id: DeviceId::new(&device).ok()?,
            body,
            callback_url: callback.map(|c| Arc::from(c.as_str())),
            expire_time_s: expire,
            max_retransmit,
            status: CommandStatus::ALL[status],
            result: result.map(|r| Arc::from(r.as_str())),
            creation_time: Timestamp::from_millis(created),
            platform_issued_time: times.0,
            delivered_time: times.1,
            execute_time: times.2,
            terminal_time: times.3,
            issued_times,
        })
    }
}

proptest! {
    #[test]
    fn commands_round_trip(c in command()) {
        if let Some(c) = c {
            let bytes = encode_command(&c);
            prop_assert_eq!(decode_command(&bytes).unwrap(), c);
            // Every strict prefix is refused.
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                prop_assert!(decode_command(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn apps_round_trip(id in text(50), hash in text(80), quota in proptest::option::of((any::<u32>(), any::<u32>())), others in proptest::collection::vec(text(20), 0..5)) {
        let app = App {
            id: AppId::new(&id).unwrap(),
            secret_hash: hash,
            quota: quota.map(|(calls, period_s)| Quota { calls, period_s }),
            authorized_apps: others.iter().map(|o| AppId::new(o).unwrap()).collect(),
        };
        prop_assert_eq!(decode_app(&encode_app(&app)).unwrap(), app);
    }

    #[test]
    fn devices_round_trip(id in ascii(64), node in text(30), owner in text(30), p in 0usize..3) {
        let device = Device {
            id: DeviceId::new(&id).unwrap(),
            node_id: node,
            owner: AppId::new(&owner).unwrap(),
            profile: [DeliveryProfile::Psm, DeliveryProfile::Drx, DeliveryProfile::Edrx][p],
        };
        prop_assert_eq!(decode_device(&encode_device(&device)).unwrap(), device);
    }

    #[test]
    fn tasks_round_trip(id in any::<u128>(), app in text(30), dev in ascii(64), status in 0usize..5, created in any::<u64>(), finish in opt_time(), ids in proptest::collection::vec(any::<u128>(), 0..20)) {
        let t = CancelTaskRecord {
            id: TaskId::from_u128(id),
            app_id: AppId::new(&app).unwrap(),
            device_id: DeviceId::new(&dev).unwrap(),
            status: CancelTaskStatus::ALL[status],
            creation_time: Timestamp::from_millis(created),
            finish_time: finish,
            command_ids: ids.into_iter().map(CommandId::from_u128).collect(),
        };
        prop_assert_eq!(decode_task(&encode_task(&t)).unwrap(), t);
    }

    #[test]
    fn history_keys_and_values_round_trip_and_sort_by_time(
        app in text(40),
        dev in ascii(64),
        t in any::<u64>(),
        t2 in any::<u64>(),
        id in any::<u128>(),
        bucket in any::<u64>(),
    ) {
        let (Ok(app), Ok(dev)) = (AppId::new(&app), DeviceId::new(&dev)) else { return Ok(()) };
        let (ts, id) = (Timestamp::from_millis(t), CommandId::from_u128(id));
        prop_assert_eq!(decode_ended_key(&ended_key(ts, id)).unwrap(), (ts, id));
        prop_assert_eq!(decode_ended_value(&ended_value(&app, &dev, ts)).unwrap(), (app.clone(), dev.clone(), ts));
        prop_assert_eq!(decode_count_key(&count_key(&app, bucket)).unwrap(), (app.clone(), bucket));
        prop_assert_eq!(decode_index_tail(&by_device_key(&dev, ts, id)).unwrap(), (ts, id));
        // Keys of one app or device sort by creation time, then id.
        let other = Timestamp::from_millis(t2);
        prop_assert_eq!(by_app_key(&app, ts, id) < by_app_key(&app, other, id), ts < other);
        prop_assert_eq!(ended_key(ts, id) < ended_key(other, id), ts < other);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_command(&bytes);
        let _ = decode_app(&bytes);
        let _ = decode_device(&bytes);
        let _ = decode_task(&bytes);
        let _ = decode_by_app_key(&bytes);
        let _ = decode_index_tail(&bytes);
        let _ = decode_ended_key(&bytes);
        let _ = decode_ended_value(&bytes);
        let _ = decode_count_key(&bytes);
    }
}

#[test]
fn a_wrong_version_or_kind_is_named() {
    let app = App {
        id: AppId::new("a").unwrap(),
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    };
    let mut bytes = encode_app(&app);
    bytes[0] = 9;
    assert_eq!(decode_app(&bytes).unwrap_err().what, "unknown version");
    let bytes = encode_app(&app);
    assert_eq!(decode_device(&bytes).unwrap_err().what, "wrong record kind");
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(decode_app(&long).unwrap_err().what, "trailing bytes");
}
