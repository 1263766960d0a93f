//! The server's settings: defaults, then a TOML file, then environment and
//! flags (clap reads those two), later ones winning.
//!
//! ```toml
//! listen = "127.0.0.1:8743"
//! data_dir = "./devcmd-data"
//! strict_http_status = false
//! access_token_ttl_s = 3600
//! body_limit_bytes = 65536
//! mqtt_url = "mqtt://127.0.0.1:1883"   # optional: devices over MQTT
//!
//! [quota]              # every app without its own
//! calls = 100
//! period_s = 60
//!
//! [tls]                # optional: serve HTTPS
//! cert = "cert.pem"
//! key = "key.pem"
//!
//! [core]               # optional bounds and timeouts
//! device_live_max = 1000
//! live_max = 50000000
//! command_timeout_s = 180
//! result_timeout_s = 180
//! retention_s = 259200
//! history_grace_s = 60
//! sweep_interval_ms = 1000
//!
//! [callbacks]          # optional: the callbackUrl pushes
//! notify_expired_and_canceled = false
//! push_timeout_s = 15
//! lanes_per_address = 32
//!
//! [[apps]]             # declared apps are added (or their secret updated) at start
//! id = "my-app"
//! secret = "…"         # hashed before it is stored; keep this file private
//! authorized_apps = ["other-app"]
//! quota = { calls = 1000, period_s = 60 }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devcmd_core::{CoreConfig, Quota};
use serde::Deserialize;

/// The default listen address: the platform's application port, loopback only.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8743";

/// A quota as written in the file.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaFile {
    /// Calls per period (and burst).
    pub(crate) calls: u32,
    /// Period in seconds.
    pub(crate) period_s: u32,
}

impl From<QuotaFile> for Quota {
    fn from(q: QuotaFile) -> Self {
        Quota {
            calls: q.calls,
            period_s: q.period_s,
        }
    }
}

/// TLS files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    /// PEM certificate chain.
    pub(crate) cert: PathBuf,
    /// PEM private key.
    pub(crate) key: PathBuf,
}

/// Core bounds and timeouts that may be changed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoreFile {
    /// Live commands per device.
    pub(crate) device_live_max: Option<u32>,
    /// Live commands in all.
    pub(crate) live_max: Option<u64>,
    /// Seconds from the first send to TIMEOUT without an ACK.
    pub(crate) command_timeout_s: Option<u64>,
    /// Seconds from DELIVERED to TIMEOUT without a result.
    pub(crate) result_timeout_s: Option<u64>,
    /// Seconds terminal commands stay queryable.
    pub(crate) retention_s: Option<u64>,
    /// Seconds terminal commands stay in memory before they move to the
    /// stored history (still queryable there until the retention ends).
    pub(crate) history_grace_s: Option<u64>,
    /// Milliseconds between two sweeps of a shard (grace and retention).
    pub(crate) sweep_interval_ms: Option<u64>,
}

/// Callback settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallbacksFile {
    /// Also push EXPIRED and CANCELED.
    pub(crate) notify_expired_and_canceled: Option<bool>,
    /// Seconds to wait for a receiver's answer.
    pub(crate) push_timeout_s: Option<u64>,
    /// Concurrent pushes per callback address.
    pub(crate) lanes_per_address: Option<usize>,
}

impl CallbacksFile {
    /// The outbox settings: defaults with this file's changes.
    pub(crate) fn config(&self) -> devcmd_callback::CallbackConfig {
        let mut c = devcmd_callback::CallbackConfig::default();
        if let Some(v) = self.notify_expired_and_canceled {
            c.notify_expired_and_canceled = v;
        }
        if let Some(v) = self.push_timeout_s {
            c.push_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = self.lanes_per_address {
            c.lanes_per_address = v.max(1);
        }
        c
    }
}

/// An application declared in the file.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppFile {
    /// Its id.
    pub(crate) id: String,
    /// Its secret (hashed before it is stored).
    pub(crate) secret: String,
    /// Apps it authorises to act on its devices.
    #[serde(default)]
    pub(crate) authorized_apps: Vec<String>,
    /// Its own quota.
    pub(crate) quota: Option<QuotaFile>,
}

impl std::fmt::Debug for AppFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppFile").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Address to listen on.
    pub(crate) listen: Option<SocketAddr>,
    /// Data directory.
    pub(crate) data_dir: Option<PathBuf>,
    /// Honest HTTP statuses for business errors.
    pub(crate) strict_http_status: Option<bool>,
    /// Access token lifetime.
    pub(crate) access_token_ttl_s: Option<u64>,
    /// Largest request body.
    pub(crate) body_limit_bytes: Option<usize>,
    /// Default quota.
    pub(crate) quota: Option<QuotaFile>,
    /// MQTT broker for the device channel.
    pub(crate) mqtt_url: Option<String>,
    /// TLS.
    pub(crate) tls: Option<TlsFile>,
    /// Core settings.
    #[serde(default)]
    pub(crate) core: CoreFile,
    /// Callback settings.
    #[serde(default)]
    pub(crate) callbacks: CallbacksFile,
    /// Declared applications.
    #[serde(default)]
    pub(crate) apps: Vec<AppFile>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

impl ConfigFile {
    /// Reads and parses a file.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    pub(crate) fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The core's settings: defaults with this file's changes. The server
    /// sweeps every second (the core's default is a minute, which suits
    /// virtual-time runs that stop at every sweep): terminal commands then
    /// leave memory within a second of their grace.
    pub(crate) fn core_config(&self) -> Result<CoreConfig, ConfigError> {
        let mut c = CoreConfig {
            sweep_interval: Duration::from_secs(1),
            ..CoreConfig::default()
        };
        let f = &self.core;
        if let Some(v) = f.device_live_max {
            c.device_live_max = v;
        }
        if let Some(v) = f.live_max {
            c.live_max = v;
        }
        if let Some(v) = f.command_timeout_s {
            c.command_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.result_timeout_s {
            c.result_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.retention_s {
            c.retention = Duration::from_secs(v);
        }
        if let Some(v) = f.history_grace_s {
            c.history_grace = Duration::from_secs(v);
        }
        if let Some(v) = f.sweep_interval_ms {
            c.sweep_interval = Duration::from_millis(v);
        }
        c.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .map(|l| format!("{}\n", l.replace('…', "x")))
            .collect();
        let c = ConfigFile::parse(&example).unwrap();
        assert_eq!(c.listen.unwrap().to_string(), DEFAULT_LISTEN);
        assert_eq!(c.apps[0].quota.unwrap().calls, 1000);
        assert_eq!(c.core_config().unwrap().device_live_max, 1000);
        assert_eq!(c.mqtt_url.as_deref(), Some("mqtt://127.0.0.1:1883"));
        assert!(!format!("{:?}", c.apps[0]).contains("secret"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(ConfigFile::parse("listen = \"nowhere\"").is_err());
        assert!(ConfigFile::parse("lisen = \"127.0.0.1:1\"").is_err());
        let c = ConfigFile::parse("[core]\ndevice_live_max = 0").unwrap();
        assert!(c.core_config().is_err());
    }
}
