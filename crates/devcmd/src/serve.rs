//! `devcmd serve`: listen, recover, serve, drain.
//!
//! The listener is bound first and `/healthz` answers while the store is
//! recovering; the API answers 503/100501 and `/readyz` 503 until recovery
//! has finished. SIGINT or SIGTERM: `/readyz` turns 503, requests in flight
//! finish, the ticker stops, the store is flushed and closed.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use devcmd_callback::Callbacks;
use devcmd_core::{Dispatcher, SystemClock};
use devcmd_http::{Api, ApiConfig, router};

use crate::apps::apply_declared;
use crate::config::DEFAULT_LISTEN;
use crate::history_sweep::HistorySweep;
use crate::ticker::Ticker;
use crate::{Failure, ServeArgs, open_store};

/// Runs the server until a shutdown signal.
pub(crate) fn run(args: ServeArgs) -> Result<(), Failure> {
    let (file, dir) = args.data.resolve()?;
    let listen: SocketAddr = match args.listen.or(file.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|_| Failure::Usage("bad default address".into()))?,
    };
    let mut api_config = ApiConfig {
        strict_http_status: args.strict_http_status || file.strict_http_status.unwrap_or(false),
        ..ApiConfig::default()
    };
    if let Some(s) = file.access_token_ttl_s {
        api_config.access_token_ttl = Duration::from_secs(s);
    }
    if let Some(b) = file.body_limit_bytes {
        api_config.body_limit_bytes = b;
    }
    if let Some(q) = file.quota {
        api_config.default_quota = q.into();
    }
    let core_config = file.core_config()?;
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => file.tls.clone().map(|t| (t.cert, t.key)),
    };
    let tls = match tls {
        Some((cert, key)) => Some(crate::tls::server_config(&cert, &key).map_err(Failure::Usage)?),
        None => None,
    };

    let prometheus =
        devcmd_metrics::install_prometheus().map_err(|e| Failure::Usage(format!("metrics recorder: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("devcmd-http")
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            Failure::Usage(format!("cannot listen on {listen}: {e}"))
        })?;
        let local = listener.local_addr()?;
        let api = Arc::new(
            Api::new(api_config, Arc::new(SystemClock)).map_err(|e| Failure::Usage(format!("quota: {e}")))?,
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let parts: Arc<OnceLock<Parts>> = Arc::default();
        let app = router(api.clone()).merge(metrics_route(prometheus, parts.clone()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = match tls {
            Some(config) => {
                let listener = crate::tls::TlsListener::new(listener, config)?;
                tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await })
            }
            None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await }),
        };
        println!("listening on {scheme}://{local}");

        // Recovery on the blocking pool: it reads the whole store.
        let started = Instant::now();
        let dir2 = dir.clone();
        let callback_config = file.callbacks.config();
        let runtime = tokio::runtime::Handle::current();
        let in_memory = args.in_memory;
        let mqtt = match args.mqtt_url.clone().or(file.mqtt_url.clone()) {
            Some(url) => {
                let config = devcmd_device::MqttConfig {
                    url,
                    ..devcmd_device::MqttConfig::default()
                };
                let (channel, link) = devcmd_device::MqttChannel::start(&config, &tokio::runtime::Handle::current())
                    .map_err(|e| Failure::Usage(e.to_string()))?;
                println!("devices over MQTT at {}", config.url);
                Some((channel, link))
            }
            None => None,
        };
        let link = mqtt.as_ref().map(|(_, l)| l.clone());
        let opened = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
            let (fjall, recovered) = if in_memory {
                (None, devcmd_store::Recovered::default())
            } else {
                let (s, r) = open_store(&dir2)?;
                (Some(s), r)
            };
            let store: Arc<dyn devcmd_core::CommandStore> = match &fjall {
                Some(s) => s.clone(),
                None => devcmd_core::MemoryStore::new(),
            };
            for c in &recovered.corrupt {
                tracing::error!(?c, "corrupt record in the store (not loaded)");
            }
            let (callbacks, outbox) = Callbacks::start(
                callback_config,
                Arc::new(SystemClock),
                Some(store.clone()),
                runtime,
            )
            .map_err(|e| Failure::Usage(e.to_string()))?;
            let mut builder = Dispatcher::builder(core_config);
            if let Some(link) = link {
                builder = builder.link(link);
            }
            // Terminal commands leave memory for the store's history after
            // their grace; in memory only, they stay for the retention.
            if let Some(fjall) = &fjall {
                builder = builder.history(fjall.clone());
            }
            let core = Arc::new(
                builder
                    .store(store.clone())
                    .events(Arc::new(devcmd_metrics::Fanout(vec![
                        outbox,
                        Arc::new(devcmd_metrics::MetricsSink),
                    ])))
                    .build()
                    .map_err(|e| Failure::Usage(e.to_string()))?,
            );
            // Pushes owed from before the restart go first, then those the
            // restore itself causes (deadlines that passed while down).
            let resumed = callbacks.resume(&recovered.outbox);
            let report = core.restore(recovered.state);
            for r in &report.refused {
                tracing::error!(reason = %r, "stored record refused at restore");
            }
            tracing::info!(
                apps = report.apps,
                devices = report.devices,
                live = report.live_commands,
                terminal = report.terminal_commands,
                tasks = report.tasks,
                fired_at_once = report.fired_at_once,
                callbacks_resumed = resumed,
                took_ms = report.took.as_millis() as u64,
                "state restored"
            );
            Ok((fjall, core, callbacks))
        });
        let (store, core, callbacks) = match opened.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = stop_tx.send(true);
                return Err(e);
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                return Err(Failure::Usage(format!("recovery failed: {e}")));
            }
        };
        let declared = file.apps.clone();
        let core2 = core.clone();
        tokio::task::spawn_blocking(move || apply_declared(&core2, &declared))
            .await
            .map_err(|e| Failure::Usage(e.to_string()))??;
        metrics::gauge!(devcmd_metrics::names::RECOVERY_SECONDS).set(started.elapsed().as_secs_f64());
        let _ = parts.set((core.clone(), callbacks.clone(), mqtt.as_ref().map(|(c, _)| c.clone())));
        if let Some((channel, _)) = &mqtt {
            channel.attach(core.clone());
        }
        let ticker = Ticker::start(core.clone())?;
        let history_sweep = match &store {
            Some(s) => {
                let clock = core.clone();
                Some(HistorySweep::start(s.clone(), core.config().retention, move || clock.now())?)
            }
            None => None,
        };
        api.attach(core.clone());
        if in_memory {
            println!(
                "ready in {} ms: IN MEMORY ONLY (--in-memory): nothing is durable, a 201 is not a sync",
                started.elapsed().as_millis()
            );
        } else {
            println!(
                "ready in {} ms: data in {}",
                started.elapsed().as_millis(),
                dir.display()
            );
        }
        if core.apps().is_empty() && in_memory {
            println!("no applications: with --in-memory, declare them in a config file ([[apps]], see --config)");
        } else if core.apps().is_empty() {
            println!(
                "no applications yet. Stop the server (Ctrl-C), then:\n  \
                 devcmd app add my-app --data-dir {dir}\n  \
                 devcmd serve --data-dir {dir}\n\
                 and log in with:\n  \
                 curl -s -X POST {scheme}://{local}/iocm/app/sec/v1.1.0/login -d 'appId=my-app&secret=<the printed secret>'",
                dir = dir.display()
            );
        }

        shutdown_signal().await;
        println!("shutting down: draining requests");
        api.begin_drain();
        let _ = stop_tx.send(true);
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server error"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
        ticker.stop();
        if let Some(h) = history_sweep {
            h.stop();
        }
        // Undelivered pushes stay in the outbox for the next start.
        callbacks.shutdown();
        if let Some((channel, _)) = &mqtt {
            channel.shutdown();
        }
        drop(core);
        tokio::task::spawn_blocking(move || store.iter().for_each(|s| s.close()))
            .await
            .map_err(|e| Failure::Usage(e.to_string()))?;
        println!("stopped");
        Ok(())
    })
}

/// What a scrape samples, once recovery has made it.
type Parts = (Arc<Dispatcher>, Arc<Callbacks>, Option<Arc<devcmd_device::MqttChannel>>);

/// `GET /metrics`: samples the core and the callback outbox, then renders
/// everything in Prometheus text format.
fn metrics_route(handle: devcmd_metrics::PrometheusHandle, parts: Arc<OnceLock<Parts>>) -> axum::Router {
    use devcmd_metrics::names;
    use metrics::{counter, gauge};
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (handle, parts) = (handle.clone(), parts.clone());
            async move {
                if let Some((core, callbacks, mqtt)) = parts.get() {
                    if let Some(m) = mqtt {
                        let s = m.stats();
                        for (kind, n) in [
                            ("published", s.published),
                            ("publish_failed", s.publish_failed),
                            ("report", s.reports),
                            ("response", s.responses),
                            ("malformed", s.malformed),
                            ("unknown_device", s.unknown_device),
                            ("unknown_mid", s.unknown_mid),
                        ] {
                            counter!(names::MQTT_MESSAGES, "kind" => kind).absolute(n);
                        }
                        counter!(names::MQTT_CONNECTS).absolute(s.connects);
                        counter!(names::MQTT_DISCONNECTS).absolute(s.disconnects);
                    }
                    let core = core.clone();
                    // The depth buckets scan every device: off the async workers.
                    let _ = tokio::task::spawn_blocking(move || devcmd_metrics::sample_core(&core)).await;
                    let s = callbacks.stats();
                    for (outcome, n) in [
                        ("delivered", s.delivered),
                        ("failed", s.failed_attempts),
                        ("coalesced", s.coalesced),
                        ("parked", s.parked),
                        ("dropped", s.dropped),
                    ] {
                        counter!(names::CALLBACK_PUSHES, "outcome" => outcome).absolute(n);
                    }
                    counter!(names::CALLBACK_SUSPENSIONS).absolute(s.suspensions);
                    gauge!(names::CALLBACK_SUSPENDED_ADDRESSES).set(s.suspended_addresses as f64);
                    gauge!(names::CALLBACK_OUTBOX_DEPTH).set(s.queued as f64);
                }
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    )
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
