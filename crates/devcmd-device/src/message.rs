//! The platform's MQTT device interface: topics and message bodies.
//!
//! - A device reports on `/huawei/v1/devices/{deviceId}/data/json` with
//!   `{"msgType":"deviceReq","data":[{"serviceId":…,"serviceData":{…}}]}`
//!   (it is awake), and answers a command there with
//!   `{"msgType":"deviceRsp","mid":…,"errcode":0|n,"body":{…}}`.
//! - Commands go to `/huawei/v1/devices/{deviceId}/command/json` as
//!   `{"msgType":"cloudReq","serviceId":…,"cmd":…,"paras":{…},"hasMore":0|1,"mid":…}`.

use devcmd_core::{CommandBody, DeviceId};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The subscription covering every device's data topic.
pub const DATA_TOPIC_FILTER: &str = "/huawei/v1/devices/+/data/json";

/// A device's command topic.
pub fn command_topic(device: &DeviceId) -> String {
    format!("/huawei/v1/devices/{device}/command/json")
}

/// A device's data topic.
pub fn data_topic(device: &DeviceId) -> String {
    format!("/huawei/v1/devices/{device}/data/json")
}

/// The device a data topic belongs to.
pub fn device_of_data_topic(topic: &str) -> Option<DeviceId> {
    let id = topic.strip_prefix("/huawei/v1/devices/")?.strip_suffix("/data/json")?;
    if id.contains('/') {
        return None;
    }
    DeviceId::new(id).ok()
}

/// What a device said on its data topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMessage {
    /// A data report: the device is awake.
    Report,
    /// The answer to the command sent with `mid`: `errcode` 0 is success;
    /// `body` is the device's result as raw JSON.
    Response {
        /// The message id of the command.
        mid: u32,
        /// 0 for success, anything else for failure.
        errcode: i64,
        /// The result fields, raw JSON, if any.
        body: Option<String>,
    },
}

/// Why a device message was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed device message: {0}")]
pub struct Malformed(pub &'static str);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw<'a> {
    msg_type: &'a str,
    #[serde(default)]
    mid: Option<i64>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Parses a message from a device's data topic.
pub fn parse_device_message(payload: &[u8]) -> Result<DeviceMessage, Malformed> {
    let raw: Raw<'_> = serde_json::from_slice(payload).map_err(|_| Malformed("not a JSON object with msgType"))?;
    match raw.msg_type {
        "deviceReq" => {
            if raw.data.is_some_and(|d| !d.get().starts_with('[')) {
                return Err(Malformed("data must be an array"));
            }
            Ok(DeviceMessage::Report)
        }
        "deviceRsp" => {
            let mid = raw
                .mid
                .and_then(|m| u32::try_from(m).ok())
                .ok_or(Malformed("deviceRsp needs mid, 0..=4294967295"))?;
            let errcode = raw.errcode.ok_or(Malformed("deviceRsp needs errcode"))?;
            let body = raw.body.filter(|b| b.get() != "null").map(|b| b.get().to_owned());
            Ok(DeviceMessage::Response { mid, errcode, body })
        }
        _ => Err(Malformed("unknown msgType")),
    }
}

/// The `cloudReq` body of a command. `paras` is the command's raw JSON text
/// (an object, as the API accepts it).
pub fn cloud_request(body: &CommandBody, mid: u32, has_more: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + body.paras().len());
    out.extend_from_slice(br#"{"msgType":"cloudReq","serviceId":"#);
    // Writing strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, body.service_id());
    out.extend_from_slice(br#","cmd":"#);
    let _ = serde_json::to_writer(&mut out, body.method());
    out.extend_from_slice(br#","paras":"#);
    match serde_json::from_str::<&RawValue>(body.paras()) {
        Ok(p) => out.extend_from_slice(p.get().as_bytes()),
        Err(_) => {
            let _ = serde_json::to_writer(&mut out, body.paras());
        }
    }
    out.extend_from_slice(format!(r#","hasMore":{},"mid":{mid}}}"#, u8::from(has_more)).as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let d = DeviceId::new("92d3f8da-200a-4143-8d0d-591a7e11de6c").unwrap();
        assert_eq!(device_of_data_topic(&data_topic(&d)), Some(d.clone()));
        assert_eq!(
            command_topic(&d),
            "/huawei/v1/devices/92d3f8da-200a-4143-8d0d-591a7e11de6c/command/json"
        );
        for bad in [
            "/huawei/v1/devices//data/json",
            "/huawei/v1/devices/a/b/data/json",
            "devices/x/data/json",
        ] {
            assert_eq!(device_of_data_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn device_messages_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_device_message(br#"{"msgType":"deviceReq","data":[{"serviceId":"s","serviceData":{"t":1}}]}"#),
            Ok(DeviceMessage::Report)
        );
        assert_eq!(
            parse_device_message(br#"{"msgType":"deviceRsp","mid":7,"errcode":0,"body":{"light":1}}"#),
            Ok(DeviceMessage::Response {
                mid: 7,
                errcode: 0,
                body: Some(r#"{"light":1}"#.into())
            })
        );
        for bad in [
            &b"not json"[..],
            br#"{"msgType":"deviceRsp","errcode":0}"#,
            br#"{"msgType":"deviceRsp","mid":-1,"errcode":0}"#,
            br#"{"msgType":"deviceRsp","mid":1}"#,
            br#"{"msgType":"deviceReq","data":{}}"#,
            br#"{"msgType":"other"}"#,
            br#"[]"#,
        ] {
            assert!(parse_device_message(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_cloud_request_has_the_platforms_fields() {
        let body = CommandBody::new("Light", "SET", r#"{"on":true}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&cloud_request(&body, 42, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"msgType":"cloudReq","serviceId":"Light","cmd":"SET","paras":{"on":true},"hasMore":1,"mid":42})
        );
    }
}
