//! Ownership and authorisation: who may act on which devices.

mod common;

use common::{Harness, app_record};
use devcmd_core::*;

#[test]
fn another_apps_device_is_refused_unless_that_app_authorised_the_caller() {
    let h = Harness::new();
    let owner_dev = h.device(DeliveryProfile::Psm);
    let b = AppId::new("app-b").unwrap();
    h.core.add_app(app_record(&b)).unwrap().durable().unwrap();
    let as_b = Caller::own(b.clone());

    // B on its own account cannot see A's device: it does not exist for B.
    let req = NewCommand::new(owner_dev.clone(), "S", "M", "{}");
    assert!(matches!(
        h.core.create_command(&as_b, req.clone()),
        Err(CreateError::DeviceNotFound)
    ));

    // B acting for A before A authorised it.
    let b_for_a = Caller {
        app: b.clone(),
        on_behalf_of: Some(h.app.clone()),
    };
    assert!(matches!(
        h.core.create_command(&b_for_a, req.clone()),
        Err(CreateError::Access(AccessError::AppNotAuthorized))
    ));
    // B acting for an application that does not exist.
    let b_for_ghost = Caller {
        app: b.clone(),
        on_behalf_of: Some(AppId::new("ghost").unwrap()),
    };
    assert!(matches!(
        h.core.create_command(&b_for_ghost, req.clone()),
        Err(CreateError::Access(AccessError::AppNotExisted))
    ));

    // A authorises B: B may now act for A, and sees A's command.
    let mut a = h.core.app(&h.app).unwrap();
    a.authorized_apps.push(b.clone());
    h.core.update_app(a).unwrap().durable().unwrap();
    let cmd = h.core.create_command(&b_for_a, req).unwrap().durable().unwrap();
    assert_eq!(cmd.app_id, h.app);
    assert_eq!(h.core.command(&h.caller, cmd.id).unwrap().id, cmd.id);
    assert_eq!(h.core.command(&as_b, cmd.id).unwrap_err(), QueryError::CommandNotFound);
    assert_eq!(
        h.core.cancel_command(&as_b, cmd.id).map(|r| r.value).unwrap_err(),
        CancelError::CommandNotFound
    );
    h.core.cancel_command(&b_for_a, cmd.id).unwrap().durable().unwrap();

    // Naming one's own app in ?appId= is the same as leaving it out.
    let a_for_a = Caller {
        app: h.app.clone(),
        on_behalf_of: Some(h.app.clone()),
    };
    assert_eq!(h.core.device(&a_for_a, &owner_dev).unwrap().owner, h.app);
}

#[test]
fn registering_needs_an_existing_app_and_valid_fields() {
    let h = Harness::new();
    let ghost = Caller::own(AppId::new("ghost").unwrap());
    assert_eq!(
        h.core.register_device(&ghost, NewDevice::new("imei")).unwrap_err(),
        RegistryError::AppNotExisted
    );
    assert!(matches!(
        h.core.register_device(&h.caller, NewDevice::new("")),
        Err(RegistryError::Invalid(_))
    ));
    let mut fixed = NewDevice::new("imei");
    fixed.device_id = Some(DeviceId::new("my-device").unwrap());
    let dev = h
        .core
        .register_device(&h.caller, fixed.clone())
        .unwrap()
        .durable()
        .unwrap();
    assert_eq!(dev.id.to_string(), "my-device");
    assert_eq!(
        h.core.register_device(&h.caller, fixed).unwrap_err(),
        RegistryError::DeviceExists
    );
    assert_eq!(
        h.core.add_app(app_record(&h.app)).unwrap_err(),
        RegistryError::AppExists
    );
    let generated = h
        .core
        .register_device(&h.caller, NewDevice::new("imei2"))
        .unwrap()
        .durable()
        .unwrap();
    assert_eq!(generated.id.to_string().len(), 36, "a UUID with hyphens");
    assert_eq!(h.store.snapshot().devices.len(), 2);
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let h = Harness::new();
    let dev = h.device(DeliveryProfile::Psm);
    let base = NewCommand::new(dev.clone(), "S", "M", "{}");
    let cases: Vec<(NewCommand, &str)> = vec![
        (
            NewCommand {
                service_id: String::new(),
                ..base.clone()
            },
            "command.serviceId",
        ),
        (
            NewCommand {
                service_id: "s".repeat(65),
                ..base.clone()
            },
            "command.serviceId",
        ),
        (
            NewCommand {
                method: "m".repeat(129),
                ..base.clone()
            },
            "command.method",
        ),
        (
            NewCommand {
                callback_url: Some("h".repeat(1025)),
                ..base.clone()
            },
            "callbackUrl",
        ),
        (
            NewCommand {
                max_retransmit: Some(4),
                ..base.clone()
            },
            "maxRetransmit",
        ),
        (
            NewCommand {
                paras: "x".repeat(16 * 1024 + 1),
                ..base.clone()
            },
            "command.paras",
        ),
    ];
    for (req, field) in cases {
        match h.core.create_command(&h.caller, req) {
            Err(CreateError::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert_eq!(h.core.stats().created, 0);
}
