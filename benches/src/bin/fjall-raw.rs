//! fjall alone, without devcmd: how many records per second one thread can
//! write in synced batches (`PersistMode::SyncData`) of a given size, with
//! keys and values shaped like devcmd's command records (16-byte big-endian
//! ids, 160-byte values). This is the ceiling of the store's single writer
//! thread on this machine, before any of devcmd's own work.
//!
//! `cargo run --release -p devcmd-benches --bin fjall-raw -- [SECONDS] [DIR]`
//! (defaults: 3 s per batch size, a directory under the system temp dir)

use std::time::{Duration, Instant};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let base = args
        .next()
        .map_or_else(|| std::env::temp_dir().join("devcmd-fjall-raw"), Into::into);
    println!("fjall 3 alone: synced batches, 16 B keys, 160 B values, {secs} s per row");
    println!(
        "{:>8} {:>14} {:>12} {:>12}",
        "batch", "records/s", "commit p50", "commit p99"
    );
    for batch_size in [1usize, 64, 512, 4096] {
        let _ = std::fs::remove_dir_all(&base);
        let db = Database::builder(&base).open().expect("fjall opens");
        let ks = db
            .keyspace("commands", || {
                KeyspaceCreateOptions::default().max_memtable_size(16 * 1024 * 1024)
            })
            .expect("keyspace");
        let value = vec![0x5au8; 160];
        let mut next: u128 = 1 << 100;
        let mut took = Vec::new();
        let mut written = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            let t = Instant::now();
            let mut batch = db.batch().durability(Some(PersistMode::SyncData));
            for _ in 0..batch_size {
                next = next.wrapping_add(0x9e37_79b9_7f4a_7c15);
                batch.insert(&ks, next.to_be_bytes(), value.clone());
            }
            batch.commit().expect("committed");
            took.push(t.elapsed());
            written += batch_size as u64;
        }
        let elapsed = started.elapsed().as_secs_f64();
        took.sort();
        let pct = |p: f64| took[((took.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        println!(
            "{batch_size:>8} {:>14.0} {:>10.0}µs {:>10.0}µs",
            written as f64 / elapsed,
            pct(0.5),
            pct(0.99)
        );
        drop(ks);
        drop(db);
    }
    let _ = std::fs::remove_dir_all(&base);
}
