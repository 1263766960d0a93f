//! The child of `tests/crash_consistency.rs`: opens the store in DIR, then
//! creates commands and moves them on as fast as it can from two threads,
//! printing `<commandId> <STATUS>` for each change only after its commit
//! returned (it is durable). The test kills it with SIGKILL at random moments.
//!
//! `devcmd-store-crash-writer DIR`

use std::io::Write;
use std::sync::Arc;

use devcmd_core::*;
use devcmd_store::{FjallStore, StoreConfig};

const DEVICES_PER_KIND: usize = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: devcmd-store-crash-writer DIR")?;
    let (store, recovered) = FjallStore::open(&dir, StoreConfig::default())?;
    let start = recovered
        .state
        .commands
        .iter()
        .map(|c| c.creation_time.as_millis() + 1)
        .max()
        .unwrap_or(1_700_000_000_000);
    let clock = VirtualClock::new(Timestamp::from_millis(start));
    let core = Arc::new(
        Dispatcher::builder(CoreConfig {
            shard_count: 8,
            ..CoreConfig::default()
        })
        .clock(Arc::new(clock.clone()))
        .store(store)
        .build()?,
    );
    let report = core.restore(recovered.state);
    if !report.refused.is_empty() {
        return Err(format!("refused on restore: {:?}", report.refused).into());
    }
    let app = AppId::new("crash-app")?;
    let caller = Caller::own(app.clone());
    if core.app(&app).is_none() {
        core.add_app(App {
            id: app,
            secret_hash: String::new(),
            quota: None,
            authorized_apps: vec![],
        })?
        .durable()?;
        for i in 0..DEVICES_PER_KIND * 2 {
            let mut req = NewDevice::new(&format!("node-{i}"));
            req.device_id = Some(DeviceId::new(&format!("dev-{i:02}"))?);
            req.profile = if i % 2 == 0 {
                DeliveryProfile::Psm
            } else {
                DeliveryProfile::Drx
            };
            core.register_device(&caller, req)?.durable()?;
        }
    }
    println!("READY");
    std::io::stdout().flush()?;

    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (core, caller, clock) = (Arc::clone(&core), caller.clone(), clock.clone());
            std::thread::spawn(move || work(t, &core, &caller, &clock))
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}

fn say(id: CommandId, status: CommandStatus) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{id} {status}")?;
    out.flush()
}

fn work(t: usize, core: &Dispatcher, caller: &Caller, clock: &VirtualClock) -> Result<(), String> {
    let mut sent: Vec<CommandId> = Vec::new();
    let mut delivered: Vec<CommandId> = Vec::new();
    let mut pending: Vec<CommandId> = Vec::new();
    for i in 0usize.. {
        clock.advance(std::time::Duration::from_millis(1));
        let device =
            DeviceId::new(&format!("dev-{:02}", (i * 2 + t) % (DEVICES_PER_KIND * 2))).map_err(|e| e.to_string())?;
        let step = i % 10;
        if step < 6 {
            let req = NewCommand::new(device, "S", "M", r#"{"v":1}"#);
            match core.create_command(caller, req) {
                Ok(r) => {
                    let c = r.durable().map_err(|e| e.to_string())?;
                    match c.status {
                        CommandStatus::Sent => sent.push(c.id),
                        _ => pending.push(c.id),
                    }
                    say(c.id, c.status).map_err(|e| e.to_string())?;
                }
                Err(CreateError::DeviceQueueFull { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        } else if step < 8 {
            if let Some(id) = sent.pop()
                && let Ok(r) = core.ack(id)
                && let DeviceEventOutcome::Applied(s) = r.durable().map_err(|e| e.to_string())?
            {
                delivered.push(id);
                say(id, s).map_err(|e| e.to_string())?;
            }
        } else if step == 8 {
            let outcome = CommandOutcome {
                success: i % 3 != 0,
                detail: Some("{}".into()),
            };
            if let Some(id) = delivered.pop()
                && let Ok(r) = core.result(id, outcome)
                && let DeviceEventOutcome::Applied(s) = r.durable().map_err(|e| e.to_string())?
            {
                say(id, s).map_err(|e| e.to_string())?;
            }
        } else if let Some(id) = pending.pop()
            && let Ok(r) = core.cancel_command(caller, id)
        {
            let c = r.durable().map_err(|e| e.to_string())?;
            say(c.id, c.status).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
