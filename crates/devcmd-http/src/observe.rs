//! Counts every API call (route, method, status, app) and its latency.
//! Labels come from fixed sets, and apps from the capped [`devcmd_metrics::AppLabels`];
//! an `app_key` that names no registered app is labelled `none`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use devcmd_core::AppId;
use devcmd_metrics::names;
use metrics::{SharedString, counter, histogram};

use crate::{Api, paths};

fn route_label(p: Option<&MatchedPath>) -> &'static str {
    let Some(p) = p else { return "unmatched" };
    match p.as_str() {
        paths::LOGIN => paths::LOGIN,
        paths::REFRESH => paths::REFRESH,
        paths::LOGOUT => paths::LOGOUT,
        paths::DEVICE_CREDENTIALS => paths::DEVICE_CREDENTIALS,
        paths::DEVICE_COMMANDS => paths::DEVICE_COMMANDS,
        paths::CANCEL_TASKS => paths::CANCEL_TASKS,
        "/iocm/app/dm/v1.4.0/devices/{device_id}" => "/iocm/app/dm/v1.4.0/devices/{deviceId}",
        "/iocm/app/cmd/v1.4.0/deviceCommands/{command_id}" => "/iocm/app/cmd/v1.4.0/deviceCommands/{deviceCommandId}",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        _ => "other",
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

pub(crate) async fn observe(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = method_label(req.method());
    let app: SharedString = req
        .headers()
        .get("app_key")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| AppId::new(a).ok())
        .filter(|a| api.core.get().is_some_and(|c| c.app_exists(a)))
        .map_or(SharedString::const_str("none"), |a| api.app_labels.label(&a));
    let resp = next.run(req).await;
    let status = status_label(resp.status().as_u16());
    counter!(names::API_CALLS, "route" => route, "method" => method, "status" => status, "app" => app).increment(1);
    histogram!(names::API_LATENCY_SECONDS, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    resp
}
