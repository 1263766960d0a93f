//! Record encodings: versioned, fixed-width big-endian integers,
//! length-prefixed text, decoded defensively (corrupt bytes give a
//! [`DecodeError`], never a panic).

use std::sync::Arc;

use devcmd_core::{
    App, AppId, CancelTaskRecord, CancelTaskStatus, Command, CommandBody, CommandId, CommandStatus, DeliveryProfile,
    Device, DeviceId, Quota, TaskId, Timestamp,
};

/// The version byte every record starts with.
pub const RECORD_VERSION: u8 = 1;

/// Why bytes could not be decoded into a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {record} record: {what} at byte {at}")]
pub struct DecodeError {
    /// The kind of record.
    pub record: &'static str,
    /// What was wrong.
    pub what: &'static str,
    /// Where, in bytes from the start.
    pub at: usize,
}

/// Appends fields to a record.
#[derive(Debug, Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    fn new(tag: u8) -> Self {
        Self(vec![RECORD_VERSION, tag])
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn text(&mut self, s: &str) {
        // Every text the core accepts is far below 4 GiB.
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.text(s);
            }
            None => self.u8(0),
        }
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
            None => self.u8(0),
        }
    }
    fn opt_time(&mut self, t: Option<Timestamp>) {
        match t {
            Some(t) => {
                self.u8(1);
                self.u64(t.as_millis());
            }
            None => self.u8(0),
        }
    }
}

/// Reads fields of a record, refusing anything malformed.
pub(crate) struct Dec<'a> {
    bytes: &'a [u8],
    at: usize,
    record: &'static str,
}

impl<'a> Dec<'a> {
    fn new(bytes: &'a [u8], record: &'static str, tag: u8) -> Result<Self, DecodeError> {
        let mut d = Self { bytes, at: 0, record };
        if d.u8()? != RECORD_VERSION {
            return Err(d.err("unknown version"));
        }
        if d.u8()? != tag {
            return Err(d.err("wrong record kind"));
        }
        Ok(d)
    }
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            record: self.record,
            what,
            at: self.at,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(self.err("truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array()?))
    }
    fn text(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u32()? as usize;
        let s = self.take(len)?;
        std::str::from_utf8(s).map_err(|_| self.err("text is not UTF-8"))
    }
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err("bad option flag")),
        }
    }
    fn opt_text(&mut self) -> Result<Option<&'a str>, DecodeError> {
        if self.flag()? { self.text().map(Some) } else { Ok(None) }
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        if self.flag()? { self.u32().map(Some) } else { Ok(None) }
    }
    fn opt_time(&mut self) -> Result<Option<Timestamp>, DecodeError> {
        if self.flag()? {
            self.u64().map(|t| Some(Timestamp::from_millis(t)))
        } else {
            Ok(None)
        }
    }
    fn end(self) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
    fn app_id(&mut self) -> Result<AppId, DecodeError> {
        let t = self.text()?;
        AppId::new(t).map_err(|_| self.err("invalid appId"))
    }
    fn device_id(&mut self) -> Result<DeviceId, DecodeError> {
        let t = self.text()?;
        DeviceId::new(t).map_err(|_| self.err("invalid deviceId"))
    }
}

const TAG_COMMAND: u8 = b'C';
const TAG_APP: u8 = b'A';
const TAG_DEVICE: u8 = b'D';
const TAG_TASK: u8 = b'T';

fn status_code(s: CommandStatus) -> u8 {
    // The position in CommandStatus::ALL, fixed by the record version.
    CommandStatus::ALL
        .iter()
        .position(|x| *x == s)
        .map_or(u8::MAX, |p| p as u8)
}

fn task_status_code(s: CancelTaskStatus) -> u8 {
    CancelTaskStatus::ALL
        .iter()
        .position(|x| *x == s)
        .map_or(u8::MAX, |p| p as u8)
}

/// Encodes a command record.
pub fn encode_command(c: &Command) -> Vec<u8> {
    let mut e = Enc::new(TAG_COMMAND);
    e.u128(c.id.to_u128());
    e.text(c.app_id.as_str());
    e.text(&c.device_id.to_string());
    e.text(c.body.service_id());
    e.text(c.body.method());
    e.text(c.body.paras());
    e.opt_text(c.callback_url.as_deref());
    e.opt_u32(c.expire_time_s);
    e.u8(c.max_retransmit);
    e.u8(status_code(c.status));
    e.opt_text(c.result.as_deref());
    e.u64(c.creation_time.as_millis());
    e.opt_time(c.platform_issued_time);
    e.opt_time(c.delivered_time);
    e.opt_time(c.execute_time);
    e.opt_time(c.terminal_time);
    e.u8(c.issued_times);
    e.0
}

/// Decodes a command record.
pub fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
    let mut d = Dec::new(bytes, "command", TAG_COMMAND)?;
    let id = CommandId::from_u128(d.u128()?);
    let app_id = d.app_id()?;
    let device_id = d.device_id()?;
    let (service, method, paras) = (d.text()?, d.text()?, d.text()?);
    let body = CommandBody::new(service, method, paras).map_err(|_| d.err("body out of limits"))?;
    let callback_url = d.opt_text()?.map(Arc::from);
    let expire_time_s = d.opt_u32()?;
    let max_retransmit = d.u8()?;
    let status = *CommandStatus::ALL
        .get(usize::from(d.u8()?))
        .ok_or(d.err("unknown status"))?;
    let result = d.opt_text()?.map(Arc::from);
    let creation_time = Timestamp::from_millis(d.u64()?);
    let platform_issued_time = d.opt_time()?;
    let delivered_time = d.opt_time()?;
    let execute_time = d.opt_time()?;
    let terminal_time = d.opt_time()?;
    let issued_times = d.u8()?;
    d.end()?;
    Ok(Command {
        id,
        app_id,
        device_id,
        body,
        callback_url,
        expire_time_s,
        max_retransmit,
        status,
        result,
        creation_time,
        platform_issued_time,
        delivered_time,
        execute_time,
        terminal_time,
        issued_times,
    })
}

/// Encodes an application record.
pub fn encode_app(a: &App) -> Vec<u8> {
    let mut e = Enc::new(TAG_APP);
    e.text(a.id.as_str());
    e.text(&a.secret_hash);
    match a.quota {
        Some(q) => {
            e.u8(1);
            e.u32(q.calls);
            e.u32(q.period_s);
        }
        None => e.u8(0),
    }
    e.u32(u32::try_from(a.authorized_apps.len()).unwrap_or(u32::MAX));
    for other in &a.authorized_apps {
        e.text(other.as_str());
    }
    e.0
}

/// Decodes an application record.
pub fn decode_app(bytes: &[u8]) -> Result<App, DecodeError> {
    let mut d = Dec::new(bytes, "app", TAG_APP)?;
    let id = d.app_id()?;
    let secret_hash = d.text()?.to_owned();
    let quota = if d.flag()? {
        Some(Quota {
            calls: d.u32()?,
            period_s: d.u32()?,
        })
    } else {
        None
    };
    let n = d.u32()?;
    // Each entry takes at least 4 bytes: a count beyond the record is corrupt.
    if n as usize > bytes.len() / 4 {
        return Err(d.err("authorised app count beyond the record"));
    }
    let authorized_apps = (0..n).map(|_| d.app_id()).collect::<Result<_, _>>()?;
    d.end()?;
    Ok(App {
        id,
        secret_hash,
        quota,
        authorized_apps,
    })
}

/// Encodes a device record.
pub fn encode_device(dv: &Device) -> Vec<u8> {
    let mut e = Enc::new(TAG_DEVICE);
    e.text(&dv.id.to_string());
    e.text(&dv.node_id);
    e.text(dv.owner.as_str());
    e.text(dv.profile.as_str());
    e.0
}

/// Decodes a device record.
pub fn decode_device(bytes: &[u8]) -> Result<Device, DecodeError> {
    let mut d = Dec::new(bytes, "device", TAG_DEVICE)?;
    let id = d.device_id()?;
    let node_id = d.text()?.to_owned();
    let owner = d.app_id()?;
    let profile: DeliveryProfile = d.text()?.parse().map_err(|_| d.err("unknown profile"))?;
    d.end()?;
    Ok(Device {
        id,
        node_id,
        owner,
        profile,
    })
}

/// Encodes a cancel task record.
pub fn encode_task(t: &CancelTaskRecord) -> Vec<u8> {
    let mut e = Enc::new(TAG_TASK);
    e.u128(t.id.to_u128());
    e.text(t.app_id.as_str());
    e.text(&t.device_id.to_string());
    e.u8(task_status_code(t.status));
    e.u64(t.creation_time.as_millis());
    e.opt_time(t.finish_time);
    e.u32(u32::try_from(t.command_ids.len()).unwrap_or(u32::MAX));
    for id in &t.command_ids {
        e.u128(id.to_u128());
    }
    e.0
}

/// Decodes a cancel task record.
pub fn decode_task(bytes: &[u8]) -> Result<CancelTaskRecord, DecodeError> {
    let mut d = Dec::new(bytes, "cancel task", TAG_TASK)?;
    let id = TaskId::from_u128(d.u128()?);
    let app_id = d.app_id()?;
    let device_id = d.device_id()?;
    let status = *CancelTaskStatus::ALL
        .get(usize::from(d.u8()?))
        .ok_or(d.err("unknown status"))?;
    let creation_time = Timestamp::from_millis(d.u64()?);
    let finish_time = d.opt_time()?;
    let n = d.u32()? as usize;
    if n > bytes.len() / 16 {
        return Err(d.err("command count beyond the record"));
    }
    let command_ids = (0..n)
        .map(|_| d.u128().map(CommandId::from_u128))
        .collect::<Result<_, _>>()?;
    d.end()?;
    Ok(CancelTaskRecord {
        id,
        app_id,
        device_id,
        status,
        creation_time,
        finish_time,
        command_ids,
    })
}
