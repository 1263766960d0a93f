//! Devices, commands, queries, cancels and cancel tasks through the router.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use devcmd_core::{CoreConfig, StoreError};
use serde_json::{Value, json};

const COMMANDS: &str = "/iocm/app/cmd/v1.4.0/deviceCommands";
const TASKS: &str = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks";
const REG: &str = "/iocm/app/reg/v1.1.0/deviceCredentials";
const UNKNOWN_DEVICE: &str = "92d3f8da-200a-4143-8d0d-591a7e11de6c";

async fn setup() -> (TestApi, String, String) {
    let t = TestApi::roomy(CoreConfig::default());
    let token = t.login("app-a").await;
    let device = t.register("app-a", &token, "imei-0001").await;
    (t, token, device)
}

fn is_hex32(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

#[tokio::test]
async fn registration_answers_id_verify_code_timeout_and_psk() {
    let t = TestApi::roomy(CoreConfig::default());
    let token = t.login("app-a").await;
    let r = t
        .as_app(
            "app-a",
            &token,
            Method::POST,
            REG,
            r#"{"nodeId":"imei-7","verifyCode":"vc-7","timeout":300}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let id = v["deviceId"].as_str().unwrap();
    // A UUID with hyphens, as the platform's device ids.
    assert_eq!(id.len(), 36);
    assert_eq!(id.matches('-').count(), 4);
    assert_eq!(
        (v["verifyCode"].as_str(), v["timeout"].as_u64()),
        (Some("vc-7"), Some(300))
    );
    assert!(is_hex32(&v["psk"]));
    t.as_app("app-a", &token, Method::POST, REG, r#"{"nodeId":""}"#)
        .await
        .business(400, "100022");
    t.as_app("app-a", &token, Method::POST, REG, r#"{"nodeId":"n","timeout":-5}"#)
        .await
        .business(400, "100022");
    t.as_app(
        "app-a",
        &token,
        Method::POST,
        &format!("{REG}?appId=app-c"),
        r#"{"nodeId":"n"}"#,
    )
    .await
    .business(200, "100217");
}

#[tokio::test]
async fn a_created_command_has_every_field_of_device_command_resp() {
    let (t, token, device) = setup().await;
    let r = t
        .create(
            "app-a",
            &token,
            &device,
            r#","callbackUrl":"http://127.0.0.1:9999/cb","maxRetransmit":2"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert!(is_hex32(&v["commandId"]), "{v}");
    assert_eq!(
        v,
        json!({
            "commandId": v["commandId"], "appId": "app-a", "deviceId": device,
            "command": {"serviceId": "Light", "method": "SET", "paras": {"on": true}},
            "callbackUrl": "http://127.0.0.1:9999/cb", "expireTime": null, "status": "PENDING", "result": null,
            "creationTime": "20170222T164000Z", "executeTime": null, "platformIssuedTime": null,
            "deliveredTime": null, "issuedTimes": 0, "maxRetransmit": 2
        })
    );
}

#[tokio::test]
async fn an_immediate_command_is_already_sent_and_times_out_when_nobody_answers() {
    let (t, token, device) = setup().await;
    let r = t.create("app-a", &token, &device, r#","expireTime":0"#).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!(
        (v["status"].as_str(), v["expireTime"].as_u64()),
        (Some("SENT"), Some(0))
    );
    assert_eq!(v["platformIssuedTime"], "20170222T164000Z");
    t.advance(Duration::from_secs(181));
    let page = t.as_app("app-a", &token, Method::GET, COMMANDS, "").await.json();
    assert_eq!(page["data"][0]["status"], "TIMEOUT");
}

#[tokio::test]
async fn create_refuses_bad_input_and_foreign_or_unknown_devices() {
    let (t, token, device) = setup().await;
    for extra in [
        r#","expireTime":-1"#,
        r#","maxRetransmit":4"#,
        r#","expireTime":"1""#,
        r#","callbackUrl":"""#,
    ] {
        t.create("app-a", &token, &device, extra).await.business(400, "100022");
    }
    let long_method = format!(
        r#"{{"deviceId":"{device}","command":{{"serviceId":"S","method":"{}"}}}}"#,
        "m".repeat(129)
    );
    t.as_app("app-a", &token, Method::POST, COMMANDS, &long_method)
        .await
        .business(400, "100022");
    t.as_app("app-a", &token, Method::POST, COMMANDS, "{")
        .await
        .business(400, "100022");
    t.as_app("app-a", &token, Method::POST, COMMANDS, r#"{"deviceId":"x"}"#)
        .await
        .business(400, "100022");
    t.create("app-a", &token, UNKNOWN_DEVICE, "")
        .await
        .business(200, "100418");
    // app-c's token on app-a's device: not its device.
    let c = t.login("app-c").await;
    t.create("app-c", &c, &device, "").await.business(200, "100418");
    assert_eq!(t.core.stats().created, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let (t, token, device) = setup().await;
    let big = format!(
        r#"{{"deviceId":"{device}","command":{{"serviceId":"S","method":"M","paras":{{"p":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    t.as_app("app-a", &token, Method::POST, COMMANDS, &big)
        .await
        .business(413, "100022");
}

#[tokio::test]
async fn a_full_device_queue_and_the_live_bound_are_refused_with_their_codes() {
    let t = TestApi::roomy(CoreConfig {
        device_live_max: 2,
        ..CoreConfig::default()
    });
    let token = t.login("app-a").await;
    let device = t.register("app-a", &token, "n").await;
    for _ in 0..2 {
        assert_eq!(t.create("app-a", &token, &device, "").await.status, StatusCode::CREATED);
    }
    t.create("app-a", &token, &device, "").await.business(400, "100223");

    let t = TestApi::roomy(CoreConfig {
        live_max: 4,
        ..CoreConfig::default()
    });
    let token = t.login("app-a").await;
    let mut refused = 0;
    for i in 0..40 {
        let device = t.register("app-a", &token, &format!("n{i}")).await;
        let r = t.create("app-a", &token, &device, "").await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            r.business(503, "100501");
            refused += 1;
        } else {
            assert_eq!(r.status, StatusCode::CREATED);
        }
    }
    assert!(refused > 0, "the live bound never refused");
    assert!(t.core.stats().live <= 4);
}

#[tokio::test]
async fn a_backlogged_store_refuses_writes_with_503_and_still_answers_reads() {
    let (t, token, device) = setup().await;
    let id = t.create("app-a", &token, &device, "").await.json()["commandId"].clone();
    t.store.backlogged.store(true, std::sync::atomic::Ordering::SeqCst);
    t.create("app-a", &token, &device, "").await.business(503, "100501");
    let put = format!("{COMMANDS}/{}", id.as_str().unwrap());
    t.as_app("app-a", &token, Method::PUT, &put, r#"{"status":"CANCELED"}"#)
        .await
        .business(503, "100501");
    let task = format!(r#"{{"deviceId":"{device}"}}"#);
    t.as_app("app-a", &token, Method::POST, TASKS, &task)
        .await
        .business(503, "100501");
    t.as_app("app-a", &token, Method::POST, REG, r#"{"nodeId":"n2"}"#)
        .await
        .business(503, "100501");
    let page = t.as_app("app-a", &token, Method::GET, COMMANDS, "").await;
    assert_eq!(page.status, StatusCode::OK);
    t.store.backlogged.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(t.create("app-a", &token, &device, "").await.status, StatusCode::CREATED);
    assert_eq!(t.core.stats().created, 2);
}

#[tokio::test]
async fn a_query_answers_only_once_the_statuses_it_shows_are_durable() {
    let (t, token, device) = setup().await;
    let id: devcmd_core::CommandId = t.create("app-a", &token, &device, r#","expireTime":0"#).await.json()["commandId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The device answers; memory says SUCCESSFUL, the store has not synced it yet.
    t.store.close_gate();
    let outcome = devcmd_core::CommandOutcome {
        success: true,
        detail: None,
    };
    drop(t.core.result(id, outcome).unwrap());
    let query = {
        let (t, token) = (&t, &token);
        async move { t.as_app("app-a", token, Method::GET, COMMANDS, "").await }
    };
    tokio::pin!(query);
    for _ in 0..50 {
        tokio::select! {
            r = &mut query => panic!("answered {} before SUCCESSFUL was durable", r.status),
            _ = tokio::task::yield_now() => {}
        }
    }
    assert_eq!(t.store.release(Ok(())), 1);
    let page = query.await.json();
    assert_eq!(page["data"][0]["status"], "SUCCESSFUL");
    // With the device filter, only its shard is waited for; the answer is the same.
    let by_device = t
        .as_app(
            "app-a",
            &token,
            Method::GET,
            &format!("{COMMANDS}?deviceId={device}"),
            "",
        )
        .await;
    assert_eq!(by_device.json()["data"][0]["status"], "SUCCESSFUL");
}

#[tokio::test]
async fn created_answers_only_after_the_store_synced_and_a_failed_sync_is_an_error() {
    let (t, token, device) = setup().await;
    t.store.close_gate();
    let pending = {
        let t = &t;
        let (token, device) = (token.clone(), device.clone());
        async move { t.create("app-a", &token, &device, "").await }
    };
    tokio::pin!(pending);
    // Poll the request until its commit is held: it must not answer yet.
    for _ in 0..50 {
        tokio::select! {
            r = &mut pending => panic!("answered {} before the commit", r.status),
            _ = tokio::task::yield_now() => {}
        }
    }
    assert_eq!(t.store.release(Ok(())), 1);
    assert_eq!(pending.await.status, StatusCode::CREATED);

    // A failed sync: the application is told, with 500/100001.
    let failing = {
        let t = &t;
        async move { t.create("app-a", &token, &device, "").await }
    };
    tokio::pin!(failing);
    loop {
        tokio::select! {
            r = &mut failing => panic!("answered {} before the commit", r.status),
            _ = tokio::task::yield_now() => {}
        }
        if t.store.release(Err(StoreError::Io("disk on fire".into()))) == 1 {
            break;
        }
    }
    let failed = failing.await;
    failed.business(500, "100001");
    // The reason stays in the server's log: not in the body, not in the detail header.
    assert_eq!(failed.headers["x-devcmd-error-detail"], "internal error");
    assert!(!String::from_utf8_lossy(&failed.body).contains("disk"));
}

#[tokio::test]
async fn queries_page_from_zero_count_everything_and_filter_by_time_and_device() {
    let (t, token, d1) = setup().await;
    let d2 = t.register("app-a", &token, "imei-0002").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let dev = if i % 2 == 0 { &d1 } else { &d2 };
        ids.push(t.create("app-a", &token, dev, "").await.json()["commandId"].clone());
        t.clock.advance(Duration::from_secs(10));
    }
    let get = |q: String| {
        let (t, token) = (&t, &token);
        async move {
            t.as_app("app-a", token, Method::GET, &format!("{COMMANDS}{q}"), "")
                .await
        }
    };
    let all = get(String::new()).await.json();
    assert_eq!(
        all["pagination"],
        json!({"pageNo": 0, "pageSize": 1000, "totalSize": 5})
    );
    let got: Vec<Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["commandId"].clone())
        .collect();
    assert_eq!(got, ids, "oldest first");

    let p1 = get("?pageNo=1&pageSize=2".into()).await.json();
    assert_eq!(p1["pagination"], json!({"pageNo": 1, "pageSize": 2, "totalSize": 5}));
    assert_eq!(
        p1["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["commandId"].clone())
            .collect::<Vec<_>>(),
        ids[2..4]
    );
    let past = get("?pageNo=9&pageSize=2".into()).await.json();
    assert_eq!(
        (
            past["pagination"]["totalSize"].as_u64(),
            past["data"].as_array().unwrap().len()
        ),
        (Some(5), 0)
    );

    // Created at +0, +10, +20, +30, +40 s: [+10, +30) holds two.
    let window = get("?startTime=20170222T164010Z&endTime=20170222T164030Z".into())
        .await
        .json();
    assert_eq!(window["pagination"]["totalSize"], 2);
    assert_eq!(window["data"][0]["commandId"], ids[1]);
    let by_device = get(format!("?deviceId={d2}")).await.json();
    assert_eq!(by_device["pagination"]["totalSize"], 2);
    assert!(
        by_device["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["deviceId"] == d2.as_str())
    );

    get(format!("?deviceId={UNKNOWN_DEVICE}")).await.business(200, "100418");
    for bad in [
        "?pageSize=0",
        "?pageSize=1001",
        "?pageNo=-1",
        "?startTime=2017-02-22T16:40:10Z",
        "?endTime=20170222",
    ] {
        get(bad.into()).await.business(400, "100022");
    }
}

#[tokio::test]
async fn an_authorised_app_acts_through_app_id_and_others_are_refused() {
    let (t, token, device) = setup().await;
    let b = t.login("app-b").await;
    let c = t.login("app-c").await;
    // app-a has authorised app-b.
    let r = t.create("app-b", &b, &device, "").await;
    r.business(200, "100418"); // without ?appId= app-b acts on its own devices
    let body = format!(r#"{{"deviceId":"{device}","command":{{"serviceId":"S","method":"M"}}}}"#);
    let r = t
        .as_app("app-b", &b, Method::POST, &format!("{COMMANDS}?appId=app-a"), &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["appId"], "app-a");
    let page = t
        .as_app("app-b", &b, Method::GET, &format!("{COMMANDS}?appId=app-a"), "")
        .await
        .json();
    assert_eq!(page["pagination"]["totalSize"], 1);
    // Its own appId in ?appId= is its own scope.
    let own = t
        .as_app("app-a", &token, Method::GET, &format!("{COMMANDS}?appId=app-a"), "")
        .await
        .json();
    assert_eq!(own["pagination"]["totalSize"], 1);
    // app-c is not authorised; an unknown app does not exist.
    t.as_app("app-c", &c, Method::GET, &format!("{COMMANDS}?appId=app-a"), "")
        .await
        .business(200, "100217");
    t.as_app("app-c", &c, Method::POST, &format!("{COMMANDS}?appId=app-a"), &body)
        .await
        .business(200, "100217");
    t.as_app("app-c", &c, Method::GET, &format!("{COMMANDS}?appId=ghost"), "")
        .await
        .business(200, "100203");
    let task = format!(r#"{{"deviceId":"{device}"}}"#);
    t.as_app("app-c", &c, Method::POST, &format!("{TASKS}?appId=app-a"), &task)
        .await
        .business(200, "100217");
    t.as_app("app-c", &c, Method::POST, &format!("{TASKS}?appId=ghost"), &task)
        .await
        .business(200, "100203");
}

#[tokio::test]
async fn cancel_works_on_pending_only_and_says_why_otherwise() {
    let (t, token, device) = setup().await;
    let id = t.create("app-a", &token, &device, "").await.json()["commandId"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |id: String, body: &'static str| {
        let (t, token) = (&t, &token);
        async move {
            t.as_app("app-a", token, Method::PUT, &format!("{COMMANDS}/{id}"), body)
                .await
        }
    };
    put(id.clone(), r#"{"status":"CANCELLED"}"#)
        .await
        .business(400, "100022");
    put(id.clone(), r#"{}"#).await.business(400, "100022");
    let r = put(id.clone(), r#"{"status":"CANCELED"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.json()["commandId"].as_str(), r.json()["status"].as_str()),
        (Some(id.as_str()), Some("CANCELED"))
    );
    put(id.clone(), r#"{"status":"CANCELED"}"#)
        .await
        .business(200, "100435");
    put("0".repeat(32), r#"{"status":"CANCELED"}"#)
        .await
        .business(200, "100434");
    put("not-an-id".into(), r#"{"status":"CANCELED"}"#)
        .await
        .business(400, "100022");
    let sent = t.create("app-a", &token, &device, r#","expireTime":0"#).await.json()["commandId"]
        .as_str()
        .unwrap()
        .to_owned();
    put(sent, r#"{"status":"CANCELED"}"#).await.business(200, "100435");
    // Another app cannot see it.
    let c = t.login("app-c").await;
    t.as_app(
        "app-c",
        &c,
        Method::PUT,
        &format!("{COMMANDS}/{id}"),
        r#"{"status":"CANCELED"}"#,
    )
    .await
    .business(200, "100434");
}

#[tokio::test]
async fn a_cancel_task_is_created_waitting_lists_its_commands_and_ends_success() {
    let (t, token, device) = setup().await;
    let ids: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(t.create("app-a", &token, &device, "").await.json()["commandId"].clone());
        }
        v
    };
    let r = t
        .as_app(
            "app-a",
            &token,
            Method::POST,
            TASKS,
            &format!(r#"{{"deviceId":"{device}"}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let task = r.json();
    assert!(is_hex32(&task["taskId"]));
    assert_eq!(
        (
            task["status"].as_str(),
            task["totalCount"].as_u64(),
            task["appId"].as_str()
        ),
        (Some("WAITTING"), Some(3), Some("app-a"))
    );
    assert_eq!(task["deviceId"], device.as_str());
    let listed: Vec<Value> = task["deviceCommands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["commandId"].clone())
        .collect();
    assert_eq!(listed, ids);

    t.core.tick();
    let q = |s: String| {
        let (t, token) = (&t, &token);
        async move {
            t.as_app("app-a", token, Method::GET, &format!("{TASKS}{s}"), "")
                .await
                .json()
        }
    };
    let page = q(String::new()).await;
    assert_eq!(
        page["pagination"],
        json!({"pageNo": 0, "pageSize": 1000, "totalSize": 1})
    );
    assert_eq!(page["data"][0]["status"], "SUCCESS");
    assert!(
        page["data"][0]["deviceCommands"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "CANCELED")
    );
    let tid = task["taskId"].as_str().unwrap();
    assert_eq!(
        q(format!("?taskId={tid}&status=SUCCESS&deviceId={device}")).await["pagination"]["totalSize"],
        1
    );
    assert_eq!(q("?status=WAITTING".into()).await["pagination"]["totalSize"], 0);
    assert_eq!(
        q("?endTime=20170222T164000Z".into()).await["pagination"]["totalSize"],
        0
    );
    let bad = t
        .as_app("app-a", &token, Method::GET, &format!("{TASKS}?status=DONE"), "")
        .await;
    bad.business(400, "100022");
    t.as_app(
        "app-a",
        &token,
        Method::POST,
        TASKS,
        &format!(r#"{{"deviceId":"{UNKNOWN_DEVICE}"}}"#),
    )
    .await
    .business(200, "100418");
    t.as_app("app-a", &token, Method::POST, TASKS, r#"{"device":"x"}"#)
        .await
        .business(400, "100022");
}

#[tokio::test]
async fn deleting_a_device_cancels_its_pending_commands() {
    let (t, token, device) = setup().await;
    t.create("app-a", &token, &device, "").await;
    let del = format!("/iocm/app/dm/v1.4.0/devices/{device}");
    let r = t.as_app("app-a", &token, Method::DELETE, &del, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let page = t.as_app("app-a", &token, Method::GET, COMMANDS, "").await.json();
    assert_eq!(page["data"][0]["status"], "CANCELED");
    t.as_app("app-a", &token, Method::DELETE, &del, "")
        .await
        .business(200, "100418");
    t.create("app-a", &token, &device, "").await.business(200, "100418");
}
