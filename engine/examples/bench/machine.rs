//! What the numbers were measured on.

use std::path::Path;

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

/// The 1-minute load average, to warn when other work shares the CPU.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
