//! Moving terminal commands to a history changes nothing a client sees.
//!
//! Two dispatchers take the same random operations on the same virtual
//! time: one keeps every command in memory, the other (with a
//! [`MemoryStore`] as its history and a grace of seconds) moves terminal
//! commands out of memory. After every step a random query — a page of an
//! application's or a device's commands in a random window, one command, a
//! cancel task — must answer the same in both. Ids differ (a freed slot is
//! reused), so commands are compared by creation order and content.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use devcmd_core::*;
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
const DEVICES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Create {
        dev: usize,
        expire: Option<u32>,
    },
    Cancel {
        cmd: usize,
    },
    CancelTask {
        dev: usize,
    },
    Awake {
        dev: usize,
    },
    Ack {
        cmd: usize,
    },
    Result {
        cmd: usize,
        success: bool,
    },
    Advance {
        ms: u64,
    },
    List {
        dev: Option<usize>,
        from: u64,
        to: u64,
        page: u32,
        size: u32,
    },
    Get {
        cmd: usize,
    },
    Task {
        task: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..DEVICES, prop::option::of(prop_oneof![Just(0u32), 1u32..120])).prop_map(|(dev, expire)| Op::Create { dev, expire }),
        1 => (0usize..64).prop_map(|cmd| Op::Cancel { cmd }),
        1 => (0..DEVICES).prop_map(|dev| Op::CancelTask { dev }),
        2 => (0..DEVICES).prop_map(|dev| Op::Awake { dev }),
        2 => (0usize..64).prop_map(|cmd| Op::Ack { cmd }),
        2 => (0usize..64, any::<bool>()).prop_map(|(cmd, success)| Op::Result { cmd, success }),
        3 => prop_oneof![1u64..2_000, 1_000u64..90_000].prop_map(|ms| Op::Advance { ms }),
        3 => (prop::option::of(0..DEVICES), 0u64..600_000, 0u64..600_000, 0u32..4, 1u32..6)
            .prop_map(|(dev, from, to, page, size)| Op::List { dev, from, to, page, size }),
        1 => (0usize..64).prop_map(|cmd| Op::Get { cmd }),
        1 => (0usize..8).prop_map(|task| Op::Task { task }),
    ]
}

struct Twin {
    core: Dispatcher,
    clock: VirtualClock,
    store: Arc<MemoryStore>,
    devices: Vec<DeviceId>,
    commands: Vec<CommandId>,
    tasks: Vec<TaskId>,
}

fn caller() -> Caller {
    Caller::own(AppId::new("app").unwrap())
}

impl Twin {
    fn new(history: bool) -> Self {
        let clock = VirtualClock::new(Timestamp::from_millis(T0));
        let store = MemoryStore::new();
        let mut b = Dispatcher::builder(CoreConfig {
            shard_count: 2,
            history_grace: Duration::from_secs(5),
            retention: Duration::from_secs(10 * 365 * 24 * 3600),
            sweep_interval: Duration::from_secs(1),
            id_seed: Some(11),
            ..CoreConfig::default()
        })
        .clock(Arc::new(clock.clone()))
        .store(store.clone());
        if history {
            b = b.history(store.clone());
        }
        let core = b.build().unwrap();
        core.add_app(App {
            id: AppId::new("app").unwrap(),
            secret_hash: String::new(),
            quota: None,
            authorized_apps: vec![],
        })
        .unwrap()
        .durable()
        .unwrap();
        let devices = (0..DEVICES)
            .map(|i| {
                let mut d = NewDevice::new(&format!("n{i}"));
                d.profile = if i == 0 {
                    DeliveryProfile::Psm
                } else {
                    DeliveryProfile::Drx
                };
                core.register_device(&caller(), d).unwrap().value.id
            })
            .collect();
        Self {
            core,
            clock,
            store,
            devices,
            commands: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Commands with their ids replaced by their creation index.
    fn norm(&self, cs: &[Command]) -> Vec<(usize, Command)> {
        let index: HashMap<CommandId, usize> = self.commands.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        cs.iter()
            .map(|c| {
                let mut c = c.clone();
                let i = index.get(&c.id).copied().unwrap_or(usize::MAX);
                c.id = CommandId::from_u128(0);
                (i, c)
            })
            .collect()
    }

    /// Applies `op`; returns what a client would have seen, normalised.
    fn apply(&mut self, op: &Op) -> String {
        let cmd = |i: &usize| self.commands.get(i % self.commands.len().max(1)).copied();
        match op {
            Op::Create { dev, expire } => {
                let mut req = NewCommand::new(self.devices[*dev].clone(), "S", "M", "{}");
                req.expire_time_s = *expire;
                let r = self.core.create_command(&caller(), req).map(|r| r.value);
                if let Ok(c) = &r {
                    self.commands.push(c.id);
                }
                // One millisecond per create: ties within a millisecond are ordered
                // differently in memory and history (documented), not compared here.
                self.clock.advance(Duration::from_millis(1));
                format!("{:?}", r.map(|c| self.norm(&[c])))
            }
            Op::Cancel { cmd: i } => match cmd(i) {
                Some(id) => format!(
                    "{:?}",
                    self.core.cancel_command(&caller(), id).map(|r| self.norm(&[r.value]))
                ),
                None => String::new(),
            },
            Op::CancelTask { dev } => {
                let r = self
                    .core
                    .create_cancel_task(&caller(), &self.devices[*dev])
                    .map(|r| r.value);
                if let Ok(t) = &r {
                    self.tasks.push(t.id);
                }
                format!("{:?}", r.map(|t| (t.status, self.norm(&t.commands))))
            }
            Op::Awake { dev } => format!("{:?}", self.core.device_awake(&self.devices[*dev]).map(|r| r.value)),
            Op::Ack { cmd: i } => match cmd(i) {
                Some(id) => format!("{:?}", self.core.ack(id).map(|r| r.value)),
                None => String::new(),
            },
            Op::Result { cmd: i, success } => match cmd(i) {
                Some(id) => format!(
                    "{:?}",
                    self.core
                        .result(
                            id,
                            CommandOutcome {
                                success: *success,
                                detail: None
                            }
                        )
                        .map(|r| r.value)
                ),
                None => String::new(),
            },
            Op::Advance { ms } => format!("{}", self.core.advance(&self.clock, Duration::from_millis(*ms))),
            Op::List {
                dev,
                from,
                to,
                page,
                size,
            } => {
                let q = CommandQuery {
                    device_id: dev.map(|d| self.devices[d].clone()),
                    from: Some(Timestamp::from_millis(T0 + from)),
                    to: Some(Timestamp::from_millis(T0 + to)),
                    page_no: *page,
                    page_size: *size,
                };
                format!(
                    "{:?}",
                    self.core
                        .list_commands(&caller(), &q)
                        .map(|p| (p.total_size, self.norm(&p.items)))
                )
            }
            Op::Get { cmd: i } => match cmd(i) {
                Some(id) => format!("{:?}", self.core.command(&caller(), id).map(|c| self.norm(&[c]))),
                None => String::new(),
            },
            Op::Task { task } => match self.tasks.get(task % self.tasks.len().max(1)) {
                Some(id) => format!(
                    "{:?}",
                    self.core
                        .cancel_task(&caller(), *id)
                        .map(|t| (t.status, self.norm(&t.commands)))
                ),
                None => String::new(),
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_history_changes_no_answer(ops in prop::collection::vec(op(), 1..160)) {
        let mut memory = Twin::new(false);
        let mut archived = Twin::new(true);
        for (step, op) in ops.iter().enumerate() {
            let a = memory.apply(op);
            let b = archived.apply(op);
            prop_assert_eq!(&a, &b, "step {}: {:?}", step, op);
            archived.core.check_invariants().map_err(TestCaseError::fail)?;
        }
        // The final full listing agrees too, and the history really was used
        // whenever something ended long enough ago.
        let all = Op::List { dev: None, from: 0, to: 10_000_000, page: 0, size: 1000 };
        prop_assert_eq!(memory.apply(&all), archived.apply(&all));
        prop_assert_eq!(memory.core.stats().archived, 0);
        prop_assert_eq!(
            archived.core.stats().archived as usize,
            archived.store.snapshot().history.commands.len()
        );
    }
}

#[test]
fn a_history_without_a_store_is_refused() {
    let err = Dispatcher::builder(CoreConfig::default())
        .history(MemoryStore::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field, "history");
}
