//! The dispatcher against a simple reference model: random sequences of
//! create / cancel / cancel task / awake / ack / result / clock advance, with
//! the model's statuses, queues, sends and counters compared after every step.
//!
//! The model keeps plain vectors and scans them for the earliest deadline;
//! ties at one instant go in arming order, as the shard's timer heap does.

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use common::Harness;
use devcmd_core::*;
use proptest::prelude::*;

use CommandStatus as S;

const ACK_MS: u64 = 2_000;
const COMMAND_TIMEOUT_MS: u64 = 180_000;
const RESULT_TIMEOUT_MS: u64 = 180_000;
const WINDOW_MS: u64 = 30_000;

#[derive(Debug, Clone)]
enum Op {
    Create {
        dev: usize,
        expire: Option<u32>,
        max_retransmit: u8,
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
    /// Crash and restart from the store.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let expire = prop_oneof![Just(None), Just(Some(0u32)), (1u32..400).prop_map(Some)];
    prop_oneof![
        4 => (0usize..4, expire, 0u8..=3).prop_map(|(dev, expire, max_retransmit)| Op::Create { dev, expire, max_retransmit }),
        1 => any::<usize>().prop_map(|cmd| Op::Cancel { cmd }),
        1 => (0usize..4).prop_map(|dev| Op::CancelTask { dev }),
        2 => (0usize..4).prop_map(|dev| Op::Awake { dev }),
        2 => any::<usize>().prop_map(|cmd| Op::Ack { cmd }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(cmd, success)| Op::Result { cmd, success }),
        3 => prop_oneof![0u64..3_000, 0u64..200_000, Just(172_800_000u64)].prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug)]
struct MCmd {
    id: CommandId,
    dev: usize,
    cached: bool,
    status: S,
    expire_at: u64,
    issued_at: u64,
    issued_times: u8,
    max_retransmit: u8,
    deadline: Option<(u64, u64)>,
}

#[derive(Debug)]
struct MDev {
    id: DeviceId,
    psm: bool,
    awake_until: u64,
    queue: VecDeque<usize>,
    in_flight: Option<usize>,
}

#[derive(Debug)]
struct MTask {
    id: TaskId,
    dev: usize,
    listed: Vec<usize>,
    status: CancelTaskStatus,
    due: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    seq: u64,
    cmds: Vec<MCmd>,
    devs: Vec<MDev>,
    tasks: Vec<MTask>,
    live: u64,
    ignored: u64,
    sends: Vec<(CommandId, u8)>,
}

impl Model {
    fn arm(&mut self, c: usize, at: u64) {
        self.seq += 1;
        self.cmds[c].deadline = Some((at, self.seq));
    }

    fn sent_deadline(&self, c: usize) -> u64 {
        let m = &self.cmds[c];
        let timeout = m.issued_at + COMMAND_TIMEOUT_MS;
        if m.issued_times < m.max_retransmit && self.now < m.expire_at {
            (m.issued_at + ACK_MS * ((1 << (m.issued_times + 1)) - 1)).min(timeout)
        } else {
            timeout
        }
    }

    fn issue(&mut self, c: usize) {
        let now = self.now;
        let m = &mut self.cmds[c];
        m.status = S::Sent;
        m.issued_at = now;
        m.issued_times = 0;
        let at = self.sent_deadline(c);
        self.arm(c, at);
        self.sends.push((self.cmds[c].id, 0));
    }

    fn reachable(&self, d: usize) -> bool {
        !self.devs[d].psm || self.now < self.devs[d].awake_until
    }

    fn release(&mut self, d: usize) {
        while self.devs[d].in_flight.is_none() && self.reachable(d) {
            let Some(head) = self.devs[d].queue.pop_front() else {
                return;
            };
            if self.now >= self.cmds[head].expire_at {
                self.finish(head, S::Expired);
                continue;
            }
            self.devs[d].in_flight = Some(head);
            self.issue(head);
        }
    }

    fn finish(&mut self, c: usize, status: S) {
        let d = self.cmds[c].dev;
        if self.cmds[c].status == S::Pending && self.cmds[c].cached {
            self.devs[d].queue.retain(|&q| q != c);
        }
        self.cmds[c].status = status;
        self.cmds[c].deadline = None;
        self.live -= 1;
        if self.devs[d].in_flight == Some(c) {
            self.devs[d].in_flight = None;
            self.release(d);
        }
    }

    fn deliver(&mut self, c: usize) {
        self.cmds[c].status = S::Delivered;
        self.arm(c, self.now + RESULT_TIMEOUT_MS);
        let d = self.cmds[c].dev;
        if self.devs[d].in_flight == Some(c) {
            self.devs[d].in_flight = None;
            self.release(d);
        }
    }

    fn create(&mut self, id: CommandId, dev: usize, expire: Option<u32>, max_retransmit: u8) {
        let c = self.cmds.len();
        let immediate = expire == Some(0);
        let expire_at = if immediate {
            u64::MAX
        } else {
            self.now + u64::from(expire.unwrap_or(172_800)) * 1000
        };
        self.cmds.push(MCmd {
            id,
            dev,
            cached: !immediate,
            status: S::Pending,
            expire_at,
            issued_at: 0,
            issued_times: 0,
            max_retransmit,
            deadline: None,
        });
        self.live += 1;
        if immediate {
            self.issue(c);
        } else {
            self.arm(c, expire_at);
            self.devs[dev].queue.push_back(c);
            self.release(dev);
        }
    }

    fn on_deadline(&mut self, c: usize) {
        self.cmds[c].deadline = None;
        match self.cmds[c].status {
            S::Pending => self.finish(c, S::Expired),
            S::Sent => {
                let m = &self.cmds[c];
                if self.now >= m.issued_at + COMMAND_TIMEOUT_MS {
                    self.finish(c, S::Timeout);
                    return;
                }
                let resend_at = m.issued_at + ACK_MS * ((1 << (m.issued_times + 1)) - 1);
                if m.issued_times < m.max_retransmit && self.now < m.expire_at && self.now >= resend_at {
                    self.cmds[c].issued_times += 1;
                    self.sends.push((self.cmds[c].id, self.cmds[c].issued_times));
                }
                let at = self.sent_deadline(c);
                self.arm(c, at);
            }
            S::Delivered => self.finish(c, S::Timeout),
            _ => {}
        }
    }

    fn run_task(&mut self, t: usize) {
        self.tasks[t].due = None;
        let d = self.tasks[t].dev;
        let mut covered = self.tasks[t].listed.clone();
        let queued: Vec<usize> = self.devs[d].queue.iter().copied().collect();
        for c in queued {
            if !covered.contains(&c) {
                covered.push(c);
            }
            self.finish(c, S::Canceled);
        }
        let cancelled = covered.iter().filter(|&&c| self.cmds[c].status == S::Canceled).count();
        self.tasks[t].status = if cancelled == covered.len() {
            CancelTaskStatus::Success
        } else if cancelled == 0 {
            CancelTaskStatus::Failed
        } else {
            CancelTaskStatus::PartSuccess
        };
        self.tasks[t].listed = covered;
    }

    fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        loop {
            let cmd = self
                .cmds
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.deadline.map(|d| (d, i, false)));
            let task = self
                .tasks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.due.map(|d| (d, i, true)));
            let Some(((at, _), i, is_task)) = cmd.chain(task).min_by_key(|(d, _, _)| *d) else {
                break;
            };
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            if is_task { self.run_task(i) } else { self.on_deadline(i) }
        }
        self.now = target;
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::with_config(CoreConfig {
        shard_count: 4,
        id_seed: Some(11),
        retention: Duration::from_secs(10 * 365 * 24 * 3600),
        ..CoreConfig::default()
    });
    let mut m = Model {
        now: common::T0,
        ..Model::default()
    };
    for (i, profile) in [
        DeliveryProfile::Psm,
        DeliveryProfile::Psm,
        DeliveryProfile::Drx,
        DeliveryProfile::Edrx,
    ]
    .into_iter()
    .enumerate()
    {
        let id = h.device(profile);
        prop_assert_eq!(i, m.devs.len());
        m.devs.push(MDev {
            id,
            psm: profile == DeliveryProfile::Psm,
            awake_until: 0,
            queue: VecDeque::new(),
            in_flight: None,
        });
    }
    let mut history: HashMap<CommandId, Vec<(Option<S>, S)>> = HashMap::new();

    for op in ops {
        match op {
            Op::Create {
                dev,
                expire,
                max_retransmit,
            } => {
                let mut req = NewCommand::new(m.devs[dev].id.clone(), "S", "M", "{}");
                req.expire_time_s = expire;
                req.max_retransmit = Some(max_retransmit);
                let got = h.create(req);
                m.create(got.id, dev, expire, max_retransmit);
                prop_assert_eq!(got.status, m.cmds.last().unwrap().status);
            }
            Op::Cancel { cmd } if !m.cmds.is_empty() => {
                let c = cmd % m.cmds.len();
                let was = m.cmds[c].status;
                let got = h.core.cancel_command(&h.caller, m.cmds[c].id).map(|r| r.value.status);
                if was == S::Pending {
                    prop_assert_eq!(got, Ok(S::Canceled));
                    m.finish(c, S::Canceled);
                } else {
                    prop_assert_eq!(got, Err(CancelError::NotCancellable { status: was }));
                }
            }
            Op::CancelTask { dev } => {
                let task = h.core.create_cancel_task(&h.caller, &m.devs[dev].id).unwrap().value;
                let listed: Vec<usize> = m.devs[dev].queue.iter().copied().collect();
                prop_assert_eq!(
                    task.commands.iter().map(|c| c.id).collect::<Vec<_>>(),
                    listed.iter().map(|&c| m.cmds[c].id).collect::<Vec<_>>()
                );
                m.seq += 1;
                let due = Some((m.now, m.seq));
                m.tasks.push(MTask {
                    id: task.id,
                    dev,
                    listed,
                    status: CancelTaskStatus::Waitting,
                    due,
                });
            }
            Op::Awake { dev } => {
                h.core.device_awake(&m.devs[dev].id).unwrap().durable().unwrap();
                if m.devs[dev].psm {
                    m.devs[dev].awake_until = m.devs[dev].awake_until.max(m.now + WINDOW_MS);
                }
                m.release(dev);
            }
            Op::Ack { cmd } if !m.cmds.is_empty() => {
                let c = cmd % m.cmds.len();
                let got = h.core.ack(m.cmds[c].id).unwrap().value;
                if m.cmds[c].status == S::Sent {
                    prop_assert_eq!(got, DeviceEventOutcome::Applied(S::Delivered));
                    m.deliver(c);
                } else {
                    prop_assert_eq!(got, DeviceEventOutcome::Ignored(m.cmds[c].status));
                    m.ignored += 1;
                }
            }
            Op::Result { cmd, success } if !m.cmds.is_empty() => {
                let c = cmd % m.cmds.len();
                let outcome = CommandOutcome { success, detail: None };
                let got = h.core.result(m.cmds[c].id, outcome).unwrap().value;
                let to = if success { S::Successful } else { S::Failed };
                match m.cmds[c].status {
                    S::Sent | S::Delivered => {
                        prop_assert_eq!(got, DeviceEventOutcome::Applied(to));
                        if m.cmds[c].status == S::Sent {
                            m.deliver(c);
                        }
                        m.finish(c, to);
                    }
                    other => {
                        prop_assert_eq!(got, DeviceEventOutcome::Ignored(other));
                        m.ignored += 1;
                    }
                }
            }
            Op::Advance { ms } => {
                h.advance(Duration::from_millis(ms));
                m.advance(ms);
            }
            Op::Restart => {
                let report = h.restart();
                prop_assert!(report.refused.is_empty(), "{:?}", report.refused);
                // The restored dispatcher fires what is due at once (cancel tasks not yet run).
                m.advance(0);
                // Counters start again in the new process.
                m.ignored = 0;
                // PSM active windows are not stored: after a restart a PSM
                // device counts as asleep until it next reports.
                for d in &mut m.devs {
                    d.awake_until = 0;
                }
            }
            _ => {}
        }
        prop_assert_eq!(h.clock.now().as_millis(), m.now);

        // Statuses, resend counts, queues, sends and counters match the model.
        for c in &m.cmds {
            let got = h.get(c.id);
            prop_assert_eq!(got.status, c.status, "command {:?}", c.id);
            prop_assert_eq!(got.issued_times, c.issued_times);
        }
        for d in &m.devs {
            let queued = h.core.queued_commands(&h.caller, &d.id).unwrap();
            prop_assert_eq!(queued, d.queue.iter().map(|&c| m.cmds[c].id).collect::<Vec<_>>());
        }
        for t in &m.tasks {
            prop_assert_eq!(h.core.cancel_task(&h.caller, t.id).unwrap().status, t.status);
        }
        // Sends per command in order (shards tick one after another, so only
        // the order within a command, and so within a device's shard, is fixed).
        let mut got_sends = h.sent_ids();
        let mut want_sends = std::mem::take(&mut m.sends);
        got_sends.sort_by_key(|s| s.0);
        want_sends.sort_by_key(|s| s.0);
        prop_assert_eq!(got_sends, want_sends);
        let stats = h.core.stats();
        prop_assert_eq!(stats.live, m.live);
        prop_assert_eq!(stats.late_events_ignored, m.ignored);
        h.core.check_invariants().map_err(TestCaseError::fail)?;

        // Every command's reported changes form one monotonic chain with at most one terminal.
        for ch in h.changes.try_iter() {
            history.entry(ch.command_id).or_default().push((ch.from, ch.to));
        }
        for (id, chain) in &history {
            prop_assert_eq!(chain[0].0, None, "first change of {:?} is its creation", id);
            for w in chain.windows(2) {
                prop_assert_eq!(w[1].0, Some(w[0].1), "changes of {:?} chain", id);
                prop_assert!(w[1].1.rank() > w[0].1.rank(), "monotonic: {:?}", chain);
            }
            prop_assert!(chain.iter().filter(|(_, to)| to.is_terminal()).count() <= 1);
            // The store holds the latest status.
            prop_assert_eq!(h.store.command(*id).map(|c| c.status), Some(chain.last().unwrap().1));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn dispatcher_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
