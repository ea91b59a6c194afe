//! What `ct-load` and the edge benchmark send: the same realistic mix of signed events.

pub mod workload {
    //! Six sources, one event type each, payloads of varying size; some carry PII to redact.

    use rand::{Rng, rngs::StdRng};
    use serde_json::{Value, json};

    /// `(source, event type)`; the producer token of a source is `dev-token-<source>`.
    pub const SOURCES: [(&str, &str); 6] = [
        ("finance", "finance.invoice.generated"),
        ("portal", "portal.upload.received"),
        ("backend", "backend.fn.error"),
        ("website", "website.form.submitted"),
        ("github", "ci.workflow.failed"),
        ("desktop", "desktop.trigger.contract"),
    ];

    /// The payload of the `n`-th event of `event_type`.
    pub fn payload(event_type: &str, n: u64, rng: &mut StdRng) -> Value {
        match event_type {
            "finance.invoice.generated" => {
                json!({"invoiceId": format!("INV-{n}"), "period": "2025-09", "total": rng.random_range(100..900_000) as f64 / 100.0})
            }
            "portal.upload.received" => {
                json!({"contractorId": format!("C{}", n % 500), "fileRef": format!("gs://u/{n}.pdf"),
                                               "sizeBytes": rng.random_range(1_000..4_000_000)})
            }
            "backend.fn.error" => {
                json!({"fnName": "timesheetParse", "severity": "high", "stackRef": format!("gs://l/{n}.txt"),
                                         "message": "failed for someone@example.com"})
            }
            "website.form.submitted" => json!({"formId": format!("lead-{n}"), "captchaScore": 0.9, "email": "x@y.io",
                                               "notes": "x".repeat(rng.random_range(0..2_000))}),
            "ci.workflow.failed" => json!({"repo": "swan-portal", "runId": n, "job": "build", "url": "https://ci/1"}),
            _ => json!({"contractorId": format!("C{}", n % 500), "contractId": format!("K{n}")}),
        }
    }

    /// The `n`-th event of the mix as `(producer token, JSON body)`, with `event_id` as its id.
    pub fn event_body(event_id: &str, n: u64, rng: &mut StdRng) -> (String, String) {
        let (source, event_type) = SOURCES[(n % SOURCES.len() as u64) as usize];
        let body = json!({"eventId": event_id, "type": event_type, "ts": chrono::Utc::now().to_rfc3339(),
                          "source": source, "payload": payload(event_type, n, rng)});
        (format!("dev-token-{source}"), body.to_string())
    }
}

pub mod cpu {
    //! Where the CPU goes during a run, from `/proc` (Linux): each core's busy share and the cores
    //! used by each part of the pipeline; and pinning with `taskset` (util-linux).

    use std::{collections::BTreeMap, process::Command};

    /// The parts of the pipeline, by process name (`comm`, at most 15 characters).
    const PARTS: [(&str, &str); 12] = [
        ("ct-edge", "ct-edge"),
        ("ct-projector", "ct-projector"),
        ("ct-dlq-categori", "ct-dlq-categoriser"),
        ("ct-registry", "ct-registry"),
        ("ct-health", "ct-health"),
        ("ct-digest", "ct-digest"),
        ("ct-api", "ct-api"),
        ("ct-runner", "ct-runner"),
        ("java", "kafka (java)"),
        ("redis-server", "redis"),
        ("postgres", "postgres"),
        ("ct-load", "ct-load"),
    ];

    fn part_of(comm: &str) -> Option<&'static str> {
        PARTS.iter().find(|(name, _)| *name == comm).map(|(_, part)| *part)
    }

    /// A process: its pid and start time (clock ticks after boot), so a reused pid is another.
    type ProcessId = (u32, u64);

    /// `(pid and start time, comm, utime + stime in clock ticks)` of every process.
    fn processes() -> Vec<(ProcessId, String, u64)> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|entry| {
                let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let (head, rest) = stat.rsplit_once(')')?;
                let comm = head.split_once('(')?.1.to_owned();
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
                let started = fields.get(19)?.parse::<u64>().ok()?;
                Some(((pid, started), comm, ticks))
            })
            .collect()
    }

    /// Per core `(busy, total)` jiffies from `/proc/stat`.
    fn cores() -> Vec<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        stat.lines()
            .filter(|line| line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|line| {
                let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
                let total: u64 = values.iter().sum();
                // idle and iowait
                let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
                (total - idle, total)
            })
            .collect()
    }

    /// What `/proc` said at one moment.
    pub struct CpuSample {
        at: std::time::Instant,
        cores: Vec<(u64, u64)>,
        /// Each process of a part -> (part, ticks so far).
        processes: BTreeMap<ProcessId, (&'static str, u64)>,
    }

    impl CpuSample {
        pub fn now() -> Self {
            let processes = processes()
                .into_iter()
                .filter_map(|(pid, comm, ticks)| Some((pid, (part_of(&comm)?, ticks))))
                .collect();
            Self { at: std::time::Instant::now(), cores: cores(), processes }
        }

        /// Each part's ticks between `earlier` and this sample, process by process: a process
        /// started meanwhile counts whole, one that ended meanwhile is not counted (its last
        /// ticks are gone with it). Summing each part's ticks first and subtracting would lose the
        /// whole part whenever a busy process ends, as Postgres's autovacuum workers do.
        fn part_ticks(&self, earlier: &CpuSample) -> BTreeMap<&'static str, u64> {
            let mut parts = BTreeMap::new();
            for (process, (part, ticks)) in &self.processes {
                let before = earlier.processes.get(process).map_or(0, |(_, before)| *before);
                *parts.entry(*part).or_insert(0) += ticks.saturating_sub(before);
            }
            parts
        }

        /// Each core's busy share (0 to 1) and each part's cores between `earlier` and this sample
        /// (a process that ended meanwhile is not counted).
        pub fn since(&self, earlier: &CpuSample) -> (Vec<f64>, BTreeMap<&'static str, f64>) {
            let per_core = self
                .cores
                .iter()
                .zip(&earlier.cores)
                .map(|((busy, total), (busy0, total0))| {
                    let total = total.saturating_sub(*total0).max(1) as f64;
                    busy.saturating_sub(*busy0) as f64 / total
                })
                .collect();
            let seconds = (self.at - earlier.at).as_secs_f64().max(1e-3);
            // Linux reports process times in clock ticks of 1/100 s.
            let parts = self
                .part_ticks(earlier)
                .into_iter()
                .map(|(part, ticks)| (part, ticks as f64 / 100.0 / seconds))
                .collect();
            (per_core, parts)
        }
    }

    /// `taskset -a -p -c <cpus> <pid>`: every thread of `pid` on those CPUs.
    pub fn pin(pid: u32, cpus: &str) -> std::io::Result<()> {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("taskset could not pin process {pid} to CPUs {cpus}")))
        }
    }

    /// Pins every running part of the pipeline but ct-load itself; returns the pids pinned.
    pub fn pin_services(cpus: &str) -> std::io::Result<Vec<u32>> {
        let mut pinned = Vec::new();
        for ((pid, _), comm, _) in processes() {
            if part_of(&comm).is_some_and(|part| part != "ct-load") {
                pin(pid, cpus)?;
                pinned.push(pid);
            }
        }
        Ok(pinned)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn cores_are_read_and_parts_named_by_their_process_name() {
            let earlier = CpuSample::now();
            let spin = std::time::Instant::now();
            while spin.elapsed() < std::time::Duration::from_millis(50) {
                std::hint::black_box(0);
            }
            let (per_core, _) = CpuSample::now().since(&earlier);
            assert!(!per_core.is_empty());
            assert!(per_core.iter().all(|busy| (0.0..=1.0).contains(busy)), "{per_core:?}");
            assert_eq!(part_of("ct-dlq-categori"), Some("ct-dlq-categoriser"));
            assert_eq!(part_of("bash"), None);
        }

        fn sample(processes: &[(u32, u64, &'static str, u64)]) -> CpuSample {
            CpuSample {
                at: std::time::Instant::now(),
                cores: Vec::new(),
                processes: processes
                    .iter()
                    .map(|&(pid, started, part, ticks)| ((pid, started), (part, ticks)))
                    .collect(),
            }
        }

        #[test]
        fn a_part_keeps_its_ticks_when_one_of_its_processes_ends_or_starts() {
            // Postgres: backend 10 ran 500 ticks before and 40 during; autovacuum worker 11 had
            // run 900 ticks and ended; worker 12 started and ran 30; pid 14 ended and a new
            // Postgres process started under it and ran 8; pid 13 was reused by another part.
            let earlier = sample(&[
                (10, 1, "postgres", 500),
                (11, 2, "postgres", 900),
                (13, 3, "postgres", 70),
                (14, 4, "postgres", 600),
            ]);
            let later = sample(&[
                (10, 1, "postgres", 540),
                (12, 5, "postgres", 30),
                (13, 6, "redis", 5),
                (14, 7, "postgres", 8),
            ]);
            let parts = later.part_ticks(&earlier);
            assert_eq!(parts.get("postgres"), Some(&78));
            assert_eq!(parts.get("redis"), Some(&5));
        }
    }
}
