//! The parsers at the edges that are not HTTP: MQTT device messages and
//! topics, callback outbox entries read back from the store, callback URLs.
//! Arbitrary bytes: no panic, and what parses holds together.
#![no_main]

use arbitrary::Arbitrary;
use devcmd_callback::{Notification, address_of};
use devcmd_device::{DeviceMessage, data_topic, device_of_data_topic, parse_device_message};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    DeviceMessage(&'a [u8]),
    Topic(&'a str),
    Outbox { key: &'a [u8], value: &'a [u8] },
    Url(&'a str),
}

fuzz_target!(|input: Input<'_>| match input {
    Input::DeviceMessage(b) => {
        if let Ok(DeviceMessage::Response { body: Some(body), .. }) = parse_device_message(b) {
            assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
        }
    }
    Input::Topic(t) => {
        if let Some(d) = device_of_data_topic(t) {
            assert_eq!(device_of_data_topic(&data_topic(&d)), Some(d));
        }
    }
    Input::Outbox { key, value } => {
        if let Ok(n) = Notification::decode(key, value) {
            // What was read back writes back to the same entry.
            assert_eq!(Notification::decode(&n.key(), &n.encode_value()), Ok(n.clone()));
            assert!(serde_json::from_slice::<serde_json::Value>(&n.body()).is_ok());
        }
    }
    Input::Url(u) => {
        if let Ok(a) = address_of(u) {
            assert!(a.starts_with("http://") || a.starts_with("https://"));
        }
    }
});
