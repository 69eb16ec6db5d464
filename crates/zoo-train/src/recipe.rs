//! The default recipe (`zoo finetune --recipe auto`): the options a user leaves out are filled
//! by the run's size. Few images on a model of moderate size: the new head first, then the
//! whole body gently (fastai's `fine_tune`); many images or a large model: the head alone,
//! through the feature cache (what zoo always did). The choice is said on one line when the
//! run starts and written to config.json (`recipe`); every flag given keeps its value.

use serde::{Deserialize, Serialize};

use crate::options::{FinetuneOptions, FreezeChoice, Start};

/// How the options a user leaves out are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// By the run's size: two-stage up to [`SMALL_DATA_IMAGES`] training images on a model of
    /// up to [`SMALL_MODEL_PARAMS`] parameters, else head-only.
    Auto,
    /// 20 epochs: the head alone for the first 2, then the body unfreezes at a third of the
    /// optimizer's default rate (its earlier half at a thirtieth), the head at the default
    /// head rate, each stage a one-cycle schedule; images augmented.
    TwoStage,
    /// 10 epochs of the head (the card's freeze plan) at the optimizer's default rates, through
    /// the feature cache: zoo's defaults before recipes.
    HeadOnly,
}

/// Up to this many training images a full finetune is cheap enough on a CPU and the body
/// gains from it; beyond it the head alone (through the feature cache) is the default.
pub const SMALL_DATA_IMAGES: usize = 10_000;
/// Models up to this many parameters unfreeze by default (SqueezeNet 1.2 M, ResNet-50 25.6 M);
/// larger ones (AlexNet 61 M, VGG 138 M, ViT-B 86 M) train their head alone.
pub const SMALL_MODEL_PARAMS: usize = 30_000_000;

/// The options a recipe sets, by their `config.json` names; the CLI lists those a user gave
/// in [`FinetuneOptions::given`] and the recipe leaves them alone.
pub const RECIPE_OPTIONS: [&str; 6] = [
    "epochs",
    "lr",
    "head_lr_factor",
    "fine_tune",
    "schedule",
    "augment",
];

impl Recipe {
    /// The recipe for a run of `train_images` on a model of `params` parameters, and why, in
    /// words.
    pub fn choose(self, train_images: usize, params: usize) -> (Recipe, String) {
        let params_said = match params {
            0..100_000 => params.to_string(),
            _ => format!("{:.1} M", params as f64 / 1e6),
        };
        let size = format!("{train_images} training images, {params_said} parameters");
        match self {
            Recipe::Auto if train_images <= SMALL_DATA_IMAGES && params <= SMALL_MODEL_PARAMS => {
                (Recipe::TwoStage, format!("{size}: a small set on a model of moderate size"))
            }
            Recipe::Auto if train_images > SMALL_DATA_IMAGES => (
                Recipe::HeadOnly,
                format!("{size}: over {SMALL_DATA_IMAGES} images, the head alone through the feature cache"),
            ),
            Recipe::Auto => (
                Recipe::HeadOnly,
                format!("{size}: over {} M parameters, the head alone", SMALL_MODEL_PARAMS / 1_000_000),
            ),
            chosen => (chosen, format!("{size}: --recipe {}", chosen.name())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Recipe::Auto => "auto",
            Recipe::TwoStage => "two-stage",
            Recipe::HeadOnly => "head-only",
        }
    }

    /// Fills the options the user did not give ([`FinetuneOptions::given`]).
    pub fn apply(self, o: &mut FinetuneOptions) {
        let free = |name: &str| !o.given.iter().any(|g| g == name);
        let (free_epochs, free_lr, free_factor) =
            (free("epochs"), free("lr"), free("head_lr_factor"));
        let (free_stages, free_augment) = (free("fine_tune"), free("augment"));
        let free_schedule = free("schedule");
        let (lr, head_factor) = o.optimizer.default_lr(Start::Pretrained);
        match self {
            Recipe::TwoStage => {
                if free_epochs {
                    o.epochs = 20;
                }
                if free_stages && o.freeze != FreezeChoice::Nothing && o.epochs >= 2 {
                    o.fine_tune = Some(o.epochs.div_ceil(10).min(o.epochs - 1));
                }
                // The body moves at a third of the default rate; the head keeps its rate.
                if free_lr {
                    o.lr = lr / 3.0;
                }
                if free_factor {
                    o.head_lr_factor = head_factor * 3.0;
                }
                if free_schedule {
                    o.schedule = crate::schedule::Schedule::OneCycle;
                }
                if free_augment {
                    o.augment = true;
                }
            }
            Recipe::HeadOnly | Recipe::Auto => {}
        }
        o.recipe = Some(self);
    }

    /// What the recipe did to `o`, for the run's first lines.
    pub fn describe(self, o: &FinetuneOptions) -> String {
        let given = match o.given.as_slice() {
            [] => String::new(),
            given => format!("; given: {}", given.join(", ")),
        };
        let stages = match o.fine_tune {
            Some(head) => format!(
                "the head alone for {head}, then the body at lr {:.1e} (its earlier half {:.1e})",
                o.lr,
                o.lr / o.lr_spread()
            ),
            None => format!("lr {:.1e}", o.lr),
        };
        let augment = if o.augment { ", augmented" } else { "" };
        format!(
            "{} epochs: {stages}, head x{}, {} schedule{augment}{given}",
            o.epochs,
            o.head_lr_factor,
            o.schedule.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn auto_picks_two_stages_for_small_sets_on_moderate_models() {
        assert_eq!(Recipe::Auto.choose(400, 1_200_000).0, Recipe::TwoStage);
        assert_eq!(Recipe::Auto.choose(20_000, 1_200_000).0, Recipe::HeadOnly);
        assert_eq!(Recipe::Auto.choose(400, 61_000_000).0, Recipe::HeadOnly);
        assert_eq!(Recipe::HeadOnly.choose(400, 1).0, Recipe::HeadOnly);
    }

    #[test]
    fn two_stages_fill_what_the_user_left_out_and_keep_what_was_given() {
        let mut o = FinetuneOptions::new(PathBuf::from("d"), 3);
        Recipe::TwoStage.apply(&mut o);
        assert_eq!((o.epochs, o.fine_tune, o.augment), (20, Some(2), true));
        assert_eq!((o.lr, o.head_lr_factor), (1e-3 / 3.0, 30.0));
        assert_eq!(o.schedule, crate::schedule::Schedule::OneCycle);
        assert_eq!(o.recipe, Some(Recipe::TwoStage));
        assert!(o.validate().is_ok());
        let mut o = FinetuneOptions::new(PathBuf::from("d"), 3);
        (o.epochs, o.lr) = (3, 0.01);
        o.given = vec!["epochs".into(), "lr".into()];
        Recipe::TwoStage.apply(&mut o);
        assert_eq!((o.epochs, o.fine_tune, o.lr), (3, Some(1), 0.01));
        let mut o = FinetuneOptions::new(PathBuf::from("d"), 3);
        (o.epochs, o.freeze) = (1, FreezeChoice::Card);
        o.given = vec!["epochs".into()];
        Recipe::TwoStage.apply(&mut o);
        assert_eq!(o.fine_tune, None, "one epoch has no second stage");
        let mut o = FinetuneOptions::new(PathBuf::from("d"), 3);
        o.freeze = FreezeChoice::Nothing;
        Recipe::TwoStage.apply(&mut o);
        assert_eq!(
            o.fine_tune, None,
            "--unfreeze-all trains the body from the start"
        );
        assert!(o.validate().is_ok());
        let mut o = FinetuneOptions::new(PathBuf::from("d"), 3);
        let before = format!("{o:?}");
        Recipe::HeadOnly.apply(&mut o);
        o.recipe = None;
        assert_eq!(format!("{o:?}"), before, "head-only is today's defaults");
    }
}
