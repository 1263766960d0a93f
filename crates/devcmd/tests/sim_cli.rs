//! `devcmd sim` from the command line: a JSON report on stdout, the same for
//! the same seed, progress on stderr.

use std::process::Command;

fn sim(seed: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_devcmd"))
        .args([
            "sim",
            "--devices",
            "500",
            "--hours",
            "3",
            "--commands-per-hour",
            "2000",
            "--json",
            "--seed",
            seed,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn sim_prints_the_same_json_report_for_the_same_seed() {
    let (a, progress) = sim("42");
    let (b, _) = sim("42");
    let (c, _) = sim("43");
    assert_eq!(a, b);
    assert_ne!(a, c);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["config"]["devices"], 500);
    assert!(v["created"].as_u64().unwrap() > 3_000);
    assert!(progress.contains("sim: done"), "{progress}");
}
