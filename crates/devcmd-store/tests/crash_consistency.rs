//! Kill -9 under load, reopen, check: every change the child printed (it
//! prints only after the commit returned) is there, at least as advanced;
//! nothing duplicated, nothing regressed, queues in order, timers re-armed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use devcmd_core::*;
use devcmd_store::{FjallStore, StoreConfig};

const CHILD: &str = env!("CARGO_BIN_EXE_devcmd-store-crash-writer");
const ROUNDS: u64 = 5;

/// One round: start the child, let it run for `run_ms`, kill it, return what it printed.
fn run_and_kill(dir: &std::path::Path, run_ms: u64) -> Vec<(CommandId, CommandStatus)> {
    let mut child = Process::new(CHILD)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().and_then(Result::ok);
        let _ = ready_tx.send(ready);
        lines
            .map_while(Result::ok)
            .filter_map(|l| {
                // The last line may be cut by the kill: only whole lines count.
                let (id, status) = l.split_once(' ')?;
                Some((id.parse().ok()?, status.parse().ok()?))
            })
            .collect::<Vec<(CommandId, CommandStatus)>>()
    });
    // The kill clock starts once the child has reopened the store.
    let ready = ready_rx.recv_timeout(Duration::from_secs(120)).ok().flatten();
    assert_eq!(ready.as_deref(), Some("READY"), "the child opened the store");
    std::thread::sleep(Duration::from_millis(run_ms));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    reader.join().expect("reader")
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut printed: HashMap<CommandId, CommandStatus> = HashMap::new();
    // Deterministic "random" kill moments.
    let mut x = 0x9e37_79b9u64;
    for round in 0..ROUNDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let run_ms = 300 + x % 700;
        let seen = run_and_kill(dir.path(), run_ms);
        assert!(!seen.is_empty(), "round {round}: the child made progress");
        for (id, status) in seen {
            let e = printed.entry(id).or_insert(status);
            if status.rank() > e.rank() {
                *e = status;
            }
        }

        let (store, recovered) = FjallStore::open(dir.path(), StoreConfig::default()).expect("reopens");
        assert!(recovered.corrupt.is_empty(), "round {round}: {:?}", recovered.corrupt);
        let stored: HashMap<CommandId, CommandStatus> =
            recovered.state.commands.iter().map(|c| (c.id, c.status)).collect();
        assert_eq!(
            stored.len(),
            recovered.state.commands.len(),
            "round {round}: no command stored twice"
        );
        for (id, status) in &printed {
            let got = stored
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: acknowledged {id} is missing"));
            assert!(
                got.rank() >= status.rank(),
                "round {round}: {id} went back from {status} to {got}"
            );
            if status.is_terminal() {
                assert_eq!(got, status, "round {round}: terminal {id} changed");
            }
        }
        // Rebuild a dispatcher: everything comes back and the queues are in creation order.
        let latest = recovered
            .state
            .commands
            .iter()
            .map(|c| c.creation_time.as_millis())
            .max()
            .unwrap_or(0);
        let clock = VirtualClock::new(Timestamp::from_millis(latest + 1));
        let core = Dispatcher::builder(CoreConfig {
            shard_count: 8,
            ..CoreConfig::default()
        })
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
        let commands = recovered.state.commands.clone();
        let report = core.restore(recovered.state);
        assert!(report.refused.is_empty(), "round {round}: {:?}", report.refused);
        core.check_invariants().unwrap();
        let caller = Caller::own(AppId::new("crash-app").unwrap());
        for i in (0..16).step_by(2) {
            let dev = DeviceId::new(&format!("dev-{i:02}")).unwrap();
            let mut want: Vec<&Command> = commands
                .iter()
                .filter(|c| c.device_id == dev && c.status == CommandStatus::Pending)
                .collect();
            want.sort_by_key(|c| (c.creation_time, c.id));
            // One thread writes each device and moves the clock between its
            // commands, so creation times order its queue exactly.
            let got = core.queued_commands(&caller, &dev).unwrap();
            assert_eq!(
                got,
                want.iter().map(|c| c.id).collect::<Vec<_>>(),
                "round {round}: queue of {dev}"
            );
        }
        eprintln!(
            "round {round}: killed after {run_ms} ms; {} acknowledged changes checked, {} commands stored, {} live",
            printed.len(),
            commands.len(),
            report.live_commands
        );
        if round == ROUNDS - 1 {
            // Timers were re-armed: 49 hours later nothing is live.
            core.advance(&clock, Duration::from_secs(49 * 3600));
            assert_eq!(core.stats().live, 0, "every live command reached its deadline");
        }
        drop(core);
        store.close();
    }
    assert!(printed.len() > 100, "enough work was checked: {}", printed.len());
}
