//! How much CPU time the hypervisor gave to other machines while a benchmark ran ("steal" in
//! `/proc/stat`). On a virtual machine whose host is busy, every figure of a run drops with it
//! (here the same build's durable PutRecord rate halved under 17-37 % steal), so the reports
//! say how much was stolen next to the figures. `make bench` also gives the brokers' own CPU
//! time per record: it says where a change moved the work, though it rises under steal too
//! (durable PutRecord at 8 producers: 60-61 µs per append at 0 % steal, 75 at 8 %, 108 at
//! 25 % on this VM), only less than the rate falls.

use std::path::Path;

/// The machine's CPU time counters, summed over its CPUs, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every state: user, nice, system, idle, iowait, irq, softirq and steal.
    pub total: u64,
    /// Time the hypervisor ran something else while this machine's CPUs wanted to run.
    pub steal: u64,
}

/// Reads the counters from the text of `/proc/stat`: its `cpu` line holds user, nice, system,
/// idle, iowait, irq, softirq, steal, guest and guest_nice (guest time is counted in user
/// already). `None` when the line is missing or too short to carry steal.
pub fn parse(proc_stat: &str) -> Option<CpuTimes> {
    let line = proc_stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 8 {
        return None;
    }
    Some(CpuTimes {
        total: fields.iter().sum(),
        steal: fields[7],
    })
}

/// The counters now, where the system has `/proc/stat`.
pub fn read() -> Option<CpuTimes> {
    parse(&std::fs::read_to_string(Path::new("/proc/stat")).ok()?)
}

/// The share of CPU time stolen between two readings, in percent; `None` when no time passed
/// or the counters went back.
pub fn stolen_percent(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    let steal = after.steal.checked_sub(before.steal)?;
    (total > 0).then(|| 100.0 * steal as f64 / total as f64)
}

/// Measures the steal while `work` runs.
pub async fn during<T>(work: impl std::future::Future<Output = T>) -> (T, Option<f64>) {
    let before = read();
    let result = work.await;
    let stolen = before.zip(read()).and_then(|(b, a)| stolen_percent(b, a));
    (result, stolen)
}

/// "name N %" for each group whose steal is known, joined by commas, and the largest share;
/// `None` when no group's is known. Both reports word their sentence around it.
pub fn known_shares<'a>(
    groups: impl IntoIterator<Item = (&'a str, Option<f64>)>,
) -> Option<(String, f64)> {
    let known: Vec<(&str, f64)> = groups
        .into_iter()
        .filter_map(|(name, steal)| Some((name, steal?)))
        .collect();
    let largest = known.iter().map(|(_, percent)| *percent).reduce(f64::max)?;
    let shares: Vec<String> = known
        .iter()
        .map(|(name, percent)| format!("{name} {percent:.0} %"))
        .collect();
    Some((shares.join(", "), largest))
}

/// The report's sentence about the steal of each named group of workloads.
pub fn describe(groups: &[(&str, Option<f64>)]) -> String {
    let Some((shares, largest)) = known_shares(groups.iter().copied()) else {
        return "CPU steal during these runs: not known (no /proc/stat)\n".to_owned();
    };
    let warning = if largest >= 5.0 {
        "; figures taken under steal are lower than on an idle host and compare only with runs of similar steal"
    } else {
        ""
    };
    format!("CPU time the hypervisor gave to others during these runs (steal): {shares}{warning}\n")
}

/// The fields of a `/proc/<pid>/stat` text after the command name (which is in parentheses
/// and may hold spaces): the state first, then the parent's pid, and so on.
pub fn stat_fields(proc_pid_stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(proc_pid_stat[proc_pid_stat.rfind(')')? + 1..].split_whitespace())
}

/// The CPU time (user and system) a process has used, in seconds, from the text of its
/// `/proc/<pid>/stat`: fields 14 and 15, counted in ticks of 1/100 s.
pub fn parse_process_cpu(proc_pid_stat: &str) -> Option<f64> {
    let mut fields = stat_fields(proc_pid_stat)?.skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// The CPU time processes `pids` have used so far, summed, in seconds, where the system has
/// `/proc`.
fn processes_cpu(pids: &[u32]) -> Option<f64> {
    pids.iter()
        .map(|pid| parse_process_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .sum()
}

/// The CPU time some processes use from when it is started.
pub struct CpuUse {
    pids: Vec<u32>,
    before: Option<f64>,
}

impl CpuUse {
    /// Starts counting for processes `pids`.
    pub fn start(pids: Vec<u32>) -> Self {
        let before = processes_cpu(&pids);
        Self { pids, before }
    }

    /// The CPU time they have used since the start, summed, in seconds.
    pub fn seconds(&self) -> Option<f64> {
        Some(processes_cpu(&self.pids)? - self.before?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "cpu  100 5 50 800 20 3 2 20 7 0\ncpu0 50 2 25 400 10 1 1 10 3 0\nintr 1 2 3\n";

    #[test]
    fn the_cpu_line_gives_the_total_and_the_steal() {
        assert_eq!(
            parse(STAT),
            Some(CpuTimes {
                total: 100 + 5 + 50 + 800 + 20 + 3 + 2 + 20,
                steal: 20
            })
        );
    }

    #[test]
    fn a_short_or_missing_cpu_line_is_not_read() {
        assert_eq!(parse("cpu  100 5 50 800\n"), None);
        assert_eq!(parse("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn the_share_is_of_the_time_between_readings() {
        let before = CpuTimes {
            total: 1_000,
            steal: 10,
        };
        let after = CpuTimes {
            total: 1_400,
            steal: 110,
        };
        assert_eq!(stolen_percent(before, after), Some(25.0));
        assert_eq!(stolen_percent(before, before), None);
        assert_eq!(stolen_percent(after, before), None);
    }

    #[test]
    fn the_sentence_names_each_group_and_warns_only_when_enough_was_stolen() {
        let groups =
            |a: Option<f64>, b: Option<f64>| [("fsync workloads", a), ("async workloads", b)];
        let busy = describe(&groups(Some(24.6), Some(1.0)));
        assert!(
            busy.contains("(steal): fsync workloads 25 %, async workloads 1 %; figures taken"),
            "{busy}"
        );
        let quiet = describe(&groups(Some(1.0), None));
        assert_eq!(
            quiet,
            "CPU time the hypervisor gave to others during these runs (steal): fsync workloads 1 %\n"
        );
        assert!(describe(&groups(None, None)).contains("not known"));
    }

    #[test]
    fn a_process_cpu_time_is_its_user_and_system_ticks_after_its_name() {
        let stat =
            "4242 (brook (a b)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 4 0 1000 0";
        assert_eq!(parse_process_cpu(stat), Some(3.25));
        assert_eq!(parse_process_cpu("4242 (brook) S 1 2"), None);
        assert_eq!(parse_process_cpu("no name here"), None);
    }
}
