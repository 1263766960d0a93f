//! Login, refresh, logout, the headers every call needs, and the quota.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use devcmd_core::CoreConfig;
use devcmd_http::ApiConfig;

const LOGIN: &str = "/iocm/app/sec/v1.1.0/login";
const REFRESH: &str = "/iocm/app/sec/v1.1.0/refreshToken";
const LOGOUT: &str = "/iocm/app/sec/v1.1.0/logout";
const COMMANDS: &str = "/iocm/app/cmd/v1.4.0/deviceCommands";

#[tokio::test]
async fn login_answers_the_platforms_token_shape_for_form_and_json() {
    let t = TestApi::new();
    let form = t
        .call(
            Method::POST,
            LOGIN,
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("appId=app-a&secret={SECRET}"),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK);
    let v = form.json();
    // The platform's field order, on the wire.
    let text = String::from_utf8(form.body.clone()).unwrap();
    let at = |k: &str| {
        text.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} missing in {text}"))
    };
    let order = ["accessToken", "tokenType", "refreshToken", "expiresIn", "scope"].map(at);
    assert!(order.is_sorted(), "{text}");
    assert_eq!(v.as_object().unwrap().len(), 5);
    assert_eq!(
        (v["tokenType"].as_str(), v["expiresIn"].as_u64(), v["scope"].as_str()),
        (Some("bearer"), Some(3600), Some("default"))
    );
    assert_eq!(v["accessToken"].as_str().unwrap().len(), 64);
    assert_ne!(v["accessToken"], v["refreshToken"]);

    let json = t
        .call(
            Method::POST,
            LOGIN,
            &[("content-type", "application/json")],
            format!(r#"{{"appId":"app-a","secret":"{SECRET}"}}"#),
        )
        .await;
    assert_eq!(json.status, StatusCode::OK);
    assert_ne!(json.json()["accessToken"], v["accessToken"]);
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_app_or_bad_body_is_refused() {
    let t = TestApi::new();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    t.call(Method::POST, LOGIN, &form, "appId=app-a&secret=wrong")
        .await
        .business(401, "100208");
    t.call(Method::POST, LOGIN, &form, format!("appId=nobody&secret={SECRET}"))
        .await
        .business(401, "100208");
    t.call(Method::POST, LOGIN, &form, "appId=app-a")
        .await
        .business(400, "100022");
    t.call(
        Method::POST,
        LOGIN,
        &[("content-type", "application/json")],
        "{not json",
    )
    .await
    .business(400, "100022");
}

#[tokio::test]
async fn only_the_newest_token_of_an_app_is_valid() {
    let t = TestApi::new();
    let first = t.login("app-a").await;
    assert_eq!(
        t.as_app("app-a", &first, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
    let second = t.login("app-a").await;
    t.as_app("app-a", &first, Method::GET, COMMANDS, "").await.gateway(
        403,
        "1010005",
        "Invalid access token or appId.",
    );
    assert_eq!(
        t.as_app("app-a", &second, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
    // Another app's login changes nothing for app-a.
    let _b = t.login("app-b").await;
    assert_eq!(
        t.as_app("app-a", &second, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_expire_after_expires_in() {
    let t = TestApi::new();
    let token = t.login("app-a").await;
    t.clock.advance(Duration::from_secs(3599));
    assert_eq!(
        t.as_app("app-a", &token, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
    t.clock.advance(Duration::from_secs(1));
    t.as_app("app-a", &token, Method::GET, COMMANDS, "").await.gateway(
        403,
        "1010005",
        "Invalid access token or appId.",
    );
}

#[tokio::test]
async fn every_call_but_login_needs_app_key_and_a_matching_bearer_token() {
    let t = TestApi::new();
    let token = t.login("app-a").await;
    let bearer = format!("Bearer {token}");
    // No app_key: the platform's 500/100220 in the business shape.
    t.call(Method::GET, COMMANDS, &[("authorization", &bearer)], "")
        .await
        .business(500, "100220");
    // No token, a wrong token, a token of another app, no "Bearer ".
    t.call(Method::GET, COMMANDS, &[("app_key", "app-a")], "")
        .await
        .gateway(403, "1010005", "Invalid access token or appId.");
    let wrong = format!("Bearer {}", "0".repeat(64));
    t.call(
        Method::GET,
        COMMANDS,
        &[("app_key", "app-a"), ("authorization", &wrong)],
        "",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(
        Method::GET,
        COMMANDS,
        &[("app_key", "app-b"), ("authorization", &bearer)],
        "",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(
        Method::GET,
        COMMANDS,
        &[("app_key", "app-a"), ("authorization", &token)],
        "",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(
        Method::POST,
        "/iocm/app/reg/v1.1.0/deviceCredentials",
        &[("app_key", "app-a")],
        "{}",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(
        Method::POST,
        "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks",
        &[("app_key", "app-a")],
        "{}",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(
        Method::PUT,
        &format!("{COMMANDS}/{}", "1".repeat(32)),
        &[("app_key", "app-a")],
        "{}",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(
        Method::DELETE,
        "/iocm/app/dm/v1.4.0/devices/x",
        &[("app_key", "app-a")],
        "",
    )
    .await
    .gateway(403, "1010005", "Invalid access token or appId.");
    t.call(Method::POST, LOGOUT, &[("app_key", "app-a")], "{}")
        .await
        .gateway(403, "1010005", "Invalid access token or appId.");
}

#[tokio::test]
async fn refresh_issues_a_new_pair_and_retires_the_old_one() {
    let t = TestApi::new();
    let login = t
        .call(
            Method::POST,
            LOGIN,
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("appId=app-a&secret={SECRET}"),
        )
        .await
        .json();
    let (access, refresh) = (
        login["accessToken"].as_str().unwrap(),
        login["refreshToken"].as_str().unwrap(),
    );
    let body = format!(r#"{{"appId":"app-a","secret":"{SECRET}","refreshToken":"{refresh}"}}"#);
    let r = t
        .call(
            Method::POST,
            REFRESH,
            &[("content-type", "application/json")],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_access = r.json()["accessToken"].as_str().unwrap().to_owned();
    t.as_app("app-a", access, Method::GET, COMMANDS, "").await.gateway(
        403,
        "1010005",
        "Invalid access token or appId.",
    );
    assert_eq!(
        t.as_app("app-a", &new_access, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
    // The same refresh token cannot be used twice.
    t.call(Method::POST, REFRESH, &[("content-type", "application/json")], body)
        .await
        .gateway(403, "1010005", "Invalid access token or appId.");
    let wrong_secret = format!(r#"{{"appId":"app-a","secret":"nope","refreshToken":"{refresh}"}}"#);
    t.call(Method::POST, REFRESH, &[], wrong_secret)
        .await
        .business(401, "100208");
    let missing = format!(r#"{{"appId":"app-a","secret":"{SECRET}"}}"#);
    t.call(Method::POST, REFRESH, &[], missing)
        .await
        .business(400, "100022");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let t = TestApi::new();
    let token = t.login("app-a").await;
    let r = t
        .as_app(
            "app-a",
            &token,
            Method::POST,
            LOGOUT,
            &format!(r#"{{"accessToken":"{token}"}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    t.as_app("app-a", &token, Method::GET, COMMANDS, "").await.gateway(
        403,
        "1010005",
        "Invalid access token or appId.",
    );
}

#[tokio::test]
async fn the_quota_accepts_exactly_100_then_refuses_until_refilled_and_apps_do_not_share() {
    let t = TestApi::new();
    let a = t.login("app-a").await;
    let b = t.login("app-b").await;
    for i in 0..100 {
        let r = t.as_app("app-a", &a, Method::GET, COMMANDS, "").await;
        assert_eq!(r.status, StatusCode::OK, "call {i}");
    }
    let r = t.as_app("app-a", &a, Method::GET, COMMANDS, "").await;
    r.gateway(403, "1010009", "app throttle exceed.");
    assert_eq!(r.headers["retry-after"], "1");
    // Another app is untouched.
    assert_eq!(
        t.as_app("app-b", &b, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
    // One call comes back every 600 ms.
    t.clock.advance(Duration::from_millis(599));
    t.as_app("app-a", &a, Method::GET, COMMANDS, "")
        .await
        .gateway(403, "1010009", "app throttle exceed.");
    t.clock.advance(Duration::from_millis(1));
    assert_eq!(
        t.as_app("app-a", &a, Method::GET, COMMANDS, "").await.status,
        StatusCode::OK
    );
    t.as_app("app-a", &a, Method::GET, COMMANDS, "")
        .await
        .gateway(403, "1010009", "app throttle exceed.");
    // Refused calls are not answered by the core: nothing was created by them.
    assert_eq!(t.core.stats().live, 0);
}

#[tokio::test]
async fn an_apps_own_quota_overrides_the_default() {
    let t = TestApi::new();
    t.core
        .update_app(app("app-c", Some(devcmd_core::Quota { calls: 3, period_s: 60 }), &[]))
        .unwrap()
        .durable()
        .unwrap();
    let c = t.login("app-c").await;
    for _ in 0..3 {
        assert_eq!(
            t.as_app("app-c", &c, Method::GET, COMMANDS, "").await.status,
            StatusCode::OK
        );
    }
    let r = t.as_app("app-c", &c, Method::GET, COMMANDS, "").await;
    r.gateway(403, "1010009", "app throttle exceed.");
    assert_eq!(r.headers["retry-after"], "20");
}

#[tokio::test]
async fn strict_mode_gives_honest_statuses_with_the_same_bodies() {
    let t = TestApi::with(
        ApiConfig {
            strict_http_status: true,
            ..ApiConfig::default()
        },
        CoreConfig::default(),
    );
    let token = t.login("app-a").await;
    t.call(Method::GET, COMMANDS, &[("app_key", "app-a")], "")
        .await
        .gateway(401, "1010005", "Invalid access token or appId.");
    t.call(Method::GET, COMMANDS, &[], "").await.business(400, "100220");
    let unknown = "92d3f8da-200a-4143-8d0d-591a7e11de6c";
    t.create("app-a", &token, unknown, "").await.business(404, "100418");
    t.as_app("app-a", &token, Method::GET, &format!("{COMMANDS}?appId=app-c"), "")
        .await
        .business(403, "100217");
    t.as_app("app-a", &token, Method::GET, &format!("{COMMANDS}?appId=nobody"), "")
        .await
        .business(404, "100203");
    for _ in 0..97 {
        t.as_app("app-a", &token, Method::GET, COMMANDS, "").await;
    }
    t.as_app("app-a", &token, Method::GET, COMMANDS, "")
        .await
        .gateway(429, "1010009", "app throttle exceed.");
}

#[tokio::test]
async fn health_and_readiness() {
    use std::sync::Arc;
    let clock = devcmd_core::VirtualClock::new(devcmd_core::Timestamp::from_millis(T0_MS));
    let api = Arc::new(devcmd_http::Api::new(ApiConfig::default(), Arc::new(clock)).unwrap());
    let router = devcmd_http::router(api.clone());
    let get = |uri: &'static str| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
            router.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(get("/healthz").await, StatusCode::OK);
    assert_eq!(get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    // Login before the core is attached: 503/100501, not a crash.
    let req = axum::http::Request::post(LOGIN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("appId=a&secret=b"))
        .unwrap();
    use tower::ServiceExt;
    let r = router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    api.attach(Arc::new(
        devcmd_core::Dispatcher::builder(CoreConfig::default()).build().unwrap(),
    ));
    assert_eq!(get("/readyz").await, StatusCode::OK);
    api.begin_drain();
    assert_eq!(get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get("/healthz").await, StatusCode::OK);
}
