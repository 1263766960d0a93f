//! Applications and devices: who owns what, and who may act for whom.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use parking_lot::RwLock;

use crate::error::{AccessError, InvalidInput, RegistryError};
use crate::id::{AppId, DeviceId};

/// Largest `nodeId` (a device's IMEI, MAC or serial), in bytes.
pub const NODE_ID_LEN_MAX: usize = 64;

/// An application's API quota: `calls` per `period_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Calls allowed per period (also the burst).
    pub calls: u32,
    /// Length of the period in seconds.
    pub period_s: u32,
}

impl Default for Quota {
    /// The platform's default: 100 calls per 60 s.
    fn default() -> Self {
        Self {
            calls: 100,
            period_s: 60,
        }
    }
}

/// An application known to the platform.
#[derive(Clone, PartialEq, Eq)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its secret as a salted hash (never the secret itself); the HTTP layer
    /// chooses the hashing scheme.
    pub secret_hash: String,
    /// Its quota; `None` uses the server's default.
    pub quota: Option<Quota>,
    /// Applications this one has authorised to act on its devices (`?appId=`).
    pub authorized_apps: Vec<AppId>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs too.
        f.debug_struct("App")
            .field("id", &self.id)
            .field("quota", &self.quota)
            .field("authorized_apps", &self.authorized_apps)
            .finish_non_exhaustive()
    }
}

/// How a device can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeliveryProfile {
    /// Power saving mode: reachable only for a short window after it reports
    /// data or connects. The platform's default.
    #[default]
    Psm,
    /// Discontinuous reception: always reachable.
    Drx,
    /// Extended DRX: reachable, after a paging delay (which the simulator models).
    Edrx,
}

impl DeliveryProfile {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Psm => "psm",
            Self::Drx => "drx",
            Self::Edrx => "edrx",
        }
    }
}

impl FromStr for DeliveryProfile {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "psm" => Ok(Self::Psm),
            "drx" => Ok(Self::Drx),
            "edrx" => Ok(Self::Edrx),
            _ => Err(InvalidInput::new("profile", "must be psm, drx or edrx")),
        }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// Its node id (IMEI, MAC, serial).
    pub node_id: String,
    /// The application it belongs to.
    pub owner: AppId,
    /// How it can be reached.
    pub profile: DeliveryProfile,
}

/// A request to register a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// The id to give it; `None` generates a UUID.
    pub device_id: Option<DeviceId>,
    /// Its node id (1..=64 bytes).
    pub node_id: String,
    /// How it can be reached.
    pub profile: DeliveryProfile,
}

impl NewDevice {
    /// A PSM device with a generated id.
    pub fn new(node_id: &str) -> Self {
        Self {
            device_id: None,
            node_id: node_id.to_owned(),
            profile: DeliveryProfile::Psm,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidInput> {
        if self.node_id.is_empty() || self.node_id.len() > NODE_ID_LEN_MAX || self.node_id.chars().any(char::is_control)
        {
            return Err(InvalidInput::new("nodeId", "must be 1..=64 printable characters"));
        }
        Ok(())
    }
}

/// Who is calling: the authenticated application and, when it acts on another
/// application's devices, that application (the `?appId=` of the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated application.
    pub app: AppId,
    /// The application whose devices it acts on, if not its own.
    pub on_behalf_of: Option<AppId>,
}

impl Caller {
    /// An application acting on its own devices.
    pub fn own(app: AppId) -> Self {
        Self {
            app,
            on_behalf_of: None,
        }
    }
}

/// The applications, behind one reader-writer lock: changes are rare, and the
/// hot paths (an application acting on its own devices) never read it.
#[derive(Debug, Default)]
pub(crate) struct AppRegistry {
    apps: RwLock<HashMap<AppId, App>>,
}

impl AppRegistry {
    pub(crate) fn insert(&self, app: App) -> Result<(), RegistryError> {
        let mut apps = self.apps.write();
        if apps.contains_key(&app.id) {
            return Err(RegistryError::AppExists);
        }
        apps.insert(app.id.clone(), app);
        Ok(())
    }

    pub(crate) fn update(&self, app: App) -> Result<(), RegistryError> {
        match self.apps.write().get_mut(&app.id) {
            Some(slot) => {
                *slot = app;
                Ok(())
            }
            None => Err(RegistryError::AppNotExisted),
        }
    }

    pub(crate) fn remove(&self, id: &AppId) -> Result<App, RegistryError> {
        self.apps.write().remove(id).ok_or(RegistryError::AppNotExisted)
    }

    pub(crate) fn get(&self, id: &AppId) -> Option<App> {
        self.apps.read().get(id).cloned()
    }

    pub(crate) fn contains(&self, id: &AppId) -> bool {
        self.apps.read().contains_key(id)
    }

    pub(crate) fn list(&self) -> Vec<App> {
        let mut v: Vec<App> = self.apps.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The application whose devices the caller acts on, borrowed from the
    /// caller (no reference count is touched on the hot path). Naming one's
    /// own application in `?appId=` is accepted as if it were left out.
    pub(crate) fn resolve<'c>(&self, caller: &'c Caller) -> Result<&'c AppId, AccessError> {
        match &caller.on_behalf_of {
            None => Ok(&caller.app),
            Some(owner) if *owner == caller.app => Ok(owner),
            Some(owner) => {
                let apps = self.apps.read();
                let app = apps.get(owner).ok_or(AccessError::AppNotExisted)?;
                if app.authorized_apps.contains(&caller.app) {
                    Ok(owner)
                } else {
                    Err(AccessError::AppNotAuthorized)
                }
            }
        }
    }
}
