//! What the numbers were measured on.

use std::path::Path;
use std::time::Duration;

/// The machine and runtime, for the report's header.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub logical_cpus: usize,
    pub memory_gib: f64,
    pub ort_version: String,
    pub ort_path: String,
}

impl Machine {
    /// Reads /proc and asks the loaded ONNX Runtime for its build; call after loading it.
    pub fn describe(ort_library: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let logical_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        // "ORT Build Info: git-branch=rel-1.32.0, git-commit-id=…": the release branch names the
        // version; the library's file name (libonnxruntime.so.1.32.0) is the fallback.
        let info = ort::info();
        let ort_version = info
            .split([',', ' '])
            .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
            .map(str::to_string)
            .or_else(|| {
                ort_library
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("libonnxruntime.so."))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "unknown version".into());
        Machine {
            cpu,
            logical_cpus,
            memory_gib,
            ort_version,
            ort_path: ort_library.display().to_string(),
        }
    }
}

/// CPU time counters, in clock ticks: all CPUs together (`/proc/stat`) and this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    total: u64,
    idle: u64,
    own: u64,
}

impl CpuSample {
    pub fn now() -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
        // After the command name in parentheses: state is field 3, utime 14, stime 15.
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (_, rest) = own_stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuSample {
            total: values.iter().sum(),
            idle,
            own,
        })
    }

    /// (ticks other processes kept the CPUs busy, ticks elapsed on all CPUs) since `earlier`.
    pub fn others_since(&self, earlier: &CpuSample) -> (u64, u64) {
        let total = self.total.saturating_sub(earlier.total);
        let busy = total.saturating_sub(self.idle.saturating_sub(earlier.idle));
        let own = self.own.saturating_sub(earlier.own);
        (busy.saturating_sub(own), total)
    }
}

/// Share of all CPUs that other processes used over `span`, while this one waits.
pub fn others_busy(span: Duration) -> Option<f64> {
    let before = CpuSample::now()?;
    std::thread::sleep(span);
    let (others, total) = CpuSample::now()?.others_since(&before);
    Some(others as f64 / total.max(1) as f64)
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in KiB.
pub fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
