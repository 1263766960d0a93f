//! Counts every API call (route, method, status, app) and its latency.
//! Labels come from fixed sets, and apps from the capped [`devcmd_metrics::AppLabels`];
//! an `app_key` that names no registered app is labelled `none`.
//!
//! The metric handles are cached per (route, method, status, app), so a call
//! costs one read-locked map lookup and an atomic add, not a registry lookup
//! with label hashing (which was about a tenth of an in-memory create).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use devcmd_core::AppId;
use devcmd_metrics::names;
use hashbrown::{Equivalent, HashMap};
use metrics::{Counter, Histogram, SharedString, counter, histogram};
use parking_lot::RwLock;

use crate::{Api, paths};

const ROUTES: [&str; 11] = [
    "unmatched",
    paths::LOGIN,
    paths::REFRESH,
    paths::LOGOUT,
    paths::DEVICE_CREDENTIALS,
    paths::DEVICE_COMMANDS,
    paths::CANCEL_TASKS,
    "/iocm/app/dm/v1.4.0/devices/{deviceId}",
    "/iocm/app/cmd/v1.4.0/deviceCommands/{deviceCommandId}",
    "/healthz",
    "/readyz",
];
const OTHER_ROUTE: usize = ROUTES.len();
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "other"];
const STATUSES: [u16; 13] = [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 429, 500, 503];
const STATUS_LABELS: [&str; 14] = [
    "200", "201", "204", "400", "401", "403", "404", "405", "409", "413", "429", "500", "503", "other",
];

fn route_index(p: Option<&MatchedPath>) -> usize {
    let Some(p) = p else { return 0 };
    match p.as_str() {
        "/iocm/app/dm/v1.4.0/devices/{device_id}" => 7,
        "/iocm/app/cmd/v1.4.0/deviceCommands/{command_id}" => 8,
        other => ROUTES.iter().position(|r| *r == other).unwrap_or(OTHER_ROUTE),
    }
}

fn route_label(i: usize) -> &'static str {
    ROUTES.get(i).copied().unwrap_or("other")
}

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        _ => 4,
    }
}

fn status_index(code: u16) -> usize {
    STATUSES.iter().position(|s| *s == code).unwrap_or(STATUSES.len())
}

/// A cached call counter's key; `app` is the `app_key` as sent ("" for none).
#[derive(PartialEq, Eq, Hash)]
struct CallKey {
    route: u8,
    method: u8,
    status: u8,
    app: Box<str>,
}

/// The same key, borrowed, for lookups without allocating.
struct CallKeyRef<'a> {
    route: u8,
    method: u8,
    status: u8,
    app: &'a str,
}

impl Hash for CallKeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Must hash exactly as the derived `Hash` of `CallKey` does.
        self.route.hash(h);
        self.method.hash(h);
        self.status.hash(h);
        self.app.hash(h);
    }
}

impl Equivalent<CallKey> for CallKeyRef<'_> {
    fn equivalent(&self, k: &CallKey) -> bool {
        (self.route, self.method, self.status, self.app) == (k.route, k.method, k.status, &*k.app)
    }
}

/// The cached handles.
#[derive(Default)]
pub(crate) struct CallMetrics {
    calls: RwLock<HashMap<CallKey, Counter>>,
    latency: [[OnceLock<Histogram>; METHODS.len()]; ROUTES.len() + 1],
}

impl CallMetrics {
    fn latency(&self, route: usize, method: usize) -> Option<&Histogram> {
        let cell = self.latency.get(route)?.get(method)?;
        Some(cell.get_or_init(
            || histogram!(names::API_LATENCY_SECONDS, "route" => route_label(route), "method" => METHODS[method]),
        ))
    }
}

pub(crate) async fn observe(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_index(req.extensions().get::<MatchedPath>());
    let method = method_index(req.method());
    let app_key: Option<Box<str>> = req
        .headers()
        .get("app_key")
        .and_then(|v| v.to_str().ok())
        .map(Box::from);
    let resp = next.run(req).await;
    let status = status_index(resp.status().as_u16());
    let m = &api.call_metrics;
    let app = app_key.as_deref().unwrap_or("");
    // Indices are below 256: the arrays above are short.
    let key = CallKeyRef {
        route: route as u8,
        method: method as u8,
        status: status as u8,
        app,
    };
    let cached = m.calls.read().get(&key).cloned();
    let counter = cached.unwrap_or_else(|| {
        let registered = (!app.is_empty())
            .then(|| AppId::new(app).ok())
            .flatten()
            .filter(|a| api.core.get().is_some_and(|c| c.app_exists(a)));
        let label: SharedString = registered
            .as_ref()
            .map_or(SharedString::const_str("none"), |a| api.app_labels.label(a));
        let c = counter!(names::API_CALLS,
            "route" => route_label(route),
            "method" => METHODS[method],
            "status" => STATUS_LABELS[status],
            "app" => label);
        // Only registered apps (and no app) get a cache entry: the map stays
        // as small as the registry, whatever app_key strangers send.
        if registered.is_some() || app.is_empty() {
            m.calls.write().insert(
                CallKey {
                    route: key.route,
                    method: key.method,
                    status: key.status,
                    app: Box::from(app),
                },
                c.clone(),
            );
        }
        c
    });
    counter.increment(1);
    if let Some(h) = m.latency(route, method) {
        h.record(started.elapsed().as_secs_f64());
    }
    resp
}
