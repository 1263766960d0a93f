//! One notification owed to an application: what is pushed, and how it is
//! kept in the outbox.
//!
//! Outbox key: version byte, the command id (16 bytes, big-endian), the
//! status's rank (SENT 1, DELIVERED 2, terminal 3). A command has at most one
//! notification per rank, so keys are unique, and replaying the outbox in key
//! order keeps each command's notifications in their order.
//!
//! Outbox value: a small versioned JSON document (`url`, `deviceId`,
//! `status`, `detail`), decoded defensively.

use std::sync::Arc;

use devcmd_core::{CommandId, CommandStatus, DeviceId, StatusChange};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Version of the outbox key and value layout.
pub const OUTBOX_VERSION: u8 = 1;

/// A status change to push to a `callbackUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The command.
    pub command_id: CommandId,
    /// Its device.
    pub device_id: DeviceId,
    /// The new status (`resultCode`).
    pub status: CommandStatus,
    /// Where to push.
    pub url: Arc<str>,
    /// The device's result fields, raw JSON (`resultDetail`), if any.
    pub detail: Option<Arc<str>>,
}

/// Why an outbox entry could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbox entry: {0}")]
pub struct DecodeError(pub &'static str);

#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    v: u8,
    url: &'a str,
    #[serde(rename = "deviceId")]
    device_id: &'a str,
    status: &'a str,
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "deviceId")]
    device_id: String,
    #[serde(rename = "commandId")]
    command_id: String,
    result: BodyResult<'a>,
}

#[derive(Serialize)]
struct BodyResult<'a> {
    #[serde(rename = "resultCode")]
    result_code: &'static str,
    #[serde(rename = "resultDetail")]
    result_detail: Option<Detail<'a>>,
}

enum Detail<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl Serialize for Detail<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Json(r) => r.serialize(s),
            Self::Text(t) => t.serialize(s),
        }
    }
}

impl Notification {
    /// The notification a change calls for, if any: a callback address is set
    /// and the status is one the platform pushes (SENT, DELIVERED, SUCCESSFUL,
    /// FAILED, TIMEOUT; EXPIRED and CANCELED only when `extra` is set).
    pub fn for_change(change: &StatusChange, extra: bool) -> Option<Self> {
        let url = change.callback_url.as_ref()?;
        let pushed = match change.to {
            CommandStatus::Pending => false,
            CommandStatus::Expired | CommandStatus::Canceled => extra,
            _ => true,
        };
        pushed.then(|| Self {
            command_id: change.command_id,
            device_id: change.device_id.clone(),
            status: change.to,
            url: Arc::clone(url),
            detail: change.result.clone(),
        })
    }

    /// Whether this is the command's last notification.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The outbox key.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(18);
        k.push(OUTBOX_VERSION);
        k.extend_from_slice(&self.command_id.to_u128().to_be_bytes());
        k.push(self.status.rank());
        k
    }

    /// The outbox value.
    pub fn encode_value(&self) -> Vec<u8> {
        let device = self.device_id.to_string();
        let stored = Stored {
            v: OUTBOX_VERSION,
            url: &self.url,
            device_id: &device,
            status: self.status.as_str(),
            detail: self.detail.as_deref(),
        };
        // Serialising plain strings and numbers into a Vec cannot fail.
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads an entry back; damaged entries give an error, never a panic.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, DecodeError> {
        if key.len() != 18 || key[0] != OUTBOX_VERSION {
            return Err(DecodeError("unknown key layout"));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&key[1..17]);
        let stored: Stored<'_> =
            serde_json::from_slice(value).map_err(|_| DecodeError("value is not the stored JSON"))?;
        if stored.v != OUTBOX_VERSION {
            return Err(DecodeError("unknown value version"));
        }
        let status: CommandStatus = stored.status.parse().map_err(|_| DecodeError("unknown status"))?;
        if status.rank() != key[17] {
            return Err(DecodeError("key and value disagree on the status"));
        }
        Ok(Self {
            command_id: CommandId::from_u128(u128::from_be_bytes(id)),
            device_id: DeviceId::new(stored.device_id).map_err(|_| DecodeError("bad device id"))?,
            status,
            url: Arc::from(stored.url),
            detail: stored.detail.map(Arc::from),
        })
    }

    /// The pushed body: `{"deviceId","commandId","result":{"resultCode","resultDetail"}}`.
    pub fn body(&self) -> Vec<u8> {
        let detail = self
            .detail
            .as_deref()
            .map(|d| match serde_json::from_str::<&RawValue>(d) {
                Ok(raw) => Detail::Json(raw),
                Err(_) => Detail::Text(d),
            });
        let body = Body {
            device_id: self.device_id.to_string(),
            command_id: self.command_id.to_string(),
            result: BodyResult {
                result_code: self.status.as_str(),
                result_detail: detail,
            },
        };
        // Strings and already-valid raw JSON: serialising cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devcmd_core::Timestamp;

    fn change(to: CommandStatus, url: Option<&str>, result: Option<&str>) -> StatusChange {
        StatusChange {
            command_id: "108a9c71462a48e09426e06e844d47ba".parse().unwrap(),
            device_id: DeviceId::new("92d3f8da-200a-4143-8d0d-591a7e11de6c").unwrap(),
            from: None,
            to,
            at: Timestamp::from_millis(0),
            callback_url: url.map(Arc::from),
            result: result.map(Arc::from),
        }
    }

    #[test]
    fn the_body_is_the_platforms_shape() {
        let n = Notification::for_change(
            &change(
                CommandStatus::Successful,
                Some("http://a/cb"),
                Some(r#"{"light_state":1}"#),
            ),
            false,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(n.body()).unwrap(),
            r#"{"deviceId":"92d3f8da-200a-4143-8d0d-591a7e11de6c","commandId":"108a9c71462a48e09426e06e844d47ba","result":{"resultCode":"SUCCESSFUL","resultDetail":{"light_state":1}}}"#
        );
        let sent = Notification::for_change(&change(CommandStatus::Sent, Some("http://a/cb"), None), false).unwrap();
        assert!(
            String::from_utf8(sent.body())
                .unwrap()
                .ends_with(r#""result":{"resultCode":"SENT","resultDetail":null}}"#)
        );
    }

    #[test]
    fn only_the_platforms_statuses_are_pushed_unless_extra_is_asked() {
        let url = Some("http://a/cb");
        for (st, pushed, with_extra) in [
            (CommandStatus::Pending, false, false),
            (CommandStatus::Sent, true, true),
            (CommandStatus::Delivered, true, true),
            (CommandStatus::Successful, true, true),
            (CommandStatus::Failed, true, true),
            (CommandStatus::Timeout, true, true),
            (CommandStatus::Expired, false, true),
            (CommandStatus::Canceled, false, true),
        ] {
            assert_eq!(
                Notification::for_change(&change(st, url, None), false).is_some(),
                pushed,
                "{st}"
            );
            assert_eq!(
                Notification::for_change(&change(st, url, None), true).is_some(),
                with_extra,
                "{st}"
            );
        }
        assert!(Notification::for_change(&change(CommandStatus::Sent, None, None), true).is_none());
    }

    #[test]
    fn outbox_entries_round_trip_and_keys_order_a_commands_notifications() {
        let ns: Vec<Notification> = [CommandStatus::Sent, CommandStatus::Delivered, CommandStatus::Failed]
            .into_iter()
            .map(|st| {
                Notification::for_change(&change(st, Some("https://x:8443/p?q=1"), Some("not json")), false).unwrap()
            })
            .collect();
        for n in &ns {
            assert_eq!(&Notification::decode(&n.key(), &n.encode_value()).unwrap(), n);
        }
        assert!(ns.windows(2).all(|w| w[0].key() < w[1].key()));
    }

    #[test]
    fn damaged_entries_are_errors() {
        let n = Notification::for_change(&change(CommandStatus::Sent, Some("http://a"), None), false).unwrap();
        let (k, v) = (n.key(), n.encode_value());
        assert!(Notification::decode(&k[..17], &v).is_err());
        assert!(Notification::decode(&k, b"{").is_err());
        let mut wrong_rank = k.clone();
        wrong_rank[17] = 3;
        assert!(Notification::decode(&wrong_rank, &v).is_err());
        let mut wrong_version = k;
        wrong_version[0] = 9;
        assert!(Notification::decode(&wrong_version, &v).is_err());
    }
}
