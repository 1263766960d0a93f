//! `devcmd app add|list|remove`, and the apps a config file declares.

use std::sync::Arc;

use devcmd_core::{App, AppId, CoreConfig, Dispatcher, Quota};
use devcmd_http::{SecretCost, hash_secret, verify_secret};

use crate::config::AppFile;
use crate::{AppCommand, Failure, open_store};

fn app_id(s: &str) -> Result<AppId, Failure> {
    AppId::new(s).map_err(|e| Failure::Usage(format!("bad appId {s:?}: {e}")))
}

fn hash(secret: &str) -> Result<String, Failure> {
    if secret.is_empty() || secret.len() > devcmd_http::wire::CREDENTIAL_LEN_MAX {
        return Err(Failure::Usage("a secret must be 1..=256 bytes".into()));
    }
    hash_secret(secret, SecretCost::Standard).map_err(|e| Failure::Usage(e.to_string()))
}

/// A random secret: 32 characters of [A-Za-z0-9] from the OS CSPRNG.
fn generate_secret() -> Result<String, Failure> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let token = devcmd_http::auth::Token::generate().map_err(|e| Failure::Usage(e.to_string()))?;
    let hex = token.to_hex();
    // 64 hex characters = 32 bytes; each byte picks one character (a slight
    // bias of 256 mod 62 is irrelevant at 32 characters of ~5.95 bits).
    Ok(hex
        .as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let b = u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0);
            char::from(ALPHABET[usize::from(b) % ALPHABET.len()])
        })
        .collect())
}

/// Runs an `app` subcommand on the data directory.
pub(crate) fn run(cmd: AppCommand) -> Result<(), Failure> {
    let data = match &cmd {
        AppCommand::Add { data, .. } | AppCommand::List { data } | AppCommand::Remove { data, .. } => data,
    };
    let (_file, dir) = data.resolve()?;
    let (store, recovered) = open_store(&dir)?;
    let core = Dispatcher::builder(CoreConfig::default())
        .store(store.clone())
        .build()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    // Apps only: commands and timers are not needed to change the registry,
    // and restoring them would fire overdue deadlines outside a server.
    let mut state = recovered.state;
    state.commands.clear();
    state.tasks.clear();
    state.devices.clear();
    let _ = core.restore(state);
    let done = match cmd {
        AppCommand::Add {
            id,
            secret,
            quota_calls,
            quota_period_s,
            authorized_apps,
            ..
        } => {
            let (secret, generated) = match secret {
                Some(s) => (s, false),
                None => (generate_secret()?, true),
            };
            let app = App {
                id: app_id(&id)?,
                secret_hash: hash(&secret)?,
                quota: quota_calls
                    .zip(quota_period_s)
                    .map(|(calls, period_s)| Quota { calls, period_s }),
                authorized_apps: authorized_apps.iter().map(|a| app_id(a)).collect::<Result<_, _>>()?,
            };
            core.add_app(app)
                .map_err(|e| Failure::Usage(format!("cannot add {id}: {e}")))?
                .durable()
                .map_err(|e| Failure::Store(e.to_string()))?;
            println!("added application {id}");
            if generated {
                println!("secret: {secret}");
                println!("(shown once; only its hash is stored)");
            }
            Ok(())
        }
        AppCommand::List { .. } => {
            let apps = core.apps();
            if apps.is_empty() {
                println!("no applications (add one with `devcmd app add <appId>`)");
            }
            for a in apps {
                let quota = a
                    .quota
                    .map(|q| format!("{} calls/{} s", q.calls, q.period_s))
                    .unwrap_or_else(|| "default quota".into());
                let auth: Vec<&str> = a.authorized_apps.iter().map(AppId::as_str).collect();
                println!("{}\t{quota}\tauthorizes: [{}]", a.id, auth.join(", "));
            }
            Ok(())
        }
        AppCommand::Remove { id, .. } => {
            core.remove_app(&app_id(&id)?)
                .map_err(|e| Failure::Usage(format!("cannot remove {id}: {e}")))?
                .durable()
                .map_err(|e| Failure::Store(e.to_string()))?;
            println!("removed application {id}");
            Ok(())
        }
    };
    drop(core);
    store.close();
    done
}

/// Adds or updates the apps a config file declares. A stored app whose hash
/// already verifies the declared secret and whose other fields match is left alone.
pub(crate) fn apply_declared(core: &Arc<Dispatcher>, declared: &[AppFile]) -> Result<(), Failure> {
    for d in declared {
        let id = app_id(&d.id)?;
        let quota = d.quota.map(Quota::from);
        let authorized_apps: Vec<AppId> = d.authorized_apps.iter().map(|a| app_id(a)).collect::<Result<_, _>>()?;
        let existing = core.app(&id);
        if let Some(e) = &existing
            && e.quota == quota
            && e.authorized_apps == authorized_apps
            && verify_secret(&e.secret_hash, &d.secret)
        {
            continue;
        }
        let app = App {
            id: id.clone(),
            secret_hash: hash(&d.secret)?,
            quota,
            authorized_apps,
        };
        let receipt = if existing.is_some() {
            core.update_app(app)
        } else {
            core.add_app(app)
        }
        .map_err(|e| Failure::Usage(format!("config app {id}: {e}")))?;
        receipt.durable().map_err(|e| Failure::Store(e.to_string()))?;
        tracing::info!(app = %id, "application from the config file stored");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_secrets_are_32_alphanumerics_and_differ() {
        let a = super::generate_secret().unwrap();
        let b = super::generate_secret().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
