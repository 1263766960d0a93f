//! Parsing of every request body and query string the API accepts. Pure
//! functions from bytes to typed requests, so they are fuzzed directly.
//!
//! Unknown body fields and unknown query parameters are ignored, as the
//! platform does (some clients send `appId` in the body). A known query
//! parameter given twice is refused: which one was meant is unclear.

use devcmd_core::{
    AppId, CancelTaskStatus, CommandId, CommandQuery, DeliveryProfile, DeviceId, NewCommand, NewDevice, PAGE_SIZE_MAX,
    TaskId, TaskQuery,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::time::parse_time;

/// Longest `appId` or `secret` accepted at login (the platform's String(256)).
pub const CREDENTIAL_LEN_MAX: usize = 256;
/// Longest `verifyCode` accepted at registration.
pub const VERIFY_CODE_LEN_MAX: usize = 256;

fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::invalid("body", "not the expected JSON object"))
}

fn app_id(field: &'static str, s: &str) -> Result<AppId, ApiError> {
    AppId::new(s).map_err(|_| ApiError::invalid(field, "must be 1..=64 printable characters"))
}

// ----- login, refresh, logout ------------------------------------------------------

/// A login or refresh: who, with which secret (and the refresh token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The application.
    pub app_id: AppId,
    /// Its secret, as sent.
    pub secret: String,
    /// The refresh token (refresh only).
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsBody {
    app_id: String,
    secret: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Parses login or refresh credentials, form-encoded (`appId=…&secret=…`, the
/// platform's login encoding) when the content type says so, JSON otherwise.
pub fn parse_credentials(content_type: Option<&str>, body: &[u8]) -> Result<Credentials, ApiError> {
    let form = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    let raw: CredentialsBody = if form {
        let (mut app_id, mut secret, mut refresh_token) = (None, None, None);
        for (k, v) in form_urlencoded::parse(body) {
            let slot = match &*k {
                "appId" => &mut app_id,
                "secret" => &mut secret,
                "refreshToken" => &mut refresh_token,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(ApiError::invalid("body", "a field is given twice"));
            }
        }
        CredentialsBody {
            app_id: app_id.ok_or(ApiError::invalid("appId", "is mandatory"))?,
            secret: secret.ok_or(ApiError::invalid("secret", "is mandatory"))?,
            refresh_token,
        }
    } else {
        json(body)?
    };
    if raw.secret.is_empty() || raw.secret.len() > CREDENTIAL_LEN_MAX {
        return Err(ApiError::invalid("secret", "must be 1..=256 bytes"));
    }
    Ok(Credentials {
        app_id: app_id("appId", &raw.app_id)?,
        secret: raw.secret,
        refresh_token: raw.refresh_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogoutBody {
    access_token: String,
}

/// Parses a logout body `{"accessToken":"…"}`.
pub fn parse_logout(body: &[u8]) -> Result<String, ApiError> {
    json::<LogoutBody>(body).map(|b| b.access_token)
}

// ----- devices ---------------------------------------------------------------------------

/// A device registration (`deviceCredentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRegistration {
    /// What the core registers.
    pub device: NewDevice,
    /// The verify code (the nodeId when not given).
    pub verify_code: String,
    /// Seconds the registration waits for the device to bind (default 180; echoed).
    pub timeout_s: u32,
    /// The pre-shared key given, if any.
    pub psk: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationBody {
    node_id: String,
    #[serde(default)]
    verify_code: Option<String>,
    #[serde(default)]
    timeout: Option<i64>,
    #[serde(default)]
    psk: Option<String>,
    /// devcmd extension: `psm` (default), `drx` or `edrx`.
    #[serde(default)]
    delivery_profile: Option<String>,
}

/// Parses `{"nodeId","verifyCode"?,"timeout"?,"psk"?,"deliveryProfile"?}`.
pub fn parse_registration(body: &[u8]) -> Result<DeviceRegistration, ApiError> {
    let b: RegistrationBody = json(body)?;
    let mut device = NewDevice::new(&b.node_id);
    if let Some(p) = &b.delivery_profile {
        device.profile = p.parse::<DeliveryProfile>()?;
    }
    let timeout_s = match b.timeout {
        None => 180,
        Some(t) => u32::try_from(t)
            .ok()
            .filter(|&t| t <= i32::MAX as u32)
            .ok_or(ApiError::invalid("timeout", "must be 0..=2147483647"))?,
    };
    let verify_code = b.verify_code.unwrap_or_else(|| b.node_id.clone());
    if verify_code.is_empty() || verify_code.len() > VERIFY_CODE_LEN_MAX || verify_code.chars().any(char::is_control) {
        return Err(ApiError::invalid("verifyCode", "must be 1..=256 printable characters"));
    }
    if let Some(psk) = &b.psk
        && (!(8..=32).contains(&psk.len()) || !psk.bytes().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ApiError::invalid("psk", "must be 8..=32 letters and digits"));
    }
    Ok(DeviceRegistration {
        device,
        verify_code,
        timeout_s,
        psk: b.psk,
    })
}

/// Parses a device id from a path or a field.
pub fn parse_device_id(field: &'static str, s: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(s).map_err(|e| ApiError::invalid(field, e.reason))
}

// ----- commands --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandDto<'a> {
    service_id: String,
    method: String,
    #[serde(default, borrow)]
    paras: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateCommandBody<'a> {
    device_id: String,
    #[serde(borrow)]
    command: CommandDto<'a>,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    expire_time: Option<i64>,
    #[serde(default)]
    max_retransmit: Option<i64>,
}

/// Parses a create-command body. `paras` must be a JSON object when given; an
/// absent or `null` `paras` is stored as `{}`.
pub fn parse_create_command(body: &[u8]) -> Result<NewCommand, ApiError> {
    let b: CreateCommandBody<'_> = json(body)?;
    let device_id = parse_device_id("deviceId", &b.device_id)?;
    let paras = match b.command.paras {
        None => "{}",
        Some(raw) if raw.get() == "null" => "{}",
        Some(raw) if raw.get().starts_with('{') => raw.get(),
        Some(_) => return Err(ApiError::invalid("command.paras", "must be a JSON object")),
    };
    let mut cmd = NewCommand::new(device_id, &b.command.service_id, &b.command.method, paras);
    if let Some(url) = &b.callback_url {
        // Refused now rather than discovered at the first push.
        devcmd_callback::address_of(url).map_err(|e| ApiError::invalid("callbackUrl", e.0))?;
    }
    cmd.callback_url = b.callback_url;
    cmd.expire_time_s = match b.expire_time {
        None => None,
        Some(t) => Some(
            u32::try_from(t)
                .ok()
                .filter(|&t| t < u32::MAX)
                .ok_or(ApiError::invalid("expireTime", "must be 0..=4294967294 seconds"))?,
        ),
    };
    cmd.max_retransmit = match b.max_retransmit {
        None => None,
        Some(m @ 0..=3) => Some(m as u8), // 0..=3 fits a u8
        Some(_) => return Err(ApiError::invalid("maxRetransmit", "must be 0..=3")),
    };
    Ok(cmd)
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
}

/// Parses `{"status":"CANCELED"}`, the only change a command accepts.
pub fn parse_cancel_command(body: &[u8]) -> Result<(), ApiError> {
    let b: StatusBody = json(body)?;
    if b.status != "CANCELED" {
        return Err(ApiError::invalid("status", "must be CANCELED"));
    }
    Ok(())
}

/// Parses a command id from the path.
pub fn parse_command_id(s: &str) -> Result<CommandId, ApiError> {
    s.parse().map_err(ApiError::from)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelTaskBody {
    device_id: String,
}

/// Parses a create-cancel-task body `{"deviceId":"…"}`.
pub fn parse_create_cancel_task(body: &[u8]) -> Result<DeviceId, ApiError> {
    let b: CancelTaskBody = json(body)?;
    parse_device_id("deviceId", &b.device_id)
}

// ----- query strings ----------------------------------------------------------------------

/// The query parameters an endpoint knows, each at most once.
struct Params<'a> {
    names: &'a [&'static str],
    values: Vec<Option<String>>,
}

impl<'a> Params<'a> {
    fn parse(query: Option<&str>, names: &'a [&'static str]) -> Result<Self, ApiError> {
        let mut values = vec![None; names.len()];
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if let Some(i) = names.iter().position(|n| *n == k)
                && values[i].replace(v.into_owned()).is_some()
            {
                return Err(ApiError::invalid(names[i], "given twice"));
            }
        }
        Ok(Self { names, values })
    }

    /// The value of `name`; an empty value counts as absent (clients send `appId=`).
    fn get(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| *n == name)?;
        self.values[i].as_deref().filter(|v| !v.is_empty())
    }

    fn number(&self, name: &'static str, default: u32, min: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or(ApiError::invalid(name, "out of range")),
        }
    }

    fn app(&self) -> Result<Option<AppId>, ApiError> {
        self.get("appId").map(|a| app_id("appId", a)).transpose()
    }
}

/// Parses the `?appId=` of an endpoint that takes nothing else.
pub fn parse_app_param(query: Option<&str>) -> Result<Option<AppId>, ApiError> {
    Params::parse(query, &["appId"])?.app()
}

const COMMAND_PARAMS: &[&str] = &["pageNo", "pageSize", "deviceId", "startTime", "endTime", "appId"];
const TASK_PARAMS: &[&str] = &[
    "pageNo",
    "pageSize",
    "taskId",
    "deviceId",
    "status",
    "startTime",
    "endTime",
    "appId",
];

/// Parses the query of `GET deviceCommands`: `pageNo` (0-based, default 0),
/// `pageSize` (1..=1000, default 1000), `deviceId`, `startTime`, `endTime`
/// (creation time window, `[startTime, endTime)`), `appId`.
pub fn parse_command_query(query: Option<&str>) -> Result<(CommandQuery, Option<AppId>), ApiError> {
    let p = Params::parse(query, COMMAND_PARAMS)?;
    let q = CommandQuery {
        device_id: p.get("deviceId").map(|d| parse_device_id("deviceId", d)).transpose()?,
        from: p.get("startTime").map(|t| parse_time("startTime", t)).transpose()?,
        to: p.get("endTime").map(|t| parse_time("endTime", t)).transpose()?,
        page_no: p.number("pageNo", 0, 0, u32::MAX)?,
        page_size: p.number("pageSize", PAGE_SIZE_MAX, 1, PAGE_SIZE_MAX)?,
    };
    Ok((q, p.app()?))
}

/// Parses the query of `GET deviceCommandCancelTasks`: as for commands, plus
/// `taskId` and `status` (`WAITTING`, `RUNNING`, `SUCCESS`, `FAILED`, `PART_SUCCESS`).
pub fn parse_task_query(query: Option<&str>) -> Result<(TaskQuery, Option<AppId>), ApiError> {
    let p = Params::parse(query, TASK_PARAMS)?;
    let status = match p.get("status") {
        None => None,
        Some(s) => Some(
            CancelTaskStatus::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or(ApiError::invalid("status", "not a cancel task status"))?,
        ),
    };
    let q = TaskQuery {
        task_id: p.get("taskId").map(|t| t.parse::<TaskId>()).transpose()?,
        device_id: p.get("deviceId").map(|d| parse_device_id("deviceId", d)).transpose()?,
        status,
        from: p.get("startTime").map(|t| parse_time("startTime", t)).transpose()?,
        to: p.get("endTime").map(|t| parse_time("endTime", t)).transpose()?,
        page_no: p.number("pageNo", 0, 0, u32::MAX)?,
        page_size: p.number("pageSize", PAGE_SIZE_MAX, 1, PAGE_SIZE_MAX)?,
    };
    Ok((q, p.app()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "92d3f8da-200a-4143-8d0d-591a7e11de6c";

    #[test]
    fn a_full_create_command_body_parses() {
        let body = format!(
            r#"{{"deviceId":"{DEV}","command":{{"serviceId":"Light","method":"SET","paras":{{"v":1}}}},
               "callbackUrl":"http://a/b","expireTime":0,"maxRetransmit":2,"appId":"ignored"}}"#
        );
        let c = parse_create_command(body.as_bytes()).unwrap();
        assert_eq!(c.device_id.to_string(), DEV);
        assert_eq!(
            (c.service_id.as_str(), c.method.as_str(), c.paras.as_str()),
            ("Light", "SET", r#"{"v":1}"#)
        );
        assert_eq!(c.callback_url.as_deref(), Some("http://a/b"));
        assert_eq!((c.expire_time_s, c.max_retransmit), (Some(0), Some(2)));
    }

    #[test]
    fn create_command_limits_are_enforced() {
        let with = |extra: &str, paras: &str| {
            format!(r#"{{"deviceId":"{DEV}","command":{{"serviceId":"S","method":"M","paras":{paras}}}{extra}}}"#)
        };
        for (extra, paras) in [
            (r#","expireTime":-1"#, "{}"),
            (r#","expireTime":4294967295"#, "{}"),
            (r#","expireTime":"10""#, "{}"),
            (r#","expireTime":1.5"#, "{}"),
            (r#","maxRetransmit":4"#, "{}"),
            (r#","maxRetransmit":-1"#, "{}"),
            ("", "[1]"),
            ("", "\"text\""),
            ("", "{"),
            (r#","callbackUrl":"ftp://x/y""#, "{}"),
            (r#","callbackUrl":"/relative""#, "{}"),
            (r#","callbackUrl":"http://""#, "{}"),
        ] {
            let body = with(extra, paras);
            assert!(parse_create_command(body.as_bytes()).is_err(), "{body}");
        }
        assert!(parse_create_command(br#"{"command":{"serviceId":"S","method":"M"}}"#).is_err());
        assert!(parse_create_command(b"[]").is_err());
        assert!(parse_create_command(b"").is_err());
        let no_paras = format!(r#"{{"deviceId":"{DEV}","command":{{"serviceId":"S","method":"M"}}}}"#);
        assert_eq!(parse_create_command(no_paras.as_bytes()).unwrap().paras, "{}");
    }

    #[test]
    fn login_accepts_form_and_json_and_refuses_missing_fields() {
        let f = parse_credentials(
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"appId=a%2Bb&secret=s+1",
        )
        .unwrap();
        assert_eq!((f.app_id.as_str(), f.secret.as_str()), ("a+b", "s 1"));
        let j = parse_credentials(
            Some("application/json"),
            br#"{"appId":"a","secret":"s","refreshToken":"r"}"#,
        )
        .unwrap();
        assert_eq!(j.refresh_token.as_deref(), Some("r"));
        let form = Some("application/x-www-form-urlencoded");
        assert!(parse_credentials(form, b"appId=a").is_err());
        assert!(parse_credentials(form, b"appId=a&secret=").is_err());
        assert!(parse_credentials(form, b"appId=a&appId=b&secret=s").is_err());
        assert!(parse_credentials(None, br#"{"appId":"a"}"#).is_err());
        assert!(!format!("{j:?}").contains("\"s\""));
    }

    #[test]
    fn command_queries_have_the_platform_defaults_and_limits() {
        let (q, app) = parse_command_query(None).unwrap();
        assert_eq!(
            (q.page_no, q.page_size, q.device_id, q.from, q.to, app),
            (0, 1000, None, None, None, None)
        );
        let (q, app) = parse_command_query(Some(&format!(
            "pageNo=2&pageSize=10&deviceId={DEV}&startTime=20170222T164000Z&endTime=20170222T164001Z&appId=x&other=1"
        )))
        .unwrap();
        assert_eq!((q.page_no, q.page_size), (2, 10));
        assert_eq!(q.to.unwrap().as_millis() - q.from.unwrap().as_millis(), 1000);
        assert_eq!(app.unwrap().as_str(), "x");
        assert_eq!(parse_command_query(Some("appId=")).unwrap().1, None);
        for bad in [
            "pageSize=0",
            "pageSize=1001",
            "pageNo=-1",
            "pageNo=x",
            "startTime=2017-02-22",
            "pageNo=1&pageNo=2",
        ] {
            assert!(parse_command_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_queries_parse_status_and_task_id() {
        let (q, _) = parse_task_query(Some("status=WAITTING&taskId=0123456789abcdef0123456789abcdef")).unwrap();
        assert_eq!(q.status, Some(CancelTaskStatus::Waitting));
        assert!(q.task_id.is_some());
        assert!(parse_task_query(Some("status=WAITING")).is_err());
        assert!(parse_task_query(Some("taskId=xyz")).is_err());
    }

    #[test]
    fn registration_defaults_and_limits() {
        let r = parse_registration(br#"{"nodeId":"imei-1"}"#).unwrap();
        assert_eq!((r.verify_code.as_str(), r.timeout_s, r.psk), ("imei-1", 180, None));
        let r = parse_registration(br#"{"nodeId":"n","timeout":0,"deliveryProfile":"drx","psk":"abcdefgh"}"#).unwrap();
        assert_eq!(r.device.profile, DeliveryProfile::Drx);
        assert_eq!(r.timeout_s, 0);
        for bad in [
            r#"{"nodeId":"n","timeout":-1}"#,
            r#"{"nodeId":"n","deliveryProfile":"sleepy"}"#,
            r#"{"nodeId":"n","psk":"short"}"#,
            r#"{"nodeId":"n","verifyCode":""}"#,
            r#"{"verifyCode":"v"}"#,
        ] {
            assert!(parse_registration(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
