//! SLOs on the evaluator's clock. At each tick every SLO's indicator gives `(good, total)` for
//! the minute (events folded at the tick, runs completed at it, or the heartbeat rule's verdict
//! for a time slice), stored in `slo_minutes`; running sums per window (`slo_sums`) are moved by
//! what entered and what left; then each SLO's budget and burn-rate condition are computed
//! (`ct_core::slo`) and kept in `slo_status`. A missed objective degrades the system; a burn
//! pages through the alerts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use ct_core::{
    catalogue::Catalogue,
    slo::{self, Budget, BurnPolicy, Burning, Counts, Indicator, SloSpec},
};
use sqlx::PgConnection;

/// The SLOs and the burn-rate policy (configuration: `[[slos]]` and `[slo_alerts]`).
#[derive(Debug, Clone)]
pub struct Slos {
    pub specs: Vec<SloSpec>,
    pub burn: BurnPolicy,
}

/// `(good, total)` of one SLO for one subject at one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub slo: String,
    pub system_id: String,
    /// The job for per-job SLOs, `""` for the system as a whole.
    pub job: String,
    pub good: i64,
    pub total: i64,
}

/// A run whose first completion was folded at this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub system_id: String,
    pub job: Option<String>,
    pub status: String,
}

/// One SLO of one subject as of a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub slo: String,
    pub system_id: String,
    pub job: String,
    pub budget: Budget,
    /// The objective missed over the window, as a sentence.
    pub missed: Option<String>,
    pub burning: Option<Burning>,
}

impl Report {
    /// `finance` or `finance job finance.export.backfill`.
    pub fn subject(&self) -> String {
        subject(&self.system_id, &self.job)
    }
}

fn subject(system_id: &str, job: &str) -> String {
    if job.is_empty() { system_id.to_owned() } else { format!("{system_id} job {job}") }
}

/// A run completed without a start in the log (yet) counts for the system, under this job name.
const UNKNOWN_JOB: &str = "(unknown)";

impl Slos {
    pub fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for spec in &self.specs {
            spec.validate()?;
            if !names.insert(spec.name.as_str()) {
                return Err(format!("SLO `{}` is listed twice", spec.name));
            }
        }
        if self.burn.windows.iter().any(|w| w.short_s <= 0 || w.long_s <= w.short_s || w.factor <= 0.0) {
            return Err("each [slo_alerts] window needs 0 < short_s < long_s and a factor above 0".into());
        }
        Ok(())
    }

    /// Every window length summed, in seconds: the SLOs' own and the burn-rate pairs'.
    pub fn windows(&self) -> Vec<i64> {
        let own = self.specs.iter().map(|s| s.window().num_seconds());
        let set: BTreeSet<i64> = own.chain(self.burn.window_lengths()).collect();
        set.into_iter().collect()
    }

    fn applicable<'a>(&'a self, catalogue: &'a Catalogue) -> impl Iterator<Item = (&'a SloSpec, &'a str)> + 'a {
        self.specs.iter().flat_map(move |spec| {
            catalogue.systems.iter().filter(|s| s.has_slo(&spec.name)).map(move |s| (spec, s.id.as_str()))
        })
    }

    /// The event-counted buckets of one tick: the intake histogram of the events folded at it
    /// (`(system, latency_s, events)`) and the runs completed at it.
    pub fn event_buckets(
        &self,
        catalogue: &Catalogue,
        intake: &[(String, i64, i64)],
        completed: &[Completed],
    ) -> Vec<Bucket> {
        let mut sums: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
        for (spec, system_id) in self.applicable(catalogue) {
            match spec.indicator {
                Indicator::IntakeLatency => {
                    let good_under = spec.good_under_s.unwrap_or(i64::MAX);
                    for (_, latency_s, events) in intake.iter().filter(|(s, _, _)| s == system_id) {
                        let entry = sums.entry((spec.name.clone(), system_id.to_owned(), String::new())).or_default();
                        entry.1 += events;
                        if *latency_s < good_under {
                            entry.0 += events;
                        }
                    }
                }
                Indicator::Runs => {
                    for run in completed.iter().filter(|r| r.system_id == system_id && r.status != "cancelled") {
                        let job = if spec.per_job { run.job.as_deref().unwrap_or(UNKNOWN_JOB) } else { "" };
                        let entry = sums.entry((spec.name.clone(), system_id.to_owned(), job.to_owned())).or_default();
                        entry.1 += 1;
                        if run.status == "success" {
                            entry.0 += 1;
                        }
                    }
                }
                Indicator::Heartbeat => {}
            }
        }
        into_buckets(sums)
    }

    /// The time slices of one tick: for each system the heartbeat rule judged at it, whether the
    /// minute was good.
    pub fn heartbeat_buckets(&self, catalogue: &Catalogue, judged: &BTreeMap<String, bool>) -> Vec<Bucket> {
        let mut sums = BTreeMap::new();
        for (spec, system_id) in self.applicable(catalogue).filter(|(s, _)| s.indicator == Indicator::Heartbeat) {
            if let Some(good) = judged.get(system_id) {
                sums.insert((spec.name.clone(), system_id.to_owned(), String::new()), (i64::from(*good), 1));
            }
        }
        into_buckets(sums)
    }

    /// Stores the tick's buckets and moves every window's sums: adds the minute, takes away the
    /// minutes that left the window since the previous tick (`last`).
    pub async fn record(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        last: Option<DateTime<Utc>>,
        buckets: &[Bucket],
    ) -> Result<(), sqlx::Error> {
        let windows = self.windows();
        sqlx::query(
            "INSERT INTO slo_minutes (slo, system_id, job, minute, good, total)
             SELECT slo, system_id, job, $1, good, total
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS b(slo, system_id, job, good, total)",
        )
        .bind(minute)
        .bind(buckets.iter().map(|b| b.slo.as_str()).collect::<Vec<_>>())
        .bind(buckets.iter().map(|b| b.system_id.as_str()).collect::<Vec<_>>())
        .bind(buckets.iter().map(|b| b.job.as_str()).collect::<Vec<_>>())
        .bind(buckets.iter().map(|b| b.good).collect::<Vec<_>>())
        .bind(buckets.iter().map(|b| b.total).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO slo_sums (slo, system_id, job, seconds, good, total)
             SELECT m.slo, m.system_id, m.job, w.seconds, m.good, m.total
             FROM slo_minutes m CROSS JOIN UNNEST($2::bigint[]) AS w(seconds) WHERE m.minute = $1
             ON CONFLICT (slo, system_id, job, seconds) DO UPDATE
                 SET good = slo_sums.good + EXCLUDED.good, total = slo_sums.total + EXCLUDED.total",
        )
        .bind(minute)
        .bind(&windows)
        .execute(&mut *tx)
        .await?;
        if let Some(last) = last {
            sqlx::query(
                "UPDATE slo_sums s SET good = s.good - x.good, total = s.total - x.total
                 FROM (SELECT m.slo, m.system_id, m.job, w.seconds, sum(m.good) AS good, sum(m.total) AS total
                       FROM UNNEST($3::bigint[]) AS w(seconds)
                       JOIN slo_minutes m ON m.minute > $2 - w.seconds * interval '1 second'
                                         AND m.minute <= $1 - w.seconds * interval '1 second'
                       GROUP BY 1, 2, 3, 4) x
                 WHERE s.slo = x.slo AND s.system_id = x.system_id AND s.job = x.job AND s.seconds = x.seconds",
            )
            .bind(minute)
            .bind(last)
            .bind(&windows)
            .execute(&mut *tx)
            .await?;
        }
        let longest = windows.last().copied().unwrap_or(0);
        sqlx::query("DELETE FROM slo_minutes WHERE minute <= $1")
            .bind(minute - Duration::seconds(longest))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM slo_sums WHERE total = 0").execute(&mut *tx).await?;
        Ok(())
    }

    /// Every SLO of every subject at `minute` (a system-level SLO without data too), written to
    /// `slo_status`.
    pub async fn report(
        &self,
        tx: &mut PgConnection,
        catalogue: &Catalogue,
        minute: DateTime<Utc>,
    ) -> Result<Vec<Report>, sqlx::Error> {
        let rows: Vec<(String, String, String, i64, i64, i64)> =
            sqlx::query_as("SELECT slo, system_id, job, seconds, good, total FROM slo_sums")
                .fetch_all(&mut *tx)
                .await?;
        let mut sums: BTreeMap<(String, String, String), BTreeMap<i64, Counts>> = BTreeMap::new();
        for (slo, system_id, job, seconds, good, total) in rows {
            let counts = Counts { good: good.max(0) as u64, total: total.max(0) as u64 };
            sums.entry((slo, system_id, job)).or_default().insert(seconds, counts);
        }
        let mut reports = Vec::new();
        for (spec, system_id) in self.applicable(catalogue) {
            let jobs: Vec<String> = if spec.per_job {
                sums.keys().filter(|(s, y, _)| *s == spec.name && y == system_id).map(|(_, _, j)| j.clone()).collect()
            } else {
                vec![String::new()]
            };
            for job in jobs {
                let windows = sums.get(&(spec.name.clone(), system_id.to_owned(), job.clone()));
                let counts = |seconds: i64| windows.and_then(|w| w.get(&seconds)).copied().unwrap_or_default();
                let budget = slo::budget(spec, counts(spec.window().num_seconds()));
                let missed = slo::describe_missed(spec, &subject(system_id, &job), &budget);
                let burning = slo::burning(&self.burn, spec.objective, counts);
                reports.push(Report {
                    slo: spec.name.clone(),
                    system_id: system_id.to_owned(),
                    job,
                    budget,
                    missed,
                    burning,
                });
            }
        }
        sqlx::query("DELETE FROM slo_status").execute(&mut *tx).await?;
        for r in &reports {
            let spec = self.specs.iter().find(|s| s.name == r.slo).expect("a report of a configured SLO");
            sqlx::query(
                "INSERT INTO slo_status (slo, system_id, job, budgeting, objective, window_days, good, total, sli,
                     budget_remaining, judged, burning, evaluated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&r.slo)
            .bind(&r.system_id)
            .bind(&r.job)
            .bind(spec.budgeting.as_str())
            .bind(spec.objective)
            .bind(i32::try_from(spec.window_days).unwrap_or(i32::MAX))
            .bind(i64::try_from(r.budget.counts.good).unwrap_or(i64::MAX))
            .bind(i64::try_from(r.budget.counts.total).unwrap_or(i64::MAX))
            .bind(r.budget.sli)
            .bind(r.budget.remaining)
            .bind(r.budget.judged)
            .bind(r.burning.as_ref().map(Burning::describe))
            .bind(minute)
            .execute(&mut *tx)
            .await?;
        }
        Ok(reports)
    }
}

fn into_buckets(sums: BTreeMap<(String, String, String), (i64, i64)>) -> Vec<Bucket> {
    sums.into_iter().map(|((slo, system_id, job), (good, total))| Bucket { slo, system_id, job, good, total }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slos() -> Slos {
        Slos { specs: slo::default_slos(), burn: BurnPolicy::default() }
    }

    fn catalogue() -> Catalogue {
        ct_platform::catalogue::CatalogueConfig::default().load().unwrap().catalogue.as_ref().clone()
    }

    #[test]
    fn the_defaults_sum_seven_windows() {
        slos().validate().unwrap();
        assert_eq!(slos().windows(), vec![300, 1800, 3600, 6 * 3600, 3 * 86_400, 7 * 86_400, 30 * 86_400]);
    }

    #[test]
    fn events_and_runs_become_buckets_of_their_system_and_job() {
        let intake = [("finance".to_owned(), 2, 9), ("finance".to_owned(), 400, 1), ("portal".to_owned(), 1, 5)];
        let run = |job: Option<&str>, status: &str| Completed {
            system_id: "finance".into(),
            job: job.map(Into::into),
            status: status.into(),
        };
        let completed = [
            run(Some("finance.export.backfill"), "success"),
            run(Some("finance.export.backfill"), "failed"),
            run(None, "success"),
            run(Some("finance.export.backfill"), "cancelled"),
        ];
        let buckets = slos().event_buckets(&catalogue(), &intake, &completed);
        let find = |slo: &str, system: &str, job: &str| {
            buckets.iter().find(|b| b.slo == slo && b.system_id == system && b.job == job).map(|b| (b.good, b.total))
        };
        assert_eq!(find("intake-latency", "finance", ""), Some((9, 10)), "400 s is over the 300 s of the SLO");
        assert_eq!(find("intake-latency", "portal", ""), Some((5, 5)));
        assert_eq!(find("run-success", "finance", ""), Some((2, 3)), "a cancelled run is not counted");
        assert_eq!(find("job-success", "finance", "finance.export.backfill"), Some((1, 2)));
        assert_eq!(find("job-success", "finance", UNKNOWN_JOB), Some((1, 1)));
        assert_eq!(find("run-success", "portal", ""), None, "no run, no bucket");
    }

    #[test]
    fn only_judged_minutes_are_time_slices() {
        let judged = BTreeMap::from([("finance".to_owned(), false), ("portal".to_owned(), true)]);
        let buckets = slos().heartbeat_buckets(&catalogue(), &judged);
        assert_eq!(buckets.len(), 2);
        assert_eq!((buckets[0].system_id.as_str(), buckets[0].good, buckets[0].total), ("finance", 0, 1));
        assert_eq!((buckets[1].system_id.as_str(), buckets[1].good, buckets[1].total), ("portal", 1, 1));
    }
}
