//! Device registration and removal.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devcmd_core::Caller;

use crate::auth::Token;
use crate::error::ApiError;
use crate::handlers::json;
use crate::view::RegistrationView;
use crate::wire::{parse_app_param, parse_device_id, parse_registration};
use crate::{Api, Authed};

/// `POST /iocm/app/reg/v1.1.0/deviceCredentials?appId=`: 200 with
/// `{"deviceId","verifyCode","timeout","psk"}`, after the device is stored.
pub(crate) async fn register(
    State(api): State<Arc<Api>>,
    Authed(app): Authed,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let r = async {
        let on_behalf_of = parse_app_param(query.as_deref())?;
        let reg = parse_registration(&api.body(req).await?)?;
        let psk = match reg.psk {
            Some(p) => p,
            // 128 random bits as 32 hex characters.
            None => Token::generate()?.to_hex()[..32].to_owned(),
        };
        let receipt = api
            .writable_core()?
            .register_device(&Caller { app, on_behalf_of }, reg.device)?;
        receipt.commit.await?;
        json(
            StatusCode::OK,
            &RegistrationView {
                device_id: receipt.value.id.to_string(),
                verify_code: reg.verify_code,
                timeout: reg.timeout_s,
                psk,
            },
        )
    };
    api.respond(r.await)
}

/// `DELETE /iocm/app/dm/v1.4.0/devices/{deviceId}?appId=`: 204. Its PENDING
/// commands end CANCELED, those in flight TIMEOUT.
pub(crate) async fn remove(
    State(api): State<Arc<Api>>,
    Authed(app): Authed,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let r = async {
        let on_behalf_of = parse_app_param(query.as_deref())?;
        let Path(device_id) = path.map_err(|_| ApiError::invalid("deviceId", "not valid UTF-8"))?;
        let id = parse_device_id("deviceId", &device_id)?;
        let receipt = api.writable_core()?.remove_device(&Caller { app, on_behalf_of }, &id)?;
        receipt.commit.await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    api.respond(r.await)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_generated_psk_is_32_hex_characters() {
        let psk = super::Token::generate().unwrap().to_hex()[..32].to_owned();
        assert_eq!(psk.len(), 32);
        assert!(psk.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
