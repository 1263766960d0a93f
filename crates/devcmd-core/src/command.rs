//! Commands: what an application asks of a device, and its status.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::error::InvalidInput;
use crate::id::{AppId, CommandId, DeviceId};

/// Largest `serviceId`, in bytes.
pub const SERVICE_ID_LEN_MAX: usize = 64;
/// Largest `method`, in bytes.
pub const METHOD_LEN_MAX: usize = 128;
/// Largest `callbackUrl`, in bytes.
pub const CALLBACK_URL_LEN_MAX: usize = 1024;
/// Largest `maxRetransmit`.
pub const MAX_RETRANSMIT_MAX: u8 = 3;
/// `maxRetransmit` when the request leaves it out.
pub const MAX_RETRANSMIT_DEFAULT: u8 = 3;
/// `expireTime` when the request leaves it out: 48 hours.
pub const EXPIRE_TIME_DEFAULT_S: u32 = 172_800;

/// A command's status, spelled on the wire exactly as the platform does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandStatus {
    /// Cached on the platform, not yet sent.
    Pending,
    /// Sent to the device, no ACK yet.
    Sent,
    /// The device acknowledged receipt.
    Delivered,
    /// The device reported success.
    Successful,
    /// The device reported failure.
    Failed,
    /// No ACK, or no result, in time.
    Timeout,
    /// Still cached when its `expireTime` ran out; never sent.
    Expired,
    /// Cancelled by the application while PENDING.
    Canceled,
}

impl CommandStatus {
    /// Every status, in order of progress.
    pub const ALL: [CommandStatus; 8] = [
        Self::Pending,
        Self::Sent,
        Self::Delivered,
        Self::Successful,
        Self::Failed,
        Self::Timeout,
        Self::Expired,
        Self::Canceled,
    ];

    /// Whether the status is final: it never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Sent | Self::Delivered)
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Successful => "SUCCESSFUL",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Expired => "EXPIRED",
            Self::Canceled => "CANCELED",
        }
    }

    /// Progress rank: a transition always goes to a strictly higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            _ => 3,
        }
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandStatus {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(InvalidInput::new("status", "not a command status"))
    }
}

/// A request to create a command, as the application sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    /// The target device.
    pub device_id: DeviceId,
    /// The service of the device profile (1..=64 bytes).
    pub service_id: String,
    /// The command name (1..=128 bytes).
    pub method: String,
    /// The parameters as raw JSON text; the core never parses it.
    pub paras: String,
    /// Where status changes are pushed (at most 1024 bytes).
    pub callback_url: Option<String>,
    /// Seconds the command may wait in the cache: `None` is 48 h, `Some(0)` is an
    /// immediate command (sent at once whatever the device's state).
    pub expire_time_s: Option<u32>,
    /// Resends after the first send (0..=3, default 3).
    pub max_retransmit: Option<u8>,
}

impl NewCommand {
    /// A request with the platform's defaults for every optional field.
    pub fn new(device_id: DeviceId, service_id: &str, method: &str, paras: &str) -> Self {
        Self {
            device_id,
            service_id: service_id.to_owned(),
            method: method.to_owned(),
            paras: paras.to_owned(),
            callback_url: None,
            expire_time_s: None,
            max_retransmit: None,
        }
    }

    /// Checks every field against the platform's limits; `paras_len_max` is the
    /// configured bound on the raw parameter text.
    pub fn validate(&self, paras_len_max: usize) -> Result<(), InvalidInput> {
        check_text(&self.service_id, SERVICE_ID_LEN_MAX, "command.serviceId")?;
        check_text(&self.method, METHOD_LEN_MAX, "command.method")?;
        if self.paras.len() > paras_len_max {
            return Err(InvalidInput::new("command.paras", "too large"));
        }
        if let Some(url) = &self.callback_url
            && (url.is_empty() || url.len() > CALLBACK_URL_LEN_MAX)
        {
            return Err(InvalidInput::new("callbackUrl", "must be 1..=1024 bytes"));
        }
        if self.expire_time_s == Some(u32::MAX) {
            return Err(InvalidInput::new("expireTime", "must be below 4294967295"));
        }
        if self.max_retransmit.is_some_and(|m| m > MAX_RETRANSMIT_MAX) {
            return Err(InvalidInput::new("maxRetransmit", "must be 0..=3"));
        }
        Ok(())
    }

    /// Whether this is an immediate command (`expireTime = 0`).
    pub fn is_immediate(&self) -> bool {
        self.expire_time_s == Some(0)
    }
}

fn check_text(v: &str, max: usize, field: &'static str) -> Result<(), InvalidInput> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(InvalidInput::new(field, "empty, too long or has control characters"));
    }
    Ok(())
}

/// What a device reported as the outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Success (SUCCESSFUL) or failure (FAILED).
    pub success: bool,
    /// The device's result fields as raw JSON text (the callback's `resultDetail`), if any.
    pub detail: Option<String>,
}

/// What a command asks: service id, method and raw JSON parameters, kept in
/// one shared allocation (a command costs one allocation for all three, and
/// copies of it are reference-counted).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CommandBody {
    text: Arc<str>,
    service_len: u8,
    method_len: u8,
}

impl CommandBody {
    /// Joins the three parts. Lengths beyond the API's limits are refused.
    pub fn new(service_id: &str, method: &str, paras: &str) -> Result<Self, InvalidInput> {
        let service_len = u8::try_from(service_id.len())
            .ok()
            .filter(|&l| usize::from(l) <= SERVICE_ID_LEN_MAX)
            .ok_or(InvalidInput::new("command.serviceId", "too long"))?;
        let method_len = u8::try_from(method.len())
            .ok()
            .filter(|&l| usize::from(l) <= METHOD_LEN_MAX)
            .ok_or(InvalidInput::new("command.method", "too long"))?;
        // Joined in a per-thread scratch buffer, so the body costs one allocation.
        thread_local! {
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let text = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.push_str(service_id);
            buf.push_str(method);
            buf.push_str(paras);
            let text = Arc::<str>::from(buf.as_str());
            if buf.capacity() > 64 * 1024 {
                *buf = String::new();
            }
            text
        });
        Ok(Self {
            text,
            service_len,
            method_len,
        })
    }

    /// The service id.
    pub fn service_id(&self) -> &str {
        // The split points are char boundaries: they end whole strings pushed in `new`.
        self.text.get(..usize::from(self.service_len)).unwrap_or("")
    }

    /// The command name.
    pub fn method(&self) -> &str {
        let start = usize::from(self.service_len);
        self.text.get(start..start + usize::from(self.method_len)).unwrap_or("")
    }

    /// The raw JSON parameters.
    pub fn paras(&self) -> &str {
        self.text
            .get(usize::from(self.service_len) + usize::from(self.method_len)..)
            .unwrap_or("")
    }
}

impl fmt::Debug for CommandBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandBody")
            .field("service_id", &self.service_id())
            .field("method", &self.method())
            .field("paras", &self.paras())
            .finish()
    }
}

/// A complete picture of one command at one moment: every field the API shows
/// and the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its id.
    pub id: CommandId,
    /// The owning application.
    pub app_id: AppId,
    /// The target device.
    pub device_id: DeviceId,
    /// Service id, method and parameters.
    pub body: CommandBody,
    /// Where status changes are pushed.
    pub callback_url: Option<Arc<str>>,
    /// `expireTime` as given (None when left out).
    pub expire_time_s: Option<u32>,
    /// `maxRetransmit` in force.
    pub max_retransmit: u8,
    /// Current status.
    pub status: CommandStatus,
    /// The device's result as raw JSON text, once reported.
    pub result: Option<Arc<str>>,
    /// When it was created.
    pub creation_time: Timestamp,
    /// When it was first sent.
    pub platform_issued_time: Option<Timestamp>,
    /// When the device acknowledged it.
    pub delivered_time: Option<Timestamp>,
    /// When the device reported its result.
    pub execute_time: Option<Timestamp>,
    /// When it reached its terminal status.
    pub terminal_time: Option<Timestamp>,
    /// Resends so far: the first send counts 0, as the platform reports.
    pub issued_times: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_parts_round_trip() {
        let b = CommandBody::new("Light", "SET_LEVEL", r#"{"v":"é"}"#).unwrap();
        assert_eq!(
            (b.service_id(), b.method(), b.paras()),
            ("Light", "SET_LEVEL", r#"{"v":"é"}"#)
        );
        let empty = CommandBody::new("", "", "").unwrap();
        assert_eq!((empty.service_id(), empty.method(), empty.paras()), ("", "", ""));
        assert!(CommandBody::new(&"s".repeat(65), "m", "").is_err());
        assert!(CommandBody::new("s", &"m".repeat(129), "").is_err());
    }
}
