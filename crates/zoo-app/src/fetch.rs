//! `zoo fetch` and `zoo list`: verified downloads, then an import check so a broken import is
//! caught before anyone trains on it.

use serde::Serialize;
use zoo_cards::Card;
use zoo_fetch::{fetch_card, fetch_url, Fetched, HubCache, ZooCache};
/// Download settings and their vocabulary.
pub use zoo_fetch::{FetchOptions, FetchStatus, NetLimits, ProgressFn};

use crate::verify::{verify_file, VerifyOptions};

#[derive(Clone, Debug, Serialize)]
pub struct ImportCheck {
    pub pass: bool,
    pub samples: usize,
    pub max_rel_diff: f64,
    pub top1_agreement: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FetchReport {
    pub model: String,
    #[serde(flatten)]
    pub fetched: Fetched,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_check: Option<ImportCheck>,
}

/// Imports the file and compares zoo with tract on two random inputs.
pub fn import_check(path: &std::path::Path, card: Option<&Card>) -> anyhow::Result<ImportCheck> {
    let options = VerifyOptions {
        samples: Some(2),
        batch: 2,
        device: zoo_train::DeviceChoice::Cpu,
        ..Default::default()
    };
    let outcome = verify_file(
        path,
        &crate::profile::ModelHints::card(card.cloned()),
        &options,
    )?;
    Ok(ImportCheck {
        pass: outcome.report.pass,
        samples: outcome.report.samples,
        max_rel_diff: outcome.report.max_rel_diff,
        top1_agreement: outcome.report.top1_agreement,
    })
}

pub fn fetch_model(name: &str, options: &FetchOptions, check: bool) -> anyhow::Result<FetchReport> {
    let card = zoo_cards::find(name)?;
    let fetched = fetch_card(&card, &HubCache::from_env(), &ZooCache::from_env(), options)?;
    let import_check = if check {
        Some(import_check(&fetched.path, Some(&card))?)
    } else {
        None
    };
    Ok(FetchReport {
        model: card.name,
        fetched,
        import_check,
    })
}

pub fn fetch_by_url(
    url: &str,
    sha256: &str,
    name: Option<&str>,
    options: &FetchOptions,
    check: bool,
) -> anyhow::Result<FetchReport> {
    let fetched = fetch_url(url, sha256, name, &ZooCache::from_env(), options)?;
    let import_check = if check {
        Some(import_check(&fetched.path, None)?)
    } else {
        None
    };
    Ok(FetchReport {
        model: name.unwrap_or(url).to_string(),
        fetched,
        import_check,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct ListRow {
    pub name: String,
    pub family: String,
    pub title: String,
    pub task: String,
    pub input: String,
    pub input_shape: [usize; 4],
    pub size: u64,
    pub license: String,
    pub source: String,
    pub opsets: Vec<i64>,
    /// For a Hub card: the file is in the cache; for a user card: its file is where the card
    /// says, with the card's size.
    pub cached: bool,
    /// A user card (`zoo card new`), with the file it is read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_card: Option<std::path::PathBuf>,
}

/// Every card, built-in ones by family, then user cards; and one line per user card file that
/// could not be read.
pub fn list_models() -> (Vec<ListRow>, Vec<String>) {
    let cache = HubCache::from_env();
    let mut cards = zoo_cards::all();
    cards.sort_by(|a, b| (&a.family, &a.name).cmp(&(&b.family, &b.name)));
    let (user, problems) = zoo_cards::user_cards();
    let rows = cards
        .into_iter()
        .chain(user)
        .map(|c| list_row(c, &cache))
        .collect();
    (rows, problems)
}

fn list_row(c: Card, cache: &HubCache) -> ListRow {
    let (cached, source) = match &c.source.local {
        Some(path) => (
            std::fs::metadata(path).is_ok_and(|m| m.len() == c.source.size),
            format!("file://{}", path.display()),
        ),
        None => (
            cache.cached_file(&c.source).is_some(),
            format!(
                "hf://{}/{} @ {}",
                c.source.repo, c.source.path, c.source.revision
            ),
        ),
    };
    ListRow {
        family: if c.is_user_card() {
            USER_FAMILY.to_string()
        } else {
            c.family.clone()
        },
        cached,
        user_card: c.user_file.clone(),
        input: c.input.name.clone(),
        input_shape: c.input.shape,
        size: c.source.size,
        source,
        opsets: {
            let mut o: Vec<i64> = std::iter::once(&c.source)
                .chain(&c.variants)
                .map(|s| s.opset)
                .collect();
            o.sort_unstable();
            o
        },
        name: c.name,
        title: c.title,
        task: c.task,
        license: c.license,
    }
}

/// The group `zoo list` shows user cards in.
pub const USER_FAMILY: &str = "Your cards (zoo card new)";

/// Cards grouped by family: one table row per card, then each card's source and licence.
pub fn render_list(rows: &[ListRow]) -> String {
    let families: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.user_card.is_none())
        .map(|r| r.family.as_str())
        .collect();
    let users = rows.iter().filter(|r| r.user_card.is_some()).count();
    let mut s = format!(
        "{} model cards in {} families{}\n\n{:<19} {:<28} {:>12}  {:<12} {:<6} {}\n",
        rows.len() - users,
        families.len(),
        if users > 0 {
            format!(", and {users} user card(s)")
        } else {
            String::new()
        },
        "model",
        "input",
        "bytes",
        "opsets",
        "cached",
        "title"
    );
    let mut family = "";
    for r in rows {
        if r.family != family {
            family = &r.family;
            s += &format!("{family}\n");
        }
        let shape = r.input_shape.map(|d| d.to_string()).join("x");
        let opsets: Vec<String> = r.opsets.iter().map(|o| o.to_string()).collect();
        s += &format!(
            "  {:<17} {:<28} {:>12}  {:<12} {:<6} {}\n",
            r.name,
            format!("{} {shape}", r.input),
            crate::inspect::group_digits(r.size as usize),
            opsets.join(","),
            if r.cached { "yes" } else { "no" },
            r.title
        );
    }
    s += "\nSources (Hugging Face Hub, sha256-pinned) and licences: `zoo list --json`.\n";
    if users > 0 {
        s += &format!(
            "User cards are read from {} and the folders in ZOO_CARDS; cached = the card's file is in place.\n",
            zoo_cards::user_card_home().display()
        );
    }
    s
}
