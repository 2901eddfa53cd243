//! `brook autoscale simulate`: a load trace replayed second by second through the real
//! decision, as the operator runs it (a sample every period, each the average of the last
//! window, as a PromQL `rate` over that window gives; a reshard taking effect after a delay),
//! so policies can be compared without a cluster.

use super::{Decision, Inputs, Observation, Resize, ScalingPolicy, decide};

/// A load trace: records per second offered by the producers, second by second.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    /// 30 minutes at 2,800/s, then four times as much for 90 minutes.
    Step,
    /// A day: 500/s at night to 5,500/s in the afternoon, with 5 % noise.
    Diurnal,
    /// Six hours at 2,000/s with a 45-second burst to 8,000/s every 15 minutes.
    Spiky,
    /// Three hours from 500/s up to 12,000/s, three hours back down.
    Ramp,
    /// Six hours at 4,200/s with 15 % noise.
    Noisy,
    /// A recorded series: (second, records per second) points, linear in between.
    Recorded(Vec<(u64, f64)>),
}

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A line is not `<second> <records per second>`.
    #[error("line {line}: expected `<second> <records per second>`, got {text:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Too few points, or seconds out of order.
    #[error("a trace needs at least two points in increasing seconds")]
    Shape,
    /// An unknown trace name.
    #[error("unknown trace {0:?}: step, diurnal, spiky, ramp or noisy")]
    Name(String),
}

impl Trace {
    /// The trace of a name.
    pub fn named(name: &str) -> Result<Self, TraceError> {
        match name {
            "step" => Ok(Self::Step),
            "diurnal" => Ok(Self::Diurnal),
            "spiky" => Ok(Self::Spiky),
            "ramp" => Ok(Self::Ramp),
            "noisy" => Ok(Self::Noisy),
            other => Err(TraceError::Name(other.to_owned())),
        }
    }

    /// Reads `<second> <records per second>` lines (`#` starts a comment; CSV commas work too).
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut points = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty());
            let bad = || TraceError::Line {
                line: index + 1,
                text: raw.to_owned(),
            };
            let second: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
            let rate: f64 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(bad)?;
            points.push((second, rate));
        }
        if points.len() < 2 || points.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(TraceError::Shape);
        }
        Ok(Self::Recorded(points))
    }

    /// Its name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Diurnal => "diurnal",
            Self::Spiky => "spiky",
            Self::Ramp => "ramp",
            Self::Noisy => "noisy",
            Self::Recorded(_) => "recorded",
        }
    }

    /// How long it lasts, in seconds.
    pub fn duration_s(&self) -> u64 {
        match self {
            Self::Step => 2 * 3600,
            Self::Diurnal => 24 * 3600,
            Self::Spiky | Self::Ramp | Self::Noisy => 6 * 3600,
            Self::Recorded(points) => points.last().map_or(0, |p| p.0),
        }
    }

    /// When its step happens, for the step trace.
    pub fn step_at_s(&self) -> Option<u64> {
        matches!(self, Self::Step).then_some(1800)
    }

    /// Records per second offered at second `t`.
    pub fn demand(&self, t: u64) -> f64 {
        let noise = |amplitude: f64| 1.0 + amplitude * (2.0 * unit_noise(t) - 1.0);
        match self {
            Self::Step => {
                if t < 1800 {
                    2800.0
                } else {
                    11_200.0
                }
            }
            Self::Diurnal => {
                let phase = (t as f64 / 86_400.0) * std::f64::consts::TAU;
                (3000.0 - 2500.0 * phase.cos()) * noise(0.05)
            }
            Self::Spiky => {
                if t % 900 >= 450 && t % 900 < 495 {
                    8000.0
                } else {
                    2000.0
                }
            }
            Self::Ramp => {
                let half = 3.0 * 3600.0;
                let x = t as f64;
                let rise = if x <= half {
                    x / half
                } else {
                    (2.0 * half - x) / half
                };
                500.0 + 11_500.0 * rise.max(0.0)
            }
            Self::Noisy => 4200.0 * noise(0.15),
            Self::Recorded(points) => interpolate(points, t),
        }
    }
}

/// A deterministic value in [0, 1) for second `t` (a hash, so runs are repeatable).
fn unit_noise(t: u64) -> f64 {
    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn interpolate(points: &[(u64, f64)], t: u64) -> f64 {
    match points.iter().position(|p| p.0 >= t) {
        None => points.last().map_or(0.0, |p| p.1),
        Some(0) => points[0].1,
        Some(i) => {
            let ((t0, r0), (t1, r1)) = (points[i - 1], points[i]);
            r0 + (r1 - r0) * (t - t0) as f64 / (t1 - t0) as f64
        }
    }
}

/// How the simulated autoscaler runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Seconds between evaluations.
    pub period_s: u64,
    /// Seconds each sample averages over (the PromQL `rate` window).
    pub window_s: u64,
    /// Seconds from a decision until the new shards take writes.
    pub reshard_delay_s: u64,
    /// Bytes per record.
    pub record_bytes: f64,
    /// Open shards at the start.
    pub initial_shards: u32,
    /// No sample reaches the autoscaler from this second on (a lost Prometheus).
    pub metrics_lost_at_s: Option<u64>,
    /// The policy.
    pub policy: ScalingPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            period_s: 30,
            window_s: 60,
            reshard_delay_s: 10,
            record_bytes: 500.0,
            initial_shards: 4,
            metrics_lost_at_s: None,
            policy: ScalingPolicy::with_quotas(1_048_576.0, 1000.0),
        }
    }
}

/// One change of the shard count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// When it was decided, seconds from the start.
    pub at_s: u64,
    /// Open shards before.
    pub from: u32,
    /// Open shards after.
    pub to: u32,
    /// Why.
    pub reason: String,
}

/// What a run shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The trace's name.
    pub trace: &'static str,
    /// Seconds simulated.
    pub duration_s: u64,
    /// Open shards at each evaluation: (second, shards).
    pub shards: Vec<(u64, u32)>,
    /// Seconds in which some writes were refused.
    pub throttled_seconds: u64,
    /// Shard-hours used.
    pub shard_hours: f64,
    /// Shard-hours of an oracle that always has the fewest shards carrying the demand at the
    /// target utilization.
    pub ideal_shard_hours: f64,
    /// Every change of the shard count.
    pub actions: Vec<Action>,
    /// Seconds from the step until the shards carried the demand (the step trace).
    pub enough_after_step_s: Option<u64>,
    /// Seconds from the step until the decision for enough shards (the step trace).
    pub enough_decided_after_step_s: Option<u64>,
    /// Scale-downs decided after the metrics were lost.
    pub scale_downs_without_metrics: usize,
}

impl Report {
    /// Scale actions per hour.
    pub fn actions_per_hour(&self) -> f64 {
        self.actions.len() as f64 / (self.duration_s as f64 / 3600.0).max(f64::EPSILON)
    }
}

/// Replays `trace` through [`decide`].
pub fn simulate(trace: &Trace, settings: &Settings) -> Report {
    let policy = ScalingPolicy {
        rate_window_ms: settings.window_s * 1000,
        ..settings.policy
    };
    let per_shard = policy
        .shard_records_per_second
        .min(policy.shard_bytes_per_second / settings.record_bytes.max(1.0));
    let duration = trace.duration_s();
    let mut open = settings.initial_shards.max(1);
    let mut pending: Option<(u64, u32)> = None;
    let mut last_scale_ms: Option<u64> = None;
    let mut accepted_window: Vec<(f64, f64)> = Vec::new();
    let mut history: Vec<Observation> = Vec::new();
    let keep_ms = policy.scale_down_window_ms.max(policy.scale_up_window_ms) + 60_000;
    let mut report = Report {
        trace: trace.name(),
        duration_s: duration,
        shards: Vec::new(),
        throttled_seconds: 0,
        shard_hours: 0.0,
        ideal_shard_hours: 0.0,
        actions: Vec::new(),
        enough_after_step_s: None,
        enough_decided_after_step_s: None,
        scale_downs_without_metrics: 0,
    };
    for t in 0..duration {
        if let Some((at, shards)) = pending
            && t >= at
        {
            open = shards;
            pending = None;
            last_scale_ms = Some(t * 1000);
        }
        let demand = trace.demand(t);
        let capacity = f64::from(open) * per_shard;
        let accepted = demand.min(capacity);
        let refused = demand - accepted;
        if refused > 0.0 {
            report.throttled_seconds += 1;
        }
        report.shard_hours += f64::from(open) / 3600.0;
        let ideal = (demand / (per_shard * f64::from(policy.target_utilization_percent) / 100.0))
            .ceil()
            .max(f64::from(policy.min_shards.max(1)));
        report.ideal_shard_hours += ideal / 3600.0;
        if let Some(step) = trace.step_at_s()
            && t >= step
            && report.enough_after_step_s.is_none()
            && refused == 0.0
        {
            report.enough_after_step_s = Some(t - step);
        }
        accepted_window.push((accepted, refused));
        if accepted_window.len() as u64 > settings.window_s {
            accepted_window.remove(0);
        }
        if t == 0 || t % settings.period_s != 0 {
            continue;
        }
        let now_ms = t * 1000;
        let lost = settings.metrics_lost_at_s.is_some_and(|lost| t >= lost);
        if !lost {
            let n = accepted_window.len().max(1) as f64;
            let (records, throttled) = accepted_window
                .iter()
                .fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
            history.push(Observation {
                at_ms: now_ms,
                bytes_per_second: records / n * settings.record_bytes,
                records_per_second: records / n,
                throttled_per_second: throttled / n,
            });
            history.retain(|o| o.at_ms + keep_ms >= now_ms);
        }
        let Decision {
            desired_shards,
            resize,
            reason,
            ..
        } = decide(
            &Inputs {
                current: open,
                history: &history,
                shards: &[],
                last_scale_ms,
                now_ms,
            },
            &policy,
        );
        report.shards.push((t, open));
        if resize != Resize::Hold && pending.is_none() && desired_shards != open {
            if lost && desired_shards < open {
                report.scale_downs_without_metrics += 1;
            }
            if let Some(step) = trace.step_at_s()
                && t >= step
                && report.enough_decided_after_step_s.is_none()
                && f64::from(desired_shards) * per_shard >= demand
            {
                report.enough_decided_after_step_s = Some(t - step);
            }
            report.actions.push(Action {
                at_s: t,
                from: open,
                to: desired_shards,
                reason,
            });
            pending = Some((t + settings.reshard_delay_s, desired_shards));
        }
    }
    report
}

/// The report as text: a summary, shards over time, and the scale actions.
pub fn render(report: &Report, settings: &Settings) -> String {
    let mut out = format!(
        "trace {}: {:.1} h, a sample every {} s over {} s, target {}%\n",
        report.trace,
        report.duration_s as f64 / 3600.0,
        settings.period_s,
        settings.window_s,
        settings.policy.target_utilization_percent
    );
    if let (Some(decided), Some(enough)) = (
        report.enough_decided_after_step_s,
        report.enough_after_step_s,
    ) {
        out.push_str(&format!(
            "  enough shards decided {decided} s after the 4x step ({:.1} evaluation periods), taking writes after {enough} s (reshards take {} s)\n",
            decided as f64 / settings.period_s as f64,
            settings.reshard_delay_s
        ));
    }
    out.push_str(&format!(
        "  throttled seconds {}\n  shard-hours {:.1}, ideal {:.1} ({:.2}x)\n  scale actions {} ({:.2}/h)\n",
        report.throttled_seconds,
        report.shard_hours,
        report.ideal_shard_hours,
        report.shard_hours / report.ideal_shard_hours.max(f64::EPSILON),
        report.actions.len(),
        report.actions_per_hour()
    ));
    if settings.metrics_lost_at_s.is_some() {
        out.push_str(&format!(
            "  scale-downs after the metrics were lost: {}\n",
            report.scale_downs_without_metrics
        ));
    }
    out.push_str("  shards over time (every 10 min):");
    for (t, shards) in report.shards.iter().filter(|(t, _)| t % 600 == 0) {
        if t % 7200 == 0 {
            out.push_str(&format!("\n    {:>5.1} h:", *t as f64 / 3600.0));
        }
        out.push_str(&format!(" {shards}"));
    }
    out.push('\n');
    for action in &report.actions {
        out.push_str(&format!(
            "  {:>7.2} h  {:>3} -> {:<3} {}\n",
            action.at_s as f64 / 3600.0,
            action.from,
            action.to,
            action.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(trace: &Trace, settings: &Settings) -> Report {
        simulate(trace, settings)
    }

    #[test]
    fn autoscaling_simulation_decides_enough_shards_within_two_periods_of_a_4x_step() {
        let settings = Settings::default();
        let report = run(&Trace::Step, &settings);
        let decided = report
            .enough_decided_after_step_s
            .expect("enough shards decided");
        assert!(decided <= 2 * settings.period_s, "{decided} s: {report:#?}");
        assert!(report.enough_after_step_s.is_some());
    }

    #[test]
    fn autoscaling_simulation_spends_at_most_1_3_times_the_ideal_over_a_day() {
        let report = run(&Trace::Diurnal, &Settings::default());
        let ratio = report.shard_hours / report.ideal_shard_hours;
        assert!(ratio <= 1.3, "{ratio:.2}x the ideal");
        assert_eq!(report.throttled_seconds, 0);
    }

    #[test]
    fn autoscaling_simulation_scales_at_most_twice_an_hour_under_steady_noisy_load() {
        let report = run(&Trace::Noisy, &Settings::default());
        // The first actions fit the starting 4 shards to the load; after that, nothing.
        let settled: Vec<&Action> = report.actions.iter().filter(|a| a.at_s >= 3600).collect();
        assert!(settled.len() <= 2 * 5, "{settled:#?}");
        assert!(report.actions_per_hour() <= 2.0, "{:#?}", report.actions);
    }

    #[test]
    fn autoscaling_simulation_never_scales_down_when_prometheus_is_lost() {
        for (trace, lost_at) in [(Trace::Ramp, 12_000), (Trace::Diurnal, 50_000)] {
            let settings = Settings {
                metrics_lost_at_s: Some(lost_at),
                ..Settings::default()
            };
            let report = run(&trace, &settings);
            assert_eq!(report.scale_downs_without_metrics, 0, "{}", trace.name());
            let before = report
                .shards
                .iter()
                .rev()
                .find(|(t, _)| *t < lost_at)
                .map(|(_, n)| *n)
                .expect("shards before the loss");
            assert!(
                report
                    .shards
                    .iter()
                    .filter(|(t, _)| *t > lost_at + 60)
                    .all(|(_, n)| *n >= before),
                "{}",
                trace.name()
            );
        }
    }

    #[test]
    fn autoscaling_trace_files_parse_and_bad_lines_are_named() {
        let trace = Trace::parse("# second records/s\n0 100\n60, 400\n120 400 # plateau\n")
            .expect("a trace");
        assert_eq!(trace.duration_s(), 120);
        assert!((trace.demand(30) - 250.0).abs() < 1e-9, "linear in between");
        let error = Trace::parse("0 100\nsixty 400\n").expect_err("a bad line");
        assert!(error.to_string().starts_with("line 2:"), "{error}");
        assert!(Trace::parse("0 100\n").is_err(), "one point");
        assert!(Trace::parse("60 1\n0 1\n").is_err(), "seconds out of order");
        assert!(Trace::named("sawtooth").is_err());
    }
}
