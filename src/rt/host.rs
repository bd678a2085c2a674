//! Facts about this process and host that decide how ranges are placed,
//! probed once before the load and passed down.

use super::sys;
use hugeload::options::Backend;

/// See the module comment.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// THP is disabled for this process (PR_SET_THP_DISABLE).
    pub thp_disabled: bool,
    /// A debugger traces this process (TracerPid in /proc/self/status).
    pub traced: bool,
    /// Memory-deny-write-execute: no mprotect may add exec.
    pub mdwe: bool,
    /// Address-space randomization is on (not `setarch -R`).
    pub randomizes: bool,
}

impl Host {
    /// The facts a load with `backend` needs (with huge pages off, only
    /// randomization matters: the rest are left false, unread).
    pub fn probe(backend: Backend) -> Host {
        const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
        let huge = backend != Backend::Off;
        Host {
            thp_disabled: huge && sys::thp_disabled(),
            traced: huge && is_traced(),
            mdwe: huge && sys::mdwe_refuses_exec_gain(),
            randomizes: sys::personality() & ADDR_NO_RANDOMIZE == 0,
        }
    }
}

/// The value of field `key` of /proc/self/status, as a number.
fn status_number(key: &[u8]) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let value = sys::read_small(b"/proc/self/status", &mut buf)?
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(key))?;
    let digits = value.iter().filter(|b| !b.is_ascii_whitespace());
    digits.fold(Some(0u64), |n, &b| {
        n?.checked_mul(10)?
            .checked_add(b.checked_sub(b'0').filter(|d| *d < 10)? as u64)
    })
}

fn is_traced() -> bool {
    status_number(b"TracerPid:").is_some_and(|pid| pid != 0)
}

/// How many seccomp filters this process runs under (`None` where the
/// kernel does not say).
pub fn seccomp_filters() -> Option<u64> {
    status_number(b"Seccomp_filters:")
}

/// Free 2 MiB pages in the hugetlb pool now (it changes as hugeload takes
/// pages, so it is read when a mapping fails, not once).
pub fn hugetlb_free_pages() -> u64 {
    let mut buf = [0u8; 32];
    sys::read_small(
        b"/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
        &mut buf,
    )
    .map(|text| text.strip_suffix(b"\n").unwrap_or(text))
    .and_then(|text| core::str::from_utf8(text).ok()?.parse().ok())
    .unwrap_or(0)
}
