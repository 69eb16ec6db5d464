//! Learning-rate schedules (`--schedule`, `--warmup`): the rate of each step as a factor of
//! `--lr`, a function of the step's number alone (so a resumed run takes the rates an
//! uninterrupted one would). The new head keeps its factor over the body's rate at every step.

use serde::{Deserialize, Serialize};

/// The shape of the rate over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `--lr` at every step (after any warm-up).
    #[default]
    Constant,
    /// `--lr`, then a tenth of it from half the run, a hundredth from three quarters (the
    /// classic ImageNet steps; MATLAB's piecewise schedule).
    Step,
    /// Cosine decay from `--lr` to zero over the steps after the warm-up (timm's default).
    Cosine,
    /// fastai's one-cycle: up from `--lr`/25 to `--lr` over the warm-up (default: the first
    /// quarter of the run), then down to `--lr`/250,000, both along a cosine.
    OneCycle,
}

/// Steps over which the rate rises to `--lr` at the start: a count, or epochs (`2e`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Warmup {
    Iterations(usize),
    Epochs(f64),
}

impl Schedule {
    /// The flag's spelling (`one-cycle`).
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step => "step",
            Schedule::Cosine => "cosine",
            Schedule::OneCycle => "one-cycle",
        }
    }
}

impl Warmup {
    /// `100` (iterations), `2e` or `1.5epochs` (epochs).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = || format!("`{text}` is not a warm-up: give iterations (200) or epochs (2e)");
        if let Some(epochs) = t.strip_suffix("epochs").or_else(|| t.strip_suffix('e')) {
            let e: f64 = epochs.trim().parse().map_err(|_| bad())?;
            return (e.is_finite() && e >= 0.0)
                .then_some(Warmup::Epochs(e))
                .ok_or_else(bad);
        }
        t.parse().map(Warmup::Iterations).map_err(|_| bad())
    }

    fn iterations(self, per_epoch: usize) -> usize {
        match self {
            Warmup::Iterations(n) => n,
            Warmup::Epochs(e) => (e * per_epoch as f64).round() as usize,
        }
    }
}

/// One stretch of the run shaped by the schedule: `total` steps, the first `warmup` rising.
#[derive(Clone, Copy, Debug)]
struct Segment {
    schedule: Schedule,
    warmup: usize,
    total: usize,
}

/// A run's schedule resolved to steps: one segment, or with `--fine-tune` two (the head-only
/// epochs, then the unfrozen ones, each shaped by the schedule from its own start).
#[derive(Clone, Copy, Debug)]
pub struct LrPlan {
    head_stage: Option<Segment>,
    main: Segment,
}

/// One-cycle's start (`--lr`/25) and end (start/10,000), fastai's `div` and `div_final`.
const ONE_CYCLE_DIV: f64 = 25.0;
const ONE_CYCLE_DIV_FINAL: f64 = 1e4;

impl LrPlan {
    /// The plan for a run of `total` steps, `per_epoch` to an epoch. Refuses a warm-up as long
    /// as the run.
    pub fn new(
        schedule: Schedule,
        warmup: Option<Warmup>,
        per_epoch: usize,
        total: usize,
    ) -> Result<Self, String> {
        Ok(Self {
            head_stage: None,
            main: Segment::new(schedule, warmup, per_epoch, total)?,
        })
    }

    /// The plan of a two-stage run: `head_steps` head-only steps (the schedule over them, its
    /// own default warm-up), then the rest (the schedule again, after `warmup`).
    pub fn staged(
        schedule: Schedule,
        warmup: Option<Warmup>,
        per_epoch: usize,
        (head_steps, total): (usize, usize),
    ) -> Result<Self, String> {
        Ok(Self {
            head_stage: Some(Segment::new(schedule, None, per_epoch, head_steps)?),
            main: Segment::new(schedule, warmup, per_epoch, total - head_steps)?,
        })
    }

    /// Warm-up steps (of the unfrozen stage, in a two-stage run).
    pub fn warmup(&self) -> usize {
        self.main.warmup
    }

    /// The factor of `--lr` for step `iteration` (1 for the first step).
    pub fn factor(&self, iteration: usize) -> f64 {
        match self.head_stage {
            Some(head) if iteration <= head.total => head.factor(iteration),
            Some(head) => self.main.factor(iteration - head.total),
            None => self.main.factor(iteration),
        }
    }
    /// In words, for the run's first lines: `cosine, 30 warm-up iterations`.
    pub fn describe(&self) -> String {
        let name = match self.main.schedule {
            Schedule::Constant => "constant",
            Schedule::Step => "step (x0.1 at 1/2 and 3/4 of the run)",
            Schedule::Cosine => "cosine to zero",
            Schedule::OneCycle => "one-cycle",
        };
        let name = match self.main.warmup {
            0 => name.to_string(),
            w => format!("{name}, {w} warm-up iterations"),
        };
        match self.head_stage {
            Some(head) => format!(
                "{name}, restarting after the {} head-only iterations",
                head.total
            ),
            None => name,
        }
    }
}

impl Segment {
    fn new(
        schedule: Schedule,
        warmup: Option<Warmup>,
        per_epoch: usize,
        total: usize,
    ) -> Result<Self, String> {
        let warmup = match (warmup, schedule) {
            (Some(w), _) => w.iterations(per_epoch),
            (None, Schedule::OneCycle) => total / 4,
            (None, _) => 0,
        };
        if warmup > 0 && warmup >= total {
            return Err(format!(
                "--warmup of {warmup} iterations is as long as the run ({total} iterations): shorten it or train longer"
            ));
        }
        Ok(Self {
            schedule,
            warmup,
            total,
        })
    }

    fn factor(&self, iteration: usize) -> f64 {
        let t = iteration.saturating_sub(1) as f64;
        let w = self.warmup as f64;
        let cosine = |from: f64, to: f64, p: f64| {
            to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        };
        if t < w {
            return match self.schedule {
                Schedule::OneCycle => cosine(1.0 / ONE_CYCLE_DIV, 1.0, t / w),
                _ => (t + 1.0) / w,
            };
        }
        let p = ((t - w) / (self.total as f64 - w).max(1.0)).min(1.0);
        match self.schedule {
            Schedule::Constant => 1.0,
            Schedule::Step if p >= 0.75 => 0.01,
            Schedule::Step if p >= 0.5 => 0.1,
            Schedule::Step => 1.0,
            Schedule::Cosine => cosine(1.0, 0.0, p),
            Schedule::OneCycle => cosine(1.0, 1.0 / (ONE_CYCLE_DIV * ONE_CYCLE_DIV_FINAL), p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(schedule: Schedule, warmup: Option<Warmup>) -> LrPlan {
        LrPlan::new(schedule, warmup, 10, 100).unwrap()
    }

    #[test]
    fn each_schedule_has_its_documented_shape() {
        let constant = plan(Schedule::Constant, None);
        assert!((1..=100).all(|i| constant.factor(i) == 1.0));
        let step = plan(Schedule::Step, None);
        assert_eq!(
            [
                step.factor(1),
                step.factor(50),
                step.factor(51),
                step.factor(76),
                step.factor(100)
            ],
            [1.0, 1.0, 0.1, 0.01, 0.01]
        );
        let cosine = plan(Schedule::Cosine, Some(Warmup::Epochs(1.0)));
        assert_eq!(cosine.warmup(), 10);
        // Linear warm-up to the full rate at its last step, then a decay toward zero.
        assert_eq!([cosine.factor(1), cosine.factor(10)], [0.1, 1.0]);
        assert!((cosine.factor(11) - 1.0).abs() < 1e-12);
        assert!(
            (cosine.factor(56) - 0.5).abs() < 1e-12,
            "{}",
            cosine.factor(56)
        );
        assert!(cosine.factor(100) < 0.001);
        let falling = (11..100).all(|i| cosine.factor(i + 1) < cosine.factor(i));
        assert!(falling);
        let cycle = plan(Schedule::OneCycle, None);
        assert_eq!(cycle.warmup(), 25);
        assert!((cycle.factor(1) - 1.0 / 25.0).abs() < 1e-12);
        assert!((cycle.factor(26) - 1.0).abs() < 1e-12);
        assert!(cycle.factor(100) < 1e-3);
        let peak = (1..=100).map(|i| cycle.factor(i)).fold(0.0, f64::max);
        assert!((peak - 1.0).abs() < 1e-12);
    }

    #[test]
    fn warmups_parse_and_one_as_long_as_the_run_is_refused() {
        assert_eq!(Warmup::parse("200"), Ok(Warmup::Iterations(200)));
        assert_eq!(Warmup::parse("2e"), Ok(Warmup::Epochs(2.0)));
        assert_eq!(Warmup::parse("1.5epochs"), Ok(Warmup::Epochs(1.5)));
        for bad in ["", "x", "-1e", "2.5", "nane"] {
            assert!(Warmup::parse(bad).is_err(), "{bad}");
        }
        let refused = LrPlan::new(Schedule::Cosine, Some(Warmup::Epochs(10.0)), 10, 100);
        assert!(refused.unwrap_err().contains("as long as the run"));
    }

    #[test]
    fn a_two_stage_plan_shapes_each_stage_from_its_own_start() {
        let staged = LrPlan::staged(Schedule::Cosine, Some(Warmup::Iterations(5)), 10, (20, 100));
        let staged = staged.unwrap();
        let head = plan_of(Schedule::Cosine, None, 20);
        let main = plan_of(Schedule::Cosine, Some(Warmup::Iterations(5)), 80);
        for i in 1..=20 {
            assert_eq!(staged.factor(i), head.factor(i), "{i}");
        }
        for i in 21..=100 {
            assert_eq!(staged.factor(i), main.factor(i - 20), "{i}");
        }
        // The head stage decays to zero, then the unfrozen stage warms up from 1/5 again.
        assert!(staged.factor(20) < 0.01);
        assert_eq!([staged.factor(21), staged.factor(25)], [0.2, 1.0]);
        assert_eq!(staged.warmup(), 5);
        assert!(staged
            .describe()
            .contains("after the 20 head-only iterations"));
    }

    fn plan_of(schedule: Schedule, warmup: Option<Warmup>, total: usize) -> LrPlan {
        LrPlan::new(schedule, warmup, 10, total).unwrap()
    }
}
