//! Every request-body and query-string parser of the API on arbitrary bytes:
//! no panic; what parses respects the documented limits; the time format
//! round-trips.
#![no_main]

use arbitrary::Arbitrary;
use devcmd_core::PAGE_SIZE_MAX;
use devcmd_http::{time, wire};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Credentials { form: bool, body: &'a [u8] },
    Logout(&'a [u8]),
    Registration(&'a [u8]),
    CreateCommand(&'a [u8]),
    CancelCommand(&'a [u8]),
    CreateCancelTask(&'a [u8]),
    CommandQuery(&'a str),
    TaskQuery(&'a str),
    AppParam(&'a str),
    CommandId(&'a str),
    Time(&'a str),
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Credentials { form, body } => {
        let ct = form.then_some("application/x-www-form-urlencoded");
        if let Ok(c) = wire::parse_credentials(ct, body) {
            assert!(!c.secret.is_empty() && c.secret.len() <= wire::CREDENTIAL_LEN_MAX);
        }
    }
    Input::Logout(b) => {
        let _ = wire::parse_logout(b);
    }
    Input::Registration(b) => {
        if let Ok(r) = wire::parse_registration(b) {
            assert!(r.timeout_s <= i32::MAX as u32);
            assert!(!r.verify_code.is_empty());
        }
    }
    Input::CreateCommand(b) => {
        if let Ok(c) = wire::parse_create_command(b) {
            assert!(c.max_retransmit.is_none_or(|m| m <= 3));
            assert!(c.expire_time_s.is_none_or(|e| e < u32::MAX));
            assert!(c.paras.starts_with('{'));
            assert!(serde_json::from_str::<serde_json::Value>(&c.paras).is_ok());
        }
    }
    Input::CancelCommand(b) => {
        let _ = wire::parse_cancel_command(b);
    }
    Input::CreateCancelTask(b) => {
        let _ = wire::parse_create_cancel_task(b);
    }
    Input::CommandQuery(q) => {
        if let Ok((q, _)) = wire::parse_command_query(Some(q)) {
            assert!((1..=PAGE_SIZE_MAX).contains(&q.page_size));
        }
    }
    Input::TaskQuery(q) => {
        if let Ok((q, _)) = wire::parse_task_query(Some(q)) {
            assert!((1..=PAGE_SIZE_MAX).contains(&q.page_size));
        }
    }
    Input::AppParam(q) => {
        let _ = wire::parse_app_param(Some(q));
    }
    Input::CommandId(s) => {
        if let Ok(id) = wire::parse_command_id(s) {
            assert_eq!(id.to_string(), s);
        }
    }
    Input::Time(s) => {
        if let Ok(t) = time::parse_time("startTime", s) {
            assert_eq!(time::format_time(t), s);
        }
    }
});
