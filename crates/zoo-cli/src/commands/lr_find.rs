//! `zoo lr-find MODEL --data DIR`: sweep the learning rate for a finetune and suggest one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::finetune::FinetuneArgs;
use crate::ui::{emit, CliReporter};

#[derive(Args)]
pub struct LrFindArgs {
    /// The finetune to sweep for: every `zoo finetune` option applies (its data, freeze plan,
    /// optimizer, head factor and batch size); --out is where lr-find.json and lr-find.png go
    /// [default: ./lr-find].
    #[command(flatten)]
    finetune: FinetuneArgs,
}

impl LrFindArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if self.finetune.resuming() {
            anyhow::bail!("lr-find starts nothing to resume; leave --resume out");
        }
        let json = self.finetune.json();
        let (path, hints, name, options) = self.finetune.prepared()?;
        let out = options
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("lr-find"));
        let reporter = CliReporter::new(true);
        let found = zoo_app::train::lr_find(&path, &hints, &name, &options, &out, &reporter)?;
        emit(json, &found, |f| {
            let mut s = String::new();
            for g in &f.suggestions {
                s += &format!(
                    "{:<11} {:.2e}  (smoothed loss {:.4})\n",
                    g.rule, g.lr, g.loss
                );
            }
            s + &format!(
                "suggested --lr {:.2e} ({} rule); the curve: {}\n",
                f.lr,
                f.rule,
                out.join(zoo_app::train::LR_FIND_PNG).display()
            )
        })?;
        Ok(ExitCode::SUCCESS)
    }
}
