//! A dispatcher on a virtual clock with every sink attached, for behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use devcmd_core::*;

pub const T0: u64 = 1_700_000_000_000;

pub struct Harness {
    pub clock: VirtualClock,
    pub core: Dispatcher,
    pub store: Arc<MemoryStore>,
    pub sent: Receiver<Issue>,
    pub changes: Receiver<StatusChange>,
    pub app: AppId,
    pub caller: Caller,
    link: ChannelLink,
    events: ChannelEvents,
    config: CoreConfig,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(CoreConfig {
            shard_count: 4,
            id_seed: Some(7),
            ..CoreConfig::default()
        })
    }

    pub fn with_config(config: CoreConfig) -> Self {
        let clock = VirtualClock::new(Timestamp::from_millis(T0));
        let store = MemoryStore::new();
        let (link, sent) = ChannelLink::bounded(1 << 16);
        let (events, changes) = ChannelEvents::bounded(1 << 16);
        let core = Dispatcher::builder(config.clone())
            .clock(Arc::new(clock.clone()))
            .store(store.clone())
            .link(Arc::new(link.clone()))
            .events(Arc::new(events.clone()))
            .build()
            .expect("valid config");
        let app = AppId::new("app-a").unwrap();
        core.add_app(app_record(&app)).unwrap().durable().unwrap();
        let caller = Caller::own(app.clone());
        Self {
            clock,
            core,
            store,
            sent,
            changes,
            app,
            caller,
            link,
            events,
            config,
        }
    }

    /// A crash and a restart: a new dispatcher rebuilt from the store, at the same instant.
    pub fn restart(&mut self) -> RestoreReport {
        let state = self.store.recovered_state();
        self.core = Dispatcher::builder(self.config.clone())
            .clock(Arc::new(self.clock.clone()))
            .store(self.store.clone())
            .link(Arc::new(self.link.clone()))
            .events(Arc::new(self.events.clone()))
            .build()
            .expect("valid config");
        self.core.restore(state)
    }

    pub fn device(&self, profile: DeliveryProfile) -> DeviceId {
        let mut req = NewDevice::new("863703030000001");
        req.profile = profile;
        self.core
            .register_device(&self.caller, req)
            .unwrap()
            .durable()
            .unwrap()
            .id
    }

    pub fn cached(&self, device: &DeviceId) -> Command {
        self.create(NewCommand::new(device.clone(), "Light", "SET", r#"{"v":1}"#))
    }

    pub fn immediate(&self, device: &DeviceId) -> Command {
        let mut req = NewCommand::new(device.clone(), "Light", "SET", r#"{"v":1}"#);
        req.expire_time_s = Some(0);
        self.create(req)
    }

    pub fn create(&self, req: NewCommand) -> Command {
        self.core
            .create_command(&self.caller, req)
            .expect("created")
            .durable()
            .expect("durable")
    }

    pub fn status(&self, id: CommandId) -> CommandStatus {
        self.core.command(&self.caller, id).expect("known command").status
    }

    pub fn get(&self, id: CommandId) -> Command {
        self.core.command(&self.caller, id).expect("known command")
    }

    pub fn advance(&self, d: Duration) {
        self.core.advance(&self.clock, d);
    }

    /// Moves to `T0 + ms`.
    pub fn at_ms(&self, ms: u64) {
        let target = Timestamp::from_millis(T0 + ms);
        let now = self.clock.now();
        assert!(target >= now, "time only moves forward");
        self.core.advance(&self.clock, target.saturating_since(now));
    }

    pub fn sent_ids(&self) -> Vec<(CommandId, u8)> {
        self.sent.try_iter().map(|i| (i.command_id, i.attempt)).collect()
    }

    pub fn changes_of(&self, id: CommandId) -> Vec<(Option<CommandStatus>, CommandStatus)> {
        self.changes
            .try_iter()
            .filter(|c| c.command_id == id)
            .map(|c| (c.from, c.to))
            .collect()
    }

    pub fn ms_since_t0(&self, t: Timestamp) -> u64 {
        t.as_millis() - T0
    }
}

pub fn app_record(id: &AppId) -> App {
    App {
        id: id.clone(),
        secret_hash: "hash".into(),
        quota: None,
        authorized_apps: vec![],
    }
}
