//! # devcmd-http
//!
//! The platform's northbound command API (`/iocm/app/...`) over HTTP: a thin
//! [axum](https://docs.rs/axum) router over a [`devcmd_core::Dispatcher`].
//! Applications written for the original platform switch to devcmd by
//! changing the base URL only.
//!
//! No business rule lives here: requests are parsed ([`wire`]), checked
//! (token, quota), handed to the core, and the answer is written in the
//! platform's shapes ([`view`]). Every error goes through one table
//! ([`error`]).
//!
//! A create answers `201` only after the store has synced the command (the
//! core's [`devcmd_core::Receipt`] commit is awaited).
//!
//! ## Embedding
//! [`router`] returns an [`axum::Router`], so a host server can `.nest()` or
//! `.merge()` it. The core is attached once it has recovered; until then the
//! API answers 503/100501 and `/readyz` says not ready.
//!
//! ```
//! use std::sync::Arc;
//! use devcmd_core::{CoreConfig, Dispatcher, SystemClock};
//! use devcmd_http::{Api, ApiConfig, router};
//!
//! let api = Arc::new(Api::new(ApiConfig::default(), Arc::new(SystemClock))?);
//! let app: axum::Router = router(api.clone());
//! let core = Arc::new(Dispatcher::builder(CoreConfig::default()).build()?);
//! api.attach(core); // ready
//! assert!(api.is_ready());
//! # drop(app);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Choices where the platform is silent
//! - Tokens are kept in memory: after a restart applications log in again.
//! - Login failures answer 401/100208; a bad refresh token answers 1010005.
//! - Logout needs the usual `app_key` and `Authorization` headers and a body
//!   `{"accessToken"}` naming the current token; it answers 200 with no body.
//! - Registration answers 200; removing a device answers 204.
//! - Unset optional fields of a command are `null`, not absent.
//! - `paras` may be left out (stored as `{}`); when given it must be a JSON object.
//! - Query windows are `[startTime, endTime)` on the creation time, oldest first.
//! - Login and refresh are not authenticated calls and do not count against
//!   the quota (password hashing bounds them, see
//!   [`ApiConfig::login_concurrency`]); logout is, and counts.

pub mod auth;
pub mod error;
mod handlers;
mod observe;
pub mod quota;
pub mod time;
pub mod view;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use devcmd_core::{AppId, Clock, Dispatcher, Quota};
use tokio::sync::Semaphore;

pub use auth::{SecretCost, TokenBook, hash_secret, verify_secret};
pub use error::ApiError;
pub use quota::Throttle;

/// Settings of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Answer business errors with honest 4xx statuses instead of the
    /// platform's HTTP 200 (the body is the same).
    pub strict_http_status: bool,
    /// Lifetime of an access token (`expiresIn`), default 3600 s.
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token, default 30 days.
    pub refresh_token_ttl: Duration,
    /// Largest request body, default 64 KiB; larger ones are refused with
    /// 413/100022 before they are read whole.
    pub body_limit_bytes: usize,
    /// The quota of applications that have none of their own.
    pub default_quota: Quota,
    /// Logins (and refreshes) verified at the same time; more get 503/100501.
    /// Bounds the CPU and memory spent on password hashing.
    pub login_concurrency: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            strict_http_status: false,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            body_limit_bytes: 64 * 1024,
            default_quota: Quota::default(),
            login_concurrency: 4,
        }
    }
}

/// The state behind the router: configuration, tokens, quotas and the core.
pub struct Api {
    config: ApiConfig,
    clock: Arc<dyn Clock>,
    tokens: TokenBook,
    throttle: Throttle,
    logins: Semaphore,
    core: OnceLock<Arc<Dispatcher>>,
    draining: AtomicBool,
    app_labels: devcmd_metrics::AppLabels,
    call_metrics: observe::CallMetrics,
    decoy: OnceLock<String>,
}

impl Api {
    /// A new API, not ready until [`Api::attach`] gives it the core.
    pub fn new(config: ApiConfig, clock: Arc<dyn Clock>) -> Result<Self, quota::BadQuota> {
        Ok(Self {
            tokens: TokenBook::new(config.access_token_ttl, config.refresh_token_ttl),
            throttle: Throttle::new(clock.clone(), config.default_quota)?,
            logins: Semaphore::new(config.login_concurrency.max(1)),
            config,
            clock,
            core: OnceLock::new(),
            draining: AtomicBool::new(false),
            app_labels: devcmd_metrics::AppLabels::default(),
            call_metrics: observe::CallMetrics::default(),
            decoy: OnceLock::new(),
        })
    }

    /// Gives the API its core (after recovery): from now on it is ready.
    /// A second call is ignored.
    pub fn attach(&self, core: Arc<Dispatcher>) {
        let _ = self.core.set(core);
    }

    /// Whether the core is attached and the server is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.core.get().is_some() && !self.draining.load(Ordering::Relaxed)
    }

    /// Marks the server as shutting down: `/readyz` answers 503 so load
    /// balancers stop sending, while requests in flight finish.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// A hash of a random secret at the standard cost, verified in place of
    /// an unknown app's (made once, on first need).
    fn decoy_hash(&self) -> Result<String, ApiError> {
        if let Some(h) = self.decoy.get() {
            return Ok(h.clone());
        }
        let secret = auth::Token::generate()?.to_hex();
        let h = hash_secret(&secret, SecretCost::Standard)?;
        Ok(self.decoy.get_or_init(|| h).clone())
    }

    fn core(&self) -> Result<&Arc<Dispatcher>, ApiError> {
        self.core.get().ok_or(ApiError::Overloaded("still recovering"))
    }

    /// The core, for a call that will write: refused with 503/100501 while the
    /// store is backlogged, so request threads never block on a full queue.
    fn writable_core(&self) -> Result<&Arc<Dispatcher>, ApiError> {
        let core = self.core()?;
        if core.store_backlogged() {
            return Err(ApiError::Overloaded("the store is backlogged"));
        }
        Ok(core)
    }

    /// Runs `op` on the core: off the async workers (`spawn_blocking`) when
    /// the core has a history, whose reads are disk reads and may wait for a
    /// store batch; inline otherwise (memory only, microseconds).
    async fn on_core<T, E>(
        &self,
        core: &Arc<Dispatcher>,
        op: impl FnOnce(&Dispatcher) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        if !core.has_history() {
            return op(core).map_err(Into::into);
        }
        let core = Arc::clone(core);
        match tokio::task::spawn_blocking(move || op(&core)).await {
            Ok(r) => r.map_err(Into::into),
            Err(e) => Err(ApiError::Internal(format!("query task failed: {e}"))),
        }
    }

    /// Waits until every change a query may have shown (in the shard of
    /// `device`, or in all shards) is durable: nobody is told of a status
    /// the store could still lose.
    async fn visible_durable(&self, core: &Dispatcher, device: Option<&devcmd_core::DeviceId>) -> Result<(), ApiError> {
        for commit in core.visible_durable(device) {
            commit.await?;
        }
        Ok(())
    }

    fn fail(&self, e: ApiError) -> Response {
        e.into_response_with(self.config.strict_http_status)
    }

    fn respond(&self, r: Result<Response, ApiError>) -> Response {
        r.unwrap_or_else(|e| self.fail(e))
    }

    /// Checks `app_key` and `Authorization: Bearer`, then counts the call
    /// against the application's quota.
    fn authenticate(&self, headers: &HeaderMap) -> Result<AppId, ApiError> {
        let app = headers.get("app_key").ok_or(ApiError::AppKeyMissing)?;
        let app = app
            .to_str()
            .ok()
            .and_then(|a| AppId::new(a).ok())
            .ok_or(ApiError::BadToken)?;
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| auth::Token::parse(t.trim()))
            .ok_or(ApiError::BadToken)?;
        if !self.tokens.check_access(&app, &token, self.clock.now()) {
            return Err(ApiError::BadToken);
        }
        let own_quota = || self.core.get().and_then(|c| c.app(&app)).and_then(|a| a.quota);
        self.throttle.check(&app, own_quota).map_err(|retry_after_s| {
            metrics::counter!(devcmd_metrics::names::API_THROTTLED, "app" => self.app_labels.label(&app)).increment(1);
            ApiError::Throttled { retry_after_s }
        })?;
        Ok(app)
    }

    /// Reads a body up to the limit; a declared length over it is refused
    /// before anything is read.
    async fn body(&self, req: axum::extract::Request) -> Result<Bytes, ApiError> {
        let limit = self.config.body_limit_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::BodyTooLarge { limit });
        }
        axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::BodyTooLarge { limit })
    }
}

/// An authenticated application (the extractor of every call but login and refresh).
#[derive(Debug, Clone)]
pub struct Authed(pub AppId);

impl FromRequestParts<Arc<Api>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Self::Rejection> {
        api.authenticate(&parts.headers).map(Authed).map_err(|e| api.fail(e))
    }
}

/// The platform's API paths.
pub mod paths {
    /// Login.
    pub const LOGIN: &str = "/iocm/app/sec/v1.1.0/login";
    /// Refresh a token.
    pub const REFRESH: &str = "/iocm/app/sec/v1.1.0/refreshToken";
    /// Logout.
    pub const LOGOUT: &str = "/iocm/app/sec/v1.1.0/logout";
    /// Register a device.
    pub const DEVICE_CREDENTIALS: &str = "/iocm/app/reg/v1.1.0/deviceCredentials";
    /// Delete a device (`/{deviceId}`).
    pub const DEVICES: &str = "/iocm/app/dm/v1.4.0/devices";
    /// Create and query commands; cancel one (`/{deviceCommandId}`).
    pub const DEVICE_COMMANDS: &str = "/iocm/app/cmd/v1.4.0/deviceCommands";
    /// Create and query cancel tasks.
    pub const CANCEL_TASKS: &str = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks";
}

/// The API's routes, ready to be served or nested into a host's router.
pub fn router(api: Arc<Api>) -> Router {
    use handlers::{commands, devices, health, sec, tasks};
    Router::new()
        .route(paths::LOGIN, post(sec::login))
        .route(paths::REFRESH, post(sec::refresh))
        .route(paths::LOGOUT, post(sec::logout))
        .route(paths::DEVICE_CREDENTIALS, post(devices::register))
        .route(&format!("{}/{{device_id}}", paths::DEVICES), delete(devices::remove))
        .route(paths::DEVICE_COMMANDS, post(commands::create).get(commands::list))
        .route(
            &format!("{}/{{command_id}}", paths::DEVICE_COMMANDS),
            put(commands::cancel),
        )
        .route(paths::CANCEL_TASKS, post(tasks::create).get(tasks::list))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::middleware::from_fn_with_state(api.clone(), observe::observe))
        .with_state(api)
}
