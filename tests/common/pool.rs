//! The hugetlb pool, shared by every test process on the machine.
//!
//! [`POOL`] orders the tests of one process: tests that resize the pool,
//! count its free pages or assert that they got hugetlb pages hold it
//! exclusively ([`pool_exclusive`]); tests that may take pages from it hold
//! it shared ([`pool_shared`]). The tests never leave the pool smaller
//! than [`HUGETLB_POOL_PAGES`].

use super::*;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

/// hugetlb pages the hugetlb tests make sure exist. Enough for the biggest
/// fixture twice over, because other tests running at the same time with
/// `--backend=auto` take pages from the same pool.
pub const HUGETLB_POOL_PAGES: u64 = 128;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

pub static POOL: RwLock<()> = RwLock::new(());

pub fn pool_shared() -> RwLockReadGuard<'static, ()> {
    POOL.read().unwrap_or_else(|e| e.into_inner())
}

pub fn pool_exclusive() -> RwLockWriteGuard<'static, ()> {
    POOL.write().unwrap_or_else(|e| e.into_inner())
}

fn meminfo(key: &str) -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn hugetlb_free_pages() -> u64 {
    meminfo("HugePages_Free")
}

fn read_nr_hugepages() -> u64 {
    fs::read_to_string(NR_HUGEPAGES)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Makes sure `/proc/sys/vm/nr_hugepages` is at least `n`: only ever raises
/// it (tests run in parallel). A skip when not allowed to write it or when
/// the kernel cannot find the memory.
pub fn ensure_hugetlb_pool(n: u64) -> Result<(), Skip> {
    static RAISE: Mutex<()> = Mutex::new(());
    let _guard = lock(&RAISE);
    if read_nr_hugepages() >= n {
        return Ok(());
    }
    if let Err(e) = fs::write(NR_HUGEPAGES, format!("{n}\n")) {
        return Err(Skip(format!(
            "cannot raise {NR_HUGEPAGES} to {n} ({e}); run as root or set it beforehand"
        )));
    }
    let now = read_nr_hugepages();
    if now < n {
        return Err(Skip(format!(
            "{NR_HUGEPAGES}: asked for {n} pages, the kernel found memory for {now}"
        )));
    }
    Ok(())
}

/// The pool resized to exactly `n` free pages (hold [`pool_exclusive`]); on
/// drop, back to what it was and at least [`HUGETLB_POOL_PAGES`].
pub struct PoolSize {
    restore: u64,
}

impl PoolSize {
    pub fn set(n: u64) -> Result<PoolSize, Skip> {
        let restore = read_nr_hugepages().max(HUGETLB_POOL_PAGES);
        fs::write(NR_HUGEPAGES, format!("{n}\n")).map_err(|e| {
            Skip(format!(
                "cannot write {NR_HUGEPAGES} ({e}); run as root to resize the hugetlb pool"
            ))
        })?;
        let guard = PoolSize { restore };
        let free = hugetlb_free_pages();
        if free != n {
            // Leave the pool restored (drop) before failing.
            drop(guard);
            panic!(
                "asked for a hugetlb pool of {n} free pages, /proc/meminfo says {free} free: \
                 another process holds pages"
            );
        }
        Ok(guard)
    }
}

impl Drop for PoolSize {
    fn drop(&mut self) {
        let _ = fs::write(NR_HUGEPAGES, format!("{}\n", self.restore));
    }
}

/// Waits (up to 5 s) until HugePages_Free is `n`; returns the last value.
pub fn wait_free_pages(n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let free = hugetlb_free_pages();
        if free == n || Instant::now() >= deadline {
            return free;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
