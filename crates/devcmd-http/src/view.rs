//! The response bodies, in the platform's field names and order.
//!
//! Unset optional fields are written as `null` (as in the platform's
//! documented examples), not left out. Raw JSON kept by the core (`paras`,
//! a device's result) is written as JSON when it is valid JSON and as a
//! string otherwise, so a response is always valid JSON whatever an embedder
//! stored.

use devcmd_core::{CancelTask, Command, Page, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::time::PlatformTime;

/// Serialises through `Display` straight into the output (no `String`).
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Raw JSON text, or a string when the text is not JSON.
enum Raw<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl<'a> Raw<'a> {
    fn of(text: &'a str) -> Self {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => Self::Json(raw),
            Err(_) => Self::Text(text),
        }
    }
}

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Json(r) => r.serialize(s),
            Self::Text(t) => t.serialize(s),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommandDtoView<'a> {
    service_id: &'a str,
    method: &'a str,
    paras: Raw<'a>,
}

/// A `DeviceCommandResp`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandView<'a> {
    command_id: Shown<devcmd_core::CommandId>,
    app_id: &'a str,
    device_id: Shown<&'a devcmd_core::DeviceId>,
    command: CommandDtoView<'a>,
    callback_url: Option<&'a str>,
    expire_time: Option<u32>,
    status: &'static str,
    result: Option<Raw<'a>>,
    creation_time: Shown<PlatformTime>,
    execute_time: Option<Shown<PlatformTime>>,
    platform_issued_time: Option<Shown<PlatformTime>>,
    delivered_time: Option<Shown<PlatformTime>>,
    issued_times: u8,
    max_retransmit: u8,
}

fn time(t: Option<Timestamp>) -> Option<Shown<PlatformTime>> {
    t.map(|t| Shown(PlatformTime(t)))
}

impl<'a> CommandView<'a> {
    /// The view of one command.
    pub fn of(c: &'a Command) -> Self {
        Self {
            command_id: Shown(c.id),
            app_id: c.app_id.as_str(),
            device_id: Shown(&c.device_id),
            command: CommandDtoView {
                service_id: c.body.service_id(),
                method: c.body.method(),
                paras: Raw::of(c.body.paras()),
            },
            callback_url: c.callback_url.as_deref(),
            expire_time: c.expire_time_s,
            status: c.status.as_str(),
            result: c.result.as_deref().map(Raw::of),
            creation_time: Shown(PlatformTime(c.creation_time)),
            execute_time: time(c.execute_time),
            platform_issued_time: time(c.platform_issued_time),
            delivered_time: time(c.delivered_time),
            issued_times: c.issued_times,
            max_retransmit: c.max_retransmit,
        }
    }
}

/// A cancel task with its commands.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView<'a> {
    task_id: String,
    app_id: &'a str,
    device_id: String,
    status: &'static str,
    total_count: usize,
    device_commands: Vec<CommandView<'a>>,
}

impl<'a> TaskView<'a> {
    /// The view of one cancel task.
    pub fn of(t: &'a CancelTask) -> Self {
        Self {
            task_id: t.id.to_string(),
            app_id: t.app_id.as_str(),
            device_id: t.device_id.to_string(),
            status: t.status.as_str(),
            total_count: t.total_count(),
            device_commands: t.commands.iter().map(CommandView::of).collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    page_no: u32,
    page_size: u32,
    total_size: u64,
}

/// A page: `{"pagination":{pageNo,pageSize,totalSize},"data":[…]}`.
#[derive(Serialize)]
pub struct PageView<T> {
    pagination: Pagination,
    data: Vec<T>,
}

impl<T> PageView<T> {
    /// The view of a page whose items were turned into views.
    pub fn of<U>(page: &Page<U>, data: Vec<T>) -> Self {
        Self {
            pagination: Pagination {
                page_no: page.page_no,
                page_size: page.page_size,
                total_size: page.total_size,
            },
            data,
        }
    }
}

/// The login and refresh answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// The access token.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// The refresh token.
    pub refresh_token: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    /// Always `default`.
    pub scope: &'static str,
}

/// The registration answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationView {
    /// The new device's id.
    pub device_id: String,
    /// The verify code.
    pub verify_code: String,
    /// Seconds the registration waits for the device to bind.
    pub timeout: u32,
    /// The pre-shared key for the device's secure channel.
    pub psk: String,
}
