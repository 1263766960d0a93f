//! Every text parser of the core on arbitrary text: no panic, and what parses
//! prints back to the same text.
#![no_main]

use devcmd_core::{CancelTaskStatus, CommandId, CommandStatus, DeliveryProfile, DeviceId, TaskId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = text.parse::<CommandId>() {
        assert_eq!(id.to_string(), text);
        assert_eq!(CommandId::compose(id.shard(), id.slot(), id.to_u128()), id);
    }
    if let Ok(id) = text.parse::<TaskId>() {
        assert_eq!(id.to_string(), text);
    }
    if let Ok(id) = text.parse::<DeviceId>() {
        assert_eq!(id.to_string(), text);
        assert_eq!(id.stable_hash(), text.parse::<DeviceId>().unwrap().stable_hash());
    }
    if let Ok(s) = text.parse::<CommandStatus>() {
        assert_eq!(s.as_str(), text);
    }
    if let Ok(s) = text.parse::<CancelTaskStatus>() {
        assert_eq!(s.as_str(), text);
    }
    if let Ok(p) = text.parse::<DeliveryProfile>() {
        assert_eq!(p.as_str(), text);
    }
});
