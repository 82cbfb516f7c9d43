//! What `/proc` tells about a process: CPU time and peak memory. Linux only; elsewhere
//! every reading is `None` and the figures that need it are left out.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 on Linux for
/// userspace whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// CPU time (user + system) used by process `pid` so far, its exited threads included.
///
/// Takes the larger of two readings, each exact in its own way: `/proc/<pid>/stat` counts
/// every thread, exited ones too, but in 10 ms ticks; the per-thread `schedstat` files
/// count nanoseconds, but only of the live threads.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let ticks = stat_ticks(pid);
    let schedstat = schedstat_ns(pid);
    match (ticks, schedstat) {
        (None, None) => None,
        (ticks, ns) => {
            let from_ticks = Duration::from_millis(ticks.unwrap_or(0) * 1000 / USER_HZ);
            Some(from_ticks.max(Duration::from_nanos(ns.unwrap_or(0))))
        }
    }
}

/// utime + stime of `/proc/<pid>/stat`, in ticks.
fn stat_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sum over the live threads of `/proc/<pid>/task/<tid>/schedstat`'s time on CPU (ns).
fn schedstat_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

/// True when process `pid` is a PostgreSQL server process on this machine.
pub(crate) fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim().starts_with("postgres"))
}

/// Peak resident set size of process `pid` (`VmHWM`), in bytes.
pub(crate) fn peak_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let pid = std::process::id();
        // Burn a little CPU so that the reading is above zero.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time(pid).is_some_and(|t| t > Duration::ZERO));
        assert!(peak_rss(pid).is_some_and(|b| b > 0));
    }
}
