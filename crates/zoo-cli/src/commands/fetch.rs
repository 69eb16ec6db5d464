//! `zoo fetch MODEL`: download, verify, and check the import.

use std::process::ExitCode;

use clap::Args;
use zoo_app::fetch::{FetchOptions, NetLimits};

use crate::ui::{describe_fetch, passed, print_json, progress_bar};

#[derive(Args)]
pub struct FetchArgs {
    /// Model card name (see `zoo list`); omit with --url.
    #[arg(required_unless_present = "url")]
    model: Option<String>,
    /// Git revision (branch, tag or commit) on the Hub.
    #[arg(long)]
    revision: Option<String>,
    /// Fetch the card's file for this opset.
    #[arg(long)]
    opset: Option<i64>,
    /// Download again even if a verified copy is cached.
    #[arg(long)]
    force: bool,
    /// Never touch the network: use the cache or fail.
    #[arg(long)]
    offline: bool,
    /// Print nothing but the resulting path.
    #[arg(long, short)]
    quiet: bool,
    /// Hub mirror URL (default: HF_ENDPOINT, else https://huggingface.co).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Skip the import check (zoo vs tract on random inputs) after downloading.
    #[arg(long)]
    no_check: bool,
    /// A model without a card: download this URL (needs --sha256).
    #[arg(long, requires = "sha256", conflicts_with = "model")]
    url: Option<String>,
    /// Expected sha256 of the --url file.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// File name for the --url model in the cache.
    #[arg(long)]
    name: Option<String>,
    /// Seconds to connect, and without any data before a download is given up (default 30,
    /// or ZOO_FETCH_TIMEOUT).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Give up when fewer than this many bytes per second arrive over --low-speed-time
    /// (default 1024, or ZOO_LOW_SPEED_LIMIT; 0 turns it off).
    #[arg(long, value_name = "BYTES")]
    low_speed_limit: Option<u64>,
    /// Seconds over which --low-speed-limit is measured (default 30, or ZOO_LOW_SPEED_TIME).
    #[arg(long, value_name = "SECS")]
    low_speed_time: Option<f64>,
    /// Print one JSON object (the path is in it).
    #[arg(long)]
    json: bool,
}

impl FetchArgs {
    /// Flags override the environment, which overrides the defaults.
    fn limits(&self) -> NetLimits {
        let mut limits = NetLimits::from_env();
        let secs = |v: f64| std::time::Duration::from_secs_f64(v.clamp(0.001, 86_400.0));
        if let Some(t) = self.timeout {
            limits.connect = secs(t);
            limits.stall = secs(t);
        }
        if let Some(b) = self.low_speed_limit {
            limits.low_speed_bytes = b;
        }
        if let Some(t) = self.low_speed_time {
            limits.low_speed_window = secs(t);
        }
        limits
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        let options = FetchOptions {
            revision: self.revision.clone(),
            opset: self.opset,
            force: self.force,
            offline: self.offline,
            endpoint: self.endpoint.clone(),
            progress: progress_bar(self.quiet || self.json),
            limits: self.limits(),
        };
        let check = !self.no_check;
        let report = match (&self.model, &self.url) {
            (_, Some(url)) => zoo_app::fetch::fetch_by_url(
                url,
                self.sha256.as_deref().unwrap_or(""),
                self.name.as_deref(),
                &options,
                check,
            )?,
            (Some(model), None) => zoo_app::fetch::fetch_model(model, &options, check)?,
            (None, None) => anyhow::bail!("name a model (see `zoo list`) or pass --url"),
        };
        if self.json {
            print_json(&report)?;
        } else {
            if !self.quiet {
                describe_fetch(&report);
            }
            println!("{}", report.fetched.path.display());
        }
        Ok(passed(report.import_check.as_ref().is_none_or(|c| c.pass)))
    }
}
