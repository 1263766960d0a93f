//! Every metric devcmd exports, by name. Nothing else spells a metric name.
//!
//! Labels are bounded: statuses and routes come from fixed sets, and
//! application labels from [`crate::AppLabels`] (capped, the rest `other`).
//! No metric has a per-device or per-command label.

/// Commands created (counter).
pub const COMMANDS_CREATED: &str = "devcmd_commands_created_total";
/// Status changes, by `from` and `to` status (counter).
pub const TRANSITIONS: &str = "devcmd_transitions_total";
/// Commands that reached a terminal status, by `status` (counter).
pub const COMMANDS_TERMINAL: &str = "devcmd_commands_terminal_total";
/// Live commands now, by `status` (PENDING, SENT, DELIVERED) (gauge).
pub const LIVE_COMMANDS: &str = "devcmd_live_commands";
/// Registered devices now (gauge).
pub const DEVICES: &str = "devcmd_devices";
/// Devices by how many live commands they hold: `le` is the bucket's upper
/// bound (`+Inf` for the rest); each device is in exactly one bucket (gauge).
pub const DEVICE_QUEUE_DEPTH: &str = "devcmd_device_queue_depth_devices";
/// Resends after a first send (counter).
pub const RETRANSMISSIONS: &str = "devcmd_retransmissions_total";
/// Device events for commands that had already moved on, ignored (counter).
pub const LATE_EVENTS_IGNORED: &str = "devcmd_late_device_events_ignored_total";
/// Terminal commands that left memory, by `to`: `history` (archived to
/// the store's history after their grace) or `gone` (past retention) (counter).
pub const COMMANDS_LEFT_MEMORY: &str = "devcmd_commands_left_memory_total";
/// Commands deleted from the stored history past their retention (counter).
pub const HISTORY_DELETED: &str = "devcmd_history_deleted_total";
/// Deadlines in the timer heaps now, stale ones included (gauge).
pub const TIMER_ENTRIES: &str = "devcmd_timer_entries";
/// How late the earliest due deadline was when the ticker fired it, in seconds (histogram).
pub const TIMER_LAG_SECONDS: &str = "devcmd_timer_lag_seconds";
/// API calls, by `route`, `method`, `status` and `app` (counter).
pub const API_CALLS: &str = "devcmd_api_calls_total";
/// API call latency in seconds, by `route` and `method` (histogram).
pub const API_LATENCY_SECONDS: &str = "devcmd_api_latency_seconds";
/// Calls refused over quota, by `app` (counter).
pub const API_THROTTLED: &str = "devcmd_api_throttled_total";
/// Time to write and sync one store batch, in seconds (histogram).
pub const STORE_COMMIT_SECONDS: &str = "devcmd_store_commit_seconds";
/// Mutations per synced batch (histogram).
pub const STORE_BATCH_MUTATIONS: &str = "devcmd_store_batch_mutations";
/// Time recovery took at the last start, in seconds (gauge).
pub const RECOVERY_SECONDS: &str = "devcmd_recovery_seconds";
/// Callback pushes, by `outcome`: `delivered`, `failed` (each failed attempt),
/// `coalesced`, `parked`, `dropped` (counter).
pub const CALLBACK_PUSHES: &str = "devcmd_callback_pushes_total";
/// Times a callback address was suspended (counter).
pub const CALLBACK_SUSPENSIONS: &str = "devcmd_callback_suspensions_total";
/// Callback addresses suspended now (gauge).
pub const CALLBACK_SUSPENDED_ADDRESSES: &str = "devcmd_callback_suspended_addresses";
/// Notifications waiting to be pushed now (the in-memory outbox) (gauge).
pub const CALLBACK_OUTBOX_DEPTH: &str = "devcmd_callback_outbox_depth";
/// MQTT device channel messages, by `kind`: `published` (commands),
/// `publish_failed`, `report`, `response`, `malformed`, `unknown_device`,
/// `unknown_mid` (counter).
pub const MQTT_MESSAGES: &str = "devcmd_mqtt_messages_total";
/// MQTT broker connections made, reconnections included (counter).
pub const MQTT_CONNECTS: &str = "devcmd_mqtt_connects_total";
/// MQTT broker connections lost (counter).
pub const MQTT_DISCONNECTS: &str = "devcmd_mqtt_disconnects_total";
