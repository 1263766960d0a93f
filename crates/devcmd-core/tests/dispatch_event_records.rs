//! An event sink's records travel in the same store batch as the changes
//! they belong to, and the sink sees the commit of that batch.

use std::sync::Arc;

use devcmd_core::*;
use parking_lot::Mutex;

#[derive(Default)]
struct Batches(Mutex<Vec<Vec<Mutation>>>, Mutex<Vec<Arc<CommitSignal>>>);

impl CommandStore for Batches {
    fn submit(&self, batch: Vec<Mutation>) -> Commit {
        self.0.lock().push(batch);
        let s = CommitSignal::new();
        self.1.lock().push(s.clone());
        Commit::pending(s)
    }
}

#[derive(Default)]
struct Recorder {
    commits: Mutex<Vec<(Vec<CommandStatus>, Commit)>>,
}

impl EventSink for Recorder {
    fn publish(&self, _changes: &[StatusChange]) {
        unreachable!("publish_committed is overridden");
    }

    fn records(&self, changes: &[StatusChange], out: &mut Vec<Mutation>) {
        for c in changes {
            out.push(Mutation::PutOutbox {
                key: vec![c.to.rank()],
                value: c.to.as_str().as_bytes().to_vec(),
            });
        }
    }

    fn publish_committed(&self, changes: &[StatusChange], commit: Commit) {
        self.commits
            .lock()
            .push((changes.iter().map(|c| c.to).collect(), commit));
    }
}

#[test]
fn records_share_the_batch_of_their_changes_and_the_sink_gets_its_commit() {
    let store = Arc::new(Batches::default());
    let sink = Arc::new(Recorder::default());
    let core = Dispatcher::builder(CoreConfig {
        shard_count: 2,
        ..CoreConfig::default()
    })
    .store(store.clone())
    .events(sink.clone())
    .build()
    .unwrap();
    let app = AppId::new("a").unwrap();
    let _ = core.add_app(App {
        id: app.clone(),
        secret_hash: String::new(),
        quota: None,
        authorized_apps: vec![],
    });
    let caller = Caller::own(app);
    let mut d = NewDevice::new("n");
    d.profile = DeliveryProfile::Drx;
    let device = core.register_device(&caller, d).unwrap().value.id;
    store.0.lock().clear();
    let mut c = NewCommand::new(device, "S", "M", "{}");
    c.expire_time_s = Some(0);
    let receipt = core.create_command(&caller, c).unwrap();

    let batches = store.0.lock().clone();
    assert_eq!(batches.len(), 1, "one batch for the create: {batches:?}");
    assert!(matches!(batches[0][0], Mutation::CreateCommand(_)));
    assert_eq!(
        batches[0][1],
        Mutation::PutOutbox {
            key: vec![CommandStatus::Sent.rank()],
            value: b"SENT".to_vec()
        }
    );
    // The sink's commit is the batch's: incomplete until the store completes it.
    let (statuses, commit) = sink.commits.lock().pop().unwrap();
    assert_eq!(statuses, [CommandStatus::Sent]);
    let signal = store.1.lock().last().cloned().unwrap();
    let waiter = std::thread::spawn(move || commit.wait());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!waiter.is_finished());
    signal.complete(Ok(()));
    assert_eq!(waiter.join().unwrap(), Ok(()));
    assert_eq!(receipt.durable().unwrap().status, CommandStatus::Sent);
}
