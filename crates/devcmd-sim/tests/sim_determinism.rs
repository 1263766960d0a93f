//! One seed, one report; the report adds up; the fleet behaves as its
//! profiles say.

use devcmd_sim::{SimConfig, run};

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        devices: 2_000,
        hours: 6,
        commands_per_hour: 4_000,
        ..SimConfig::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte_and_another_seed_does_not() {
    let a = run(&small(7), |_| {}).unwrap().to_json();
    let b = run(&small(7), |_| {}).unwrap().to_json();
    let c = run(&small(8), |_| {}).unwrap().to_json();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn every_command_is_accounted_for_and_profiles_behave() {
    let mut progress = Vec::new();
    let r = run(&small(11), |p| progress.push(p)).unwrap();
    let o = &r.outcomes;
    let total = o.successful + o.failed + o.timeout + o.expired + o.canceled + o.pending + o.sent + o.delivered;
    assert_eq!(total, r.created, "{o:?}");
    // 4000 per hour for 6 h: 24 000 expected, Poisson spread about ±155.
    assert!((23_400..=24_600).contains(&r.created), "{}", r.created);
    // Most commands are delivered; some fail, some time out (immediate ones to sleeping PSM devices).
    assert!(o.successful * 2 > r.created, "{o:?}");
    assert!(o.failed > 0 && o.timeout > 0 && o.canceled > 0, "{o:?}");
    assert!(r.retransmissions > 0, "ACK loss causes resends");
    assert!(r.cancels_asked >= r.cancels_done);
    // Delivery waits for PSM devices to report: hourly, so minutes, not milliseconds.
    assert!(r.delivery_latency.p90_ms > 60_000, "{:?}", r.delivery_latency);
    assert!(r.delivery_latency.count > 0 && r.delivery_latency.p50_ms <= r.delivery_latency.p99_ms);
    // One sample per hour, start and end included.
    assert_eq!(r.samples.len(), 7);
    assert!(r.samples.iter().all(|s| s.depth.iter().sum::<u64>() == 2_000));
    assert!(!progress.is_empty() && progress.windows(2).all(|w| w[0].minute < w[1].minute));
    let table = r.to_table();
    assert!(table.contains("SUCCESSFUL") && table.contains("created → DELIVERED"));
}

#[test]
fn without_psm_devices_nothing_waits_for_a_report() {
    let cfg = SimConfig {
        psm_share: 0.0,
        drx_share: 1.0,
        ack_loss: 0.0,
        result_loss: 0.0,
        cancel_share: 0.0,
        cancel_tasks_per_hour: 0,
        ..small(3)
    };
    let r = run(&cfg, |_| {}).unwrap();
    assert_eq!(r.reports, 0);
    assert_eq!(r.outcomes.expired + r.outcomes.timeout, 0, "{:?}", r.outcomes);
    // DRX devices hear at once: delivery within the ACK latency (plus queueing behind earlier commands).
    assert!(r.delivery_latency.p50_ms <= 1_000, "{:?}", r.delivery_latency);
}

#[test]
fn bad_settings_are_refused_with_their_name() {
    let e = run(
        &SimConfig {
            psm_share: 1.5,
            ..small(1)
        },
        |_| {},
    )
    .unwrap_err();
    assert!(e.contains("psm_share"), "{e}");
    let e = run(&SimConfig { devices: 0, ..small(1) }, |_| {}).unwrap_err();
    assert!(e.contains("devices"), "{e}");
}

#[test]
fn commands_arrive_at_the_configured_rate() {
    // 100 000 per hour: mean gap 36 ms. A +1 ms floor on the gap once made
    // this 2.7 % short; Poisson spread is about ±316.
    let cfg = SimConfig {
        devices: 1_000,
        hours: 1,
        commands_per_hour: 100_000,
        psm_share: 0.0,
        drx_share: 1.0,
        ..small(5)
    };
    let r = run(&cfg, |_| {}).unwrap();
    assert!(
        (99_000..=101_000).contains(&(r.created + r.refused_queue_full)),
        "{}",
        r.created
    );
}
