//! Every error the API can answer, and the one table that maps each to the
//! platform's error code, message, body shape and HTTP status.
//!
//! Two body shapes, as the platform sends them:
//! - business errors: `{"error_code":"100418","error_desc":"The deviceData is not existed."}`;
//! - gateway errors (bad token, throttled): `{"resultcode":"1010005","resultmsg":"Invalid access token or appId."}`.
//!
//! The platform answers several business errors with HTTP 200 (100203,
//! 100217, 100418). devcmd does the same by default; with
//! `strict_http_status` they get honest 4xx statuses and the same body.
//!
//! Codes the platform's documents do not give are devcmd's own choices,
//! marked *project* below:
//!
//! | code | status (compatible / strict) | when |
//! |---|---|---|
//! | 100022 | 400 / 400 (413 for a body over the limit) | a field breaks its documented limits, bad JSON, bad time format |
//! | 100220 | 500 / 400 | the `app_key` header is missing (the platform's odd 500 is kept) |
//! | 1010005 | 403 / 401 | bad, expired or superseded access token, or `app_key` ≠ token's app (gateway shape) |
//! | 1010009 | 403 / 429 | over the app's quota, with `Retry-After` (gateway shape) |
//! | 100208 | 401 / 401 | login or refresh with a wrong appId or secret (the platform's login code, recalled) |
//! | 100203 | 200 / 404 | `?appId=` names no application |
//! | 100217 | 200 / 403 | `?appId=` names an application that has not authorised the caller |
//! | 100418 | 200 / 404 | unknown device, or another application's |
//! | 100416 | 200 / 409 | the device id is taken (*project*, the platform's "already bound" code) |
//! | 100223 | 400 / 409 | the device already has the maximum of live commands (recalled code) |
//! | 100434 | 200 / 404 | no such command (*project*) |
//! | 100435 | 200 / 409 | the command is not PENDING, so it cannot be cancelled (*project*) |
//! | 100436 | 200 / 404 | no such cancel task (*project*) |
//! | 100501 | 503 / 503 | overload: live-command bound, waiting tasks, login slots, store backlog, still recovering |
//! | 100001 | 500 / 500 | the store failed; the change is not acknowledged |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use devcmd_core::{
    AccessError, CancelError, CancelTaskError, CreateError, InvalidInput, QueryError, RegistryError, StoreError,
};

/// The response header that carries a short, non-secret explanation of a
/// refused request (which field, why). The body keeps the platform's text.
pub const DETAIL_HEADER: &str = "x-devcmd-error-detail";

/// Everything the API can refuse with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A field, query parameter or body is invalid (100022).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, by its API name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body is larger than the configured limit (100022, 413).
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The `app_key` header is missing (100220).
    #[error("the app_key header is missing")]
    AppKeyMissing,
    /// The access token is missing, wrong, expired or not the app's newest (1010005).
    #[error("invalid access token or appId")]
    BadToken,
    /// The app is over its quota (1010009).
    #[error("app throttle exceed, retry after {retry_after_s} s")]
    Throttled {
        /// Seconds until the next call would be accepted.
        retry_after_s: u64,
    },
    /// Login or refresh with a wrong appId or secret (100208).
    #[error("appId or secret is not right")]
    LoginFailed,
    /// `?appId=` names no application (100203).
    #[error("the application is not existed")]
    AppNotExisted,
    /// `?appId=` names an application that has not authorised the caller (100217).
    #[error("the application hasn't been authorized")]
    AppNotAuthorized,
    /// Unknown device, or another application's (100418).
    #[error("the device does not exist")]
    DeviceNotFound,
    /// The device id is taken (100416).
    #[error("the device already exists")]
    DeviceExists,
    /// The device's queue is full (100223).
    #[error("the device already has {limit} live commands")]
    DeviceQueueFull {
        /// The per-device bound.
        limit: u32,
    },
    /// No such command (100434).
    #[error("the command does not exist")]
    CommandNotFound,
    /// The command is not PENDING (100435).
    #[error("the command is {status} and cannot be cancelled")]
    NotCancellable {
        /// Its status when the cancel arrived.
        status: &'static str,
    },
    /// No such cancel task (100436).
    #[error("the cancel task does not exist")]
    TaskNotFound,
    /// Overload or not ready yet (100501).
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// The store failed (100001).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which of the two body shapes an error uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// `{"error_code","error_desc"}`.
    Business,
    /// `{"resultcode","resultmsg"}`.
    Gateway,
}

/// How one error goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// The platform's code.
    pub code: &'static str,
    /// The platform's message.
    pub message: &'static str,
    /// The body shape.
    pub shape: BodyShape,
    /// The HTTP status in the platform-compatible mode.
    pub compatible: StatusCode,
    /// The HTTP status with `strict_http_status`.
    pub strict: StatusCode,
}

const fn business(code: &'static str, message: &'static str, compatible: StatusCode, strict: StatusCode) -> WireError {
    WireError {
        code,
        message,
        shape: BodyShape::Business,
        compatible,
        strict,
    }
}

impl ApiError {
    /// An invalid field (100022).
    pub const fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }

    /// The table: code, message, shape and statuses of this error.
    pub fn wire(&self) -> WireError {
        use StatusCode as S;
        match self {
            Self::Invalid { .. } => business("100022", "The input is invalid.", S::BAD_REQUEST, S::BAD_REQUEST),
            Self::BodyTooLarge { .. } => business(
                "100022",
                "The input is invalid.",
                S::PAYLOAD_TOO_LARGE,
                S::PAYLOAD_TOO_LARGE,
            ),
            Self::AppKeyMissing => business(
                "100220",
                "Get AppKey from header failed.",
                S::INTERNAL_SERVER_ERROR,
                S::BAD_REQUEST,
            ),
            Self::BadToken => WireError {
                code: "1010005",
                message: "Invalid access token or appId.",
                shape: BodyShape::Gateway,
                compatible: S::FORBIDDEN,
                strict: S::UNAUTHORIZED,
            },
            Self::Throttled { .. } => WireError {
                code: "1010009",
                message: "app throttle exceed.",
                shape: BodyShape::Gateway,
                compatible: S::FORBIDDEN,
                strict: S::TOO_MANY_REQUESTS,
            },
            Self::LoginFailed => business(
                "100208",
                "AppId or secret is not right.",
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
            ),
            Self::AppNotExisted => business("100203", "The application is not existed.", S::OK, S::NOT_FOUND),
            Self::AppNotAuthorized => {
                business("100217", "The application hasn't been authorized.", S::OK, S::FORBIDDEN)
            }
            Self::DeviceNotFound => business("100418", "The deviceData is not existed.", S::OK, S::NOT_FOUND),
            Self::DeviceExists => business("100416", "The device has already been bound.", S::OK, S::CONFLICT),
            Self::DeviceQueueFull { .. } => business(
                "100223",
                "Command counts has reached the upLimit.",
                S::BAD_REQUEST,
                S::CONFLICT,
            ),
            Self::CommandNotFound => business("100434", "The device command is not existed.", S::OK, S::NOT_FOUND),
            Self::NotCancellable { .. } => business(
                "100435",
                "The device command status is not PENDING.",
                S::OK,
                S::CONFLICT,
            ),
            Self::TaskNotFound => business(
                "100436",
                "The device command cancel task is not existed.",
                S::OK,
                S::NOT_FOUND,
            ),
            Self::Overloaded(_) => business(
                "100501",
                "Congestion occurs, and the current network has been flow-controlled",
                S::SERVICE_UNAVAILABLE,
                S::SERVICE_UNAVAILABLE,
            ),
            Self::Internal(_) => business(
                "100001",
                "Internal server error.",
                S::INTERNAL_SERVER_ERROR,
                S::INTERNAL_SERVER_ERROR,
            ),
        }
    }

    /// The response: status by mode, the platform's body, `Retry-After` when
    /// throttled, and the detail header.
    pub fn into_response_with(self, strict: bool) -> Response {
        let w = self.wire();
        let status = if strict { w.strict } else { w.compatible };
        let body = match w.shape {
            BodyShape::Business => format!(r#"{{"error_code":"{}","error_desc":"{}"}}"#, w.code, w.message),
            BodyShape::Gateway => format!(r#"{{"resultcode":"{}","resultmsg":"{}"}}"#, w.code, w.message),
        };
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Self::Throttled { retry_after_s } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
        }
        if let Self::Internal(reason) = &self {
            tracing::error!(%reason, "request failed inside devcmd");
        }
        // The detail is built from static texts and numbers only: never a
        // token, a secret or a client's bytes. An internal error's reason
        // (paths, I/O errors) goes to the log above, not to the client.
        let detail = match &self {
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&detail) {
            resp.headers_mut().insert(DETAIL_HEADER, v);
        }
        resp
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        Self::invalid(e.field, e.reason)
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::AppNotExisted => Self::AppNotExisted,
            // `AccessError` is non-exhaustive: anything new is a refusal of access.
            _ => Self::AppNotAuthorized,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Invalid(i) => i.into(),
            CreateError::Access(a) => a.into(),
            CreateError::DeviceNotFound => Self::DeviceNotFound,
            CreateError::DeviceQueueFull { limit, .. } => Self::DeviceQueueFull { limit },
            CreateError::Overloaded { .. } => Self::Overloaded("live-command bound reached"),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::Access(a) => a.into(),
            CancelError::CommandNotFound => Self::CommandNotFound,
            CancelError::Store(e) => e.into(),
            CancelError::NotCancellable { status } => Self::NotCancellable {
                status: status.as_str(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CancelTaskError> for ApiError {
    fn from(e: CancelTaskError) -> Self {
        match e {
            CancelTaskError::Access(a) => a.into(),
            CancelTaskError::DeviceNotFound => Self::DeviceNotFound,
            CancelTaskError::Overloaded => Self::Overloaded("too many waiting cancel tasks"),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(i) => i.into(),
            QueryError::Access(a) => a.into(),
            QueryError::DeviceNotFound => Self::DeviceNotFound,
            QueryError::CommandNotFound => Self::CommandNotFound,
            QueryError::TaskNotFound => Self::TaskNotFound,
            QueryError::Store(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(i) => i.into(),
            RegistryError::Access(a) => a.into(),
            RegistryError::AppNotExisted => Self::AppNotExisted,
            RegistryError::DeviceExists => Self::DeviceExists,
            RegistryError::DeviceNotFound => Self::DeviceNotFound,
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_numeric_and_gateway_codes_use_the_gateway_shape() {
        let all = [
            ApiError::invalid("f", "r"),
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::AppKeyMissing,
            ApiError::BadToken,
            ApiError::Throttled { retry_after_s: 1 },
            ApiError::LoginFailed,
            ApiError::AppNotExisted,
            ApiError::AppNotAuthorized,
            ApiError::DeviceNotFound,
            ApiError::DeviceExists,
            ApiError::DeviceQueueFull { limit: 1 },
            ApiError::CommandNotFound,
            ApiError::NotCancellable { status: "SENT" },
            ApiError::TaskNotFound,
            ApiError::Overloaded("x"),
            ApiError::Internal("x".into()),
        ];
        for e in all {
            let w = e.wire();
            assert!(w.code.bytes().all(|b| b.is_ascii_digit()), "{e:?}");
            assert_eq!(w.shape == BodyShape::Gateway, w.code.starts_with("1010"), "{e:?}");
            assert!(!w.strict.is_success(), "{e:?} is a success in strict mode");
        }
    }
}
