//! Service-level objectives as data, pure: what counts as good for each indicator, the error
//! budget left over an SLO's window, and the multi-window, multi-burn-rate conditions of the
//! Google SRE workbook (a fast burn pages within minutes, a slow one within hours, and a
//! minimum-events guard keeps one error in a quiet hour from paging anyone).
//!
//! An SLO is budgeted either by **events** (good events / all events) or by **time slices**
//! (good minutes / judged minutes). Either way the evaluator keeps `(good, total)` counts per
//! clock minute and sums them over windows; everything here works on those sums.

use chrono::Duration;
use serde::Deserialize;

use crate::health::human;

/// What an SLO measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// Events of the system's source: good when their intake latency is under `good_under_s`.
    IntakeLatency,
    /// Completed runs of the system's source: good when `success`, bad when `failed`
    /// (`cancelled` is not counted).
    Runs,
    /// Minutes judged by the heartbeat rule (business minutes for systems that sleep): good when
    /// the rule says green.
    Heartbeat,
}

/// How the budget is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budgeting {
    Events,
    TimeSlices,
}

impl Budgeting {
    pub fn as_str(self) -> &'static str {
        match self {
            Budgeting::Events => "events",
            Budgeting::TimeSlices => "time_slices",
        }
    }
}

/// One SLO, applied to every catalogued system (configuration: `[[slos]]` of the evaluator).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// A stable name (`run-success`), part of alert keys and of the API's answers.
    pub name: String,
    pub indicator: Indicator,
    pub budgeting: Budgeting,
    /// The target share of good, e.g. `0.99`.
    pub objective: f64,
    pub window_days: u32,
    /// Judge each job (a run's trigger) on its own rather than the system as a whole.
    #[serde(default)]
    pub per_job: bool,
    /// For `intake_latency`: an event is good when its intake latency is under this.
    #[serde(default)]
    pub good_under_s: Option<i64>,
    /// Fewer events (or minutes) than this over the window: the objective is not judged.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
}

fn default_min_events() -> u64 {
    10
}

impl SloSpec {
    pub fn window(&self) -> Duration {
        Duration::days(i64::from(self.window_days))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("SLO name `{}` must be letters, digits and dashes", self.name));
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(format!("SLO `{}`: objective {} must be between 0 and 1", self.name, self.objective));
        }
        if self.window_days == 0 || self.window_days > 90 {
            return Err(format!("SLO `{}`: window_days must be 1 to 90", self.name));
        }
        match (self.indicator, self.budgeting, self.good_under_s) {
            (Indicator::IntakeLatency, Budgeting::Events, Some(s)) if s > 0 => {}
            (Indicator::IntakeLatency, _, _) => {
                return Err(format!("SLO `{}`: intake_latency needs events budgeting and good_under_s", self.name));
            }
            (Indicator::Runs, Budgeting::Events, None) => {}
            (Indicator::Heartbeat, Budgeting::TimeSlices, None) => {}
            _ => {
                return Err(format!(
                    "SLO `{}`: runs are budgeted by events, heartbeats by time slices, without good_under_s",
                    self.name
                ));
            }
        }
        if self.per_job && self.indicator != Indicator::Runs {
            return Err(format!("SLO `{}`: per_job needs the runs indicator", self.name));
        }
        Ok(())
    }

    /// `99%`, `99.5%`.
    pub fn objective_text(&self) -> String {
        percent(self.objective)
    }
}

/// The seeds' objectives: intake under 5 min for 99 % of events over 30 days, heartbeats on time
/// in 99.5 % of business minutes over 30 days, run success 99 % over 7 days, and each job's
/// success 98 % over 30 days.
pub fn default_slos() -> Vec<SloSpec> {
    let slo = |name: &str, indicator, budgeting, objective, window_days| SloSpec {
        name: name.into(),
        indicator,
        budgeting,
        objective,
        window_days,
        per_job: false,
        good_under_s: None,
        min_events: default_min_events(),
    };
    vec![
        SloSpec {
            good_under_s: Some(300),
            ..slo("intake-latency", Indicator::IntakeLatency, Budgeting::Events, 0.99, 30)
        },
        slo("heartbeat", Indicator::Heartbeat, Budgeting::TimeSlices, 0.995, 30),
        slo("run-success", Indicator::Runs, Budgeting::Events, 0.99, 7),
        SloSpec { per_job: true, ..slo("job-success", Indicator::Runs, Budgeting::Events, 0.98, 30) },
    ]
}

fn percent(share: f64) -> String {
    let text = format!("{:.2}", share * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Good and total events (or minutes) over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub good: u64,
    pub total: u64,
}

impl Counts {
    pub fn bad(self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    /// The share of good, `None` without any event.
    pub fn sli(self) -> Option<f64> {
        (self.total > 0).then(|| self.good as f64 / self.total as f64)
    }

    /// How fast the budget burns: the bad share over the share the objective allows (1.0 spends
    /// exactly the budget over the SLO's window).
    pub fn burn_rate(self, objective: f64) -> Option<f64> {
        (self.total > 0).then(|| (self.bad() as f64 / self.total as f64) / (1.0 - objective))
    }
}

/// The budget over the SLO's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub counts: Counts,
    pub sli: Option<f64>,
    /// The share of the error budget not yet spent (1.0 untouched, 0 spent, below 0 overspent);
    /// `None` without any event.
    pub remaining: Option<f64>,
    /// Whether there are enough events to judge the objective.
    pub judged: bool,
}

pub fn budget(spec: &SloSpec, counts: Counts) -> Budget {
    let allowed = (1.0 - spec.objective) * counts.total as f64;
    let remaining = (counts.total > 0).then(|| 1.0 - counts.bad() as f64 / allowed);
    Budget { counts, sli: counts.sli(), remaining, judged: counts.total >= spec.min_events }
}

/// One burn-rate condition: the budget burns at least `factor` times too fast over both the
/// long and the short window (the short one makes the alert resolve soon after the burn stops).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindow {
    pub factor: f64,
    pub long_s: i64,
    pub short_s: i64,
}

/// The burn-rate alert policy (configuration: `[slo_alerts]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnPolicy {
    pub enabled: bool,
    /// The long window must hold at least this many events (or minutes) to alert at all.
    pub min_events: u64,
    pub windows: Vec<BurnWindow>,
}

impl Default for BurnPolicy {
    /// The workbook's three pairs: 14.4× over 1 h and 5 min (2 % of a 30-day budget in an hour),
    /// 6× over 6 h and 30 min, 1× over 3 days and 6 h.
    fn default() -> Self {
        Self {
            enabled: true,
            min_events: 10,
            windows: vec![
                BurnWindow { factor: 14.4, long_s: 3600, short_s: 300 },
                BurnWindow { factor: 6.0, long_s: 6 * 3600, short_s: 1800 },
                BurnWindow { factor: 1.0, long_s: 3 * 86_400, short_s: 6 * 3600 },
            ],
        }
    }
}

impl BurnPolicy {
    /// Every window length the policy reads, in seconds.
    pub fn window_lengths(&self) -> impl Iterator<Item = i64> + '_ {
        self.windows.iter().flat_map(|w| [w.long_s, w.short_s])
    }
}

/// A burn-rate condition that holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Burning {
    pub window: BurnWindow,
    pub long_rate: f64,
    pub short_rate: f64,
}

impl Burning {
    /// `15.2× over 1h and 14.6× over 5m (alert from 14.4×)`.
    pub fn describe(&self) -> String {
        format!(
            "{:.1}× over {} and {:.1}× over {} (alert from {}×)",
            self.long_rate,
            human(Duration::seconds(self.window.long_s)),
            self.short_rate,
            human(Duration::seconds(self.window.short_s)),
            self.window.factor
        )
    }
}

/// The first pair of the policy (in its order, fastest first) whose both windows burn at least
/// its factor, with at least `min_events` in the long window. `counts(seconds)` gives the counts
/// over the last `seconds`.
pub fn burning(policy: &BurnPolicy, objective: f64, counts: impl Fn(i64) -> Counts) -> Option<Burning> {
    if !policy.enabled {
        return None;
    }
    policy.windows.iter().find_map(|window| {
        let long = counts(window.long_s);
        if long.total < policy.min_events {
            return None;
        }
        let long_rate = long.burn_rate(objective)?;
        let short_rate = counts(window.short_s).burn_rate(objective)?;
        (long_rate >= window.factor && short_rate >= window.factor).then_some(Burning {
            window: *window,
            long_rate,
            short_rate,
        })
    })
}

/// The sentence of a missed objective: `run-success is 97.5% over 7 d (objective 99%, 40 events)`.
pub fn describe_missed(spec: &SloSpec, subject: &str, budget: &Budget) -> Option<String> {
    let sli = budget.sli?;
    (budget.judged && sli < spec.objective).then(|| {
        let unit = match spec.budgeting {
            Budgeting::Events => "events",
            Budgeting::TimeSlices => "minutes",
        };
        format!(
            "{} of {subject} is {} over {} d (objective {}, {} {unit})",
            spec.name,
            percent(sli),
            spec.window_days,
            spec.objective_text(),
            budget.counts.total
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs() -> SloSpec {
        default_slos().into_iter().find(|s| s.name == "run-success").unwrap()
    }

    #[test]
    fn the_defaults_are_valid_and_bad_specs_say_why() {
        for slo in default_slos() {
            slo.validate().unwrap();
        }
        let mut bad = runs();
        bad.objective = 1.0;
        assert!(bad.validate().unwrap_err().contains("between 0 and 1"));
        let mut bad = runs();
        bad.budgeting = Budgeting::TimeSlices;
        assert!(bad.validate().unwrap_err().contains("runs are budgeted by events"));
        let mut bad = default_slos().remove(1);
        bad.per_job = true;
        assert!(bad.validate().unwrap_err().contains("per_job"));
    }

    #[test]
    fn the_budget_left_is_what_the_objective_allows_minus_what_was_spent() {
        // 99 % of 1000 runs: 10 failures allowed; 4 spent leaves 60 %.
        let b = budget(&runs(), Counts { good: 996, total: 1000 });
        assert_eq!(b.sli, Some(0.996));
        assert!((b.remaining.unwrap() - 0.6).abs() < 1e-9, "{b:?}");
        assert!(b.judged);
        assert_eq!(describe_missed(&runs(), "finance", &b), None, "the objective holds");
        let over = budget(&runs(), Counts { good: 39, total: 40 });
        assert!(over.remaining.unwrap() < 0.0, "1 of 40 is 2.5 times the budget");
        assert_eq!(
            describe_missed(&runs(), "finance", &over).unwrap(),
            "run-success of finance is 97.5% over 7 d (objective 99%, 40 events)"
        );
        let quiet = budget(&runs(), Counts { good: 0, total: 1 });
        assert!(!quiet.judged, "one run is too few to judge");
        assert_eq!(describe_missed(&runs(), "finance", &quiet), None);
        assert_eq!(budget(&runs(), Counts::default()).remaining, None, "no data is no verdict");
    }

    #[test]
    fn a_fast_burn_pages_and_a_quiet_hour_with_one_error_does_not() {
        let policy = BurnPolicy::default();
        // 20 % bad over both 1 h and 5 min of a 99 % SLO: a burn of 20×.
        let fast = |seconds: i64| match seconds {
            300 => Counts { good: 8, total: 10 },
            _ => Counts { good: 80, total: 100 },
        };
        let b = burning(&policy, 0.99, fast).unwrap();
        assert_eq!(b.window.factor, 14.4);
        assert_eq!(b.describe(), "20.0× over 1h and 20.0× over 5m (alert from 14.4×)");
        // One error among 3 events: a burn of 33× but under the minimum-events guard everywhere.
        assert_eq!(burning(&policy, 0.99, |_| Counts { good: 2, total: 3 }), None);
        // The burn stopped 5 min ago: the short window is clean, so the fast pair resolves.
        let stopped = |seconds: i64| match seconds {
            300 => Counts { good: 10, total: 10 },
            1800 => Counts { good: 30, total: 30 },
            _ => Counts { good: 80, total: 100 },
        };
        let slow = burning(&policy, 0.99, stopped);
        assert_eq!(slow.map(|b| b.window.factor), Some(1.0), "only the 3-day pair still holds");
        assert_eq!(burning(&BurnPolicy { enabled: false, ..policy }, 0.99, fast), None);
    }

    #[test]
    fn percentages_read_plainly() {
        assert_eq!(percent(0.99), "99%");
        assert_eq!(percent(0.995), "99.5%");
        assert_eq!(percent(0.975), "97.5%");
        assert_eq!(percent(1.0), "100%");
    }
}
