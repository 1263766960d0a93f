//! `devcmd sim`: a fleet in virtual time against the core, in-process.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use devcmd_sim::SimConfig;

use crate::Failure;

/// `devcmd sim` options; defaults are `devcmd_sim::SimConfig`'s.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 10_000)]
    devices: u32,
    /// Hours of platform time.
    #[arg(long, default_value_t = 48)]
    hours: u32,
    /// Seed: the same seed gives the same report.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Commands created per hour (Poisson arrivals).
    #[arg(long, default_value_t = 10_000)]
    commands_per_hour: u64,
    /// Share of PSM devices.
    #[arg(long, default_value_t = 0.7)]
    psm_share: f64,
    /// Share of DRX devices (the rest are eDRX).
    #[arg(long, default_value_t = 0.2)]
    drx_share: f64,
    /// Minutes between a PSM device's reports.
    #[arg(long, default_value_t = 60)]
    report_every_min: u32,
    /// Share of immediate commands.
    #[arg(long, default_value_t = 0.1)]
    immediate_share: f64,
    /// expireTime of cached commands in seconds [default: 48 h].
    #[arg(long)]
    expire_s: Option<u32>,
    /// Share of commands cancelled by the application.
    #[arg(long, default_value_t = 0.02)]
    cancel_share: f64,
    /// Cancel tasks per hour.
    #[arg(long, default_value_t = 10)]
    cancel_tasks_per_hour: u64,
    /// Chance a device misses a send.
    #[arg(long, default_value_t = 0.02)]
    ack_loss: f64,
    /// Chance a result is a failure.
    #[arg(long, default_value_t = 0.03)]
    result_failure: f64,
    /// Minutes between samples of live commands and queue depths.
    #[arg(long, default_value_t = 60)]
    sample_every_min: u32,
    /// Print the report as JSON (one line) instead of a table.
    #[arg(long)]
    json: bool,
    /// Run in real time against this server (e.g. http://127.0.0.1:8743)
    /// instead of in virtual time in-process; needs --mqtt-url, --app-id, --secret.
    #[arg(long, requires_all = ["mqtt_url", "app_id", "secret"])]
    server: Option<String>,
    /// The broker the server's devices use (live runs).
    #[arg(long)]
    mqtt_url: Option<String>,
    /// The application the live run acts as (give it a large quota).
    #[arg(long)]
    app_id: Option<String>,
    /// Its secret.
    #[arg(long, env = "DEVCMD_APP_SECRET")]
    secret: Option<String>,
    /// Length of a live run in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Commands per second in a live run.
    #[arg(long, default_value_t = 50)]
    commands_per_second: u64,
    /// Seconds between a PSM device's reports in a live run.
    #[arg(long, default_value_t = 30)]
    report_every_s: u64,
}

pub(crate) fn run(a: &SimArgs) -> Result<(), Failure> {
    if let (Some(server), Some(mqtt_url), Some(app_id), Some(secret)) = (&a.server, &a.mqtt_url, &a.app_id, &a.secret) {
        return crate::sim_live::run(&crate::sim_live::Live {
            server: server.trim_end_matches('/').to_owned(),
            mqtt_url: mqtt_url.clone(),
            app_id: app_id.clone(),
            secret: secret.clone(),
            devices: a.devices,
            seconds: a.seconds,
            commands_per_second: a.commands_per_second,
            psm_share: a.psm_share,
            report_every_s: a.report_every_s,
            ack_loss: a.ack_loss,
            result_failure: a.result_failure,
            seed: a.seed,
            json: a.json,
        });
    }
    let config = SimConfig {
        seed: a.seed,
        devices: a.devices,
        hours: a.hours,
        psm_share: a.psm_share,
        drx_share: a.drx_share,
        report_every_min: a.report_every_min,
        commands_per_hour: a.commands_per_hour,
        immediate_share: a.immediate_share,
        expire_s: a.expire_s,
        cancel_share: a.cancel_share,
        cancel_tasks_per_hour: a.cancel_tasks_per_hour,
        ack_loss: a.ack_loss,
        result_failure: a.result_failure,
        sample_every_min: a.sample_every_min,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let report = devcmd_sim::run(&config, |p| {
        // Progress goes to stderr so that stdout is the report alone.
        eprint!(
            "\rsim: {:>3} % of {} h, {} commands, {:.1} s  ",
            p.minute * 100 / p.minutes.max(1),
            p.minutes / 60,
            p.created,
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    })
    .map_err(Failure::Usage)?;
    eprintln!(
        "\rsim: done in {:.1} s of wall time{:30}",
        started.elapsed().as_secs_f64(),
        ""
    );
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
