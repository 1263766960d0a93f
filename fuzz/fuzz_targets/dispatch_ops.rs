//! Operation sequences from arbitrary bytes against the dispatcher, with or
//! without a history terminal commands move to: no panic, the shard
//! invariants hold after every step, a command is found wherever it lives
//! until its retention, and every command's reported changes form one
//! monotonic chain with at most one terminal status.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use devcmd_core::*;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Create { dev: u8, expire: Option<u32>, max_retransmit: u8, paras_len: u8 },
    Cancel { cmd: u16 },
    CancelTask { dev: u8 },
    Awake { dev: u8 },
    Ack { cmd: u16 },
    Result { cmd: u16, success: bool },
    Advance { ms: u32 },
    RemoveDevice { dev: u8 },
    List { page_no: u16, page_size: u16, dev: Option<u8> },
    Forged { bits: u128 },
    /// Crash and restart from the store.
    Restart,
}

#[derive(Debug, Arbitrary)]
struct Input {
    history: bool,
    ops: Vec<Op>,
}

const RETENTION: Duration = Duration::from_secs(600);

fn build(
    clock: &VirtualClock,
    store: &Arc<MemoryStore>,
    link: &ChannelLink,
    events: &ChannelEvents,
    history: bool,
) -> Dispatcher {
    let b = Dispatcher::builder(CoreConfig {
        shard_count: 4,
        device_live_max: 8,
        live_max: 64,
        retention: RETENTION,
        history_grace: Duration::from_secs(5),
        sweep_interval: Duration::from_secs(1),
        id_seed: Some(1),
        ..CoreConfig::default()
    })
    .clock(Arc::new(clock.clone()))
    .store(store.clone())
    .link(Arc::new(link.clone()))
    .events(Arc::new(events.clone()));
    if history { b.history(store.clone()) } else { b }.build().unwrap()
}

fuzz_target!(|input: Input| {
    let Input { history, ops } = input;
    let clock = VirtualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let (link, sent) = ChannelLink::bounded(1 << 12);
    let (events, changes) = ChannelEvents::bounded(1 << 16);
    let store = MemoryStore::new();
    let mut core = build(&clock, &store, &link, &events, history);
    let app = AppId::new("fuzz").unwrap();
    core.add_app(App { id: app.clone(), secret_hash: String::new(), quota: None, authorized_apps: vec![] })
        .unwrap()
        .durable()
        .unwrap();
    let caller = Caller::own(app);
    let profiles = [DeliveryProfile::Psm, DeliveryProfile::Drx, DeliveryProfile::Edrx];
    let devices: Vec<DeviceId> = (0..6)
        .map(|i| {
            let mut req = NewDevice::new("node");
            req.profile = profiles[i % 3];
            core.register_device(&caller, req).unwrap().durable().unwrap().id
        })
        .collect();
    let mut cmds: Vec<CommandId> = Vec::new();
    let mut chains: HashMap<CommandId, Vec<(Option<CommandStatus>, CommandStatus)>> = HashMap::new();
    let pick = |i: u16, cmds: &Vec<CommandId>| cmds.get(usize::from(i) % cmds.len().max(1)).copied();

    for op in ops.into_iter().take(256) {
        match op {
            Op::Create { dev, expire, max_retransmit, paras_len } => {
                let device = devices[usize::from(dev) % devices.len()].clone();
                let mut req = NewCommand::new(device, "S", "M", &"p".repeat(usize::from(paras_len)));
                req.expire_time_s = expire.map(|e| e % 1_000);
                req.max_retransmit = Some(max_retransmit % 5);
                if let Ok(r) = core.create_command(&caller, req) {
                    cmds.push(r.durable().unwrap().id);
                }
            }
            Op::Cancel { cmd } => {
                if let Some(id) = pick(cmd, &cmds) {
                    let before = core.command(&caller, id).map(|c| c.status);
                    let r = core.cancel_command(&caller, id).map(|r| r.value.status);
                    match before {
                        Ok(CommandStatus::Pending) => assert_eq!(r, Ok(CommandStatus::Canceled)),
                        Ok(status) => assert_eq!(r, Err(CancelError::NotCancellable { status })),
                        Err(_) => assert_eq!(r, Err(CancelError::CommandNotFound)),
                    }
                }
            }
            Op::CancelTask { dev } => {
                let _ = core.create_cancel_task(&caller, &devices[usize::from(dev) % devices.len()]);
            }
            Op::Awake { dev } => {
                let _ = core.device_awake(&devices[usize::from(dev) % devices.len()]);
            }
            Op::Ack { cmd } => {
                if let Some(id) = pick(cmd, &cmds) {
                    let _ = core.ack(id);
                }
            }
            Op::Result { cmd, success } => {
                if let Some(id) = pick(cmd, &cmds) {
                    let _ = core.result(id, CommandOutcome { success, detail: Some("{}".into()) });
                }
            }
            Op::Advance { ms } => {
                core.advance(&clock, Duration::from_millis(u64::from(ms % 300_000)));
                let cutoff = clock.now().as_millis().saturating_sub(RETENTION.as_millis() as u64);
                store.sweep_history(Timestamp::from_millis(cutoff), 16);
            }
            Op::RemoveDevice { dev } => {
                let _ = core.remove_device(&caller, &devices[usize::from(dev) % devices.len()]);
            }
            Op::List { page_no, page_size, dev } => {
                let q = CommandQuery {
                    device_id: dev.map(|d| devices[usize::from(d) % devices.len()].clone()),
                    page_no: u32::from(page_no),
                    page_size: u32::from(page_size),
                    ..CommandQuery::default()
                };
                if let Ok(p) = core.list_commands(&caller, &q) {
                    assert!(p.items.len() <= usize::from(page_size));
                    assert!(p.items.windows(2).all(|w| w[0].creation_time <= w[1].creation_time));
                }
            }
            Op::Restart => {
                let before: Vec<Command> = core.list_commands(&caller, &CommandQuery::default()).unwrap().items;
                core = build(&clock, &store, &link, &events, history);
                let report = core.restore(store.recovered_state());
                assert!(report.refused.is_empty(), "{:?}", report.refused);
                // Nothing due was pending (every advance fires what is due), except
                // cancel tasks created since, which run at the restore's tick; compare
                // only commands whose device has no such task.
                let after: Vec<Command> = core.list_commands(&caller, &CommandQuery::default()).unwrap().items;
                assert_eq!(before.len(), after.len());
                for (b, a) in before.iter().zip(&after) {
                    assert_eq!(b.id, a.id);
                    assert!(a.status.rank() >= b.status.rank());
                }
            }
            Op::Forged { bits } => {
                let forged = CommandId::from_u128(bits);
                let _ = core.ack(forged);
                let _ = core.command(&caller, forged);
                let _ = core.cancel_command(&caller, forged);
                let _ = core.cancel_task(&caller, TaskId::from_u128(bits));
            }
        }
        core.check_invariants().unwrap();
        sent.try_iter().for_each(drop);
        for ch in changes.try_iter() {
            chains.entry(ch.command_id).or_default().push((ch.from, ch.to));
        }
    }
    for chain in chains.values() {
        assert_eq!(chain[0].0, None, "{chain:?}");
        for w in chain.windows(2) {
            assert_eq!(w[1].0, Some(w[0].1), "{chain:?}");
            assert!(w[1].1.rank() > w[0].1.rank());
        }
        assert!(chain.iter().filter(|(_, s)| s.is_terminal()).count() <= 1);
    }
});
