//! Login, refresh and logout.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{Issued, Token, verify_secret};
use crate::error::ApiError;
use crate::handlers::json;
use crate::view::TokenView;
use crate::wire::{Credentials, parse_credentials, parse_logout};
use crate::{Api, Authed};

/// Verifies the secret on the blocking pool (Argon2 takes milliseconds of
/// CPU), at most `login_concurrency` at a time.
async fn verify(api: &Arc<Api>, creds: &Credentials) -> Result<(), ApiError> {
    let _slot = api
        .logins
        .try_acquire()
        .map_err(|_| ApiError::Overloaded("too many logins at once"))?;
    // An unknown app costs the same hashing as a known one, so the time of
    // an answer does not tell which appIds exist.
    let stored = api.core()?.app(&creds.app_id).map(|a| a.secret_hash);
    let known = stored.is_some();
    let (api, secret) = (Arc::clone(api), creds.secret.clone());
    let ok = tokio::task::spawn_blocking(move || {
        let hash = match stored {
            Some(h) => h,
            // Made once, on the blocking pool like every hash.
            None => api.decoy_hash()?,
        };
        Ok::<_, ApiError>(verify_secret(&hash, &secret))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if ok && known {
        Ok(())
    } else {
        Err(ApiError::LoginFailed)
    }
}

fn token_response(issued: Issued) -> Result<Response, ApiError> {
    json(
        StatusCode::OK,
        &TokenView {
            access_token: issued.access.to_hex(),
            token_type: "bearer",
            refresh_token: issued.refresh.to_hex(),
            expires_in: issued.expires_in.as_secs(),
            scope: "default",
        },
    )
}

async fn read_credentials(api: &Api, req: Request) -> Result<Credentials, ApiError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = api.body(req).await?;
    parse_credentials(form.as_deref(), &bytes)
}

/// `POST /iocm/app/sec/v1.1.0/login`.
pub(crate) async fn login(State(api): State<Arc<Api>>, req: Request) -> Response {
    let r = async {
        let creds = read_credentials(&api, req).await?;
        verify(&api, &creds).await?;
        tracing::info!(app = %creds.app_id, "login");
        token_response(api.tokens.issue(&creds.app_id, api.clock.now())?)
    };
    api.respond(r.await)
}

/// `POST /iocm/app/sec/v1.1.0/refreshToken`: `{"appId","secret","refreshToken"}`.
pub(crate) async fn refresh(State(api): State<Arc<Api>>, req: Request) -> Response {
    let r = async {
        let creds = read_credentials(&api, req).await?;
        let presented = creds
            .refresh_token
            .as_deref()
            .ok_or(ApiError::invalid("refreshToken", "is mandatory"))?;
        let presented = Token::parse(presented).ok_or(ApiError::BadToken)?;
        verify(&api, &creds).await?;
        if !api.tokens.check_refresh(&creds.app_id, &presented, api.clock.now()) {
            return Err(ApiError::BadToken);
        }
        token_response(api.tokens.issue(&creds.app_id, api.clock.now())?)
    };
    api.respond(r.await)
}

/// `POST /iocm/app/sec/v1.1.0/logout`: `{"accessToken"}`; 200 with no body.
pub(crate) async fn logout(State(api): State<Arc<Api>>, Authed(app): Authed, req: Request) -> Response {
    let r = async {
        let bytes = api.body(req).await?;
        let token = Token::parse(&parse_logout(&bytes)?).ok_or(ApiError::BadToken)?;
        if !api.tokens.revoke(&app, &token) {
            return Err(ApiError::BadToken);
        }
        Ok(StatusCode::OK.into_response())
    };
    api.respond(r.await)
}
