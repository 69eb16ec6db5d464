//! Decode + preprocess throughput: `cargo bench -p zoo-data --bench decode -- DIR [RECIPE]`
//! (default ../shared/data/flowers5, alexnet's recipe). Median of 5 runs after one warm-up,
//! on rayon's default pool (one thread per core).

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = args.first().cloned().unwrap_or_else(|| {
        format!(
            "{}/../../../shared/data/flowers5",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let card = args.get(1).cloned().unwrap_or_else(|| "alexnet".into());
    let p = zoo_cards::find(&card).expect("card").preprocessing;
    let dataset = match zoo_data::open(std::path::Path::new(&dir)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let all: Vec<usize> = (0..dataset.samples.len()).collect();
    let _ = zoo_data::load(&dataset, &all, &p);
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (tensors, _) = zoo_data::load(&dataset, &all, &p);
        rates.push(tensors.len() as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "decode+preprocess {} images ({card} recipe, {}x{}), {} threads: median {:.1} images/s (min {:.1}, max {:.1})",
        all.len(),
        p.size[1],
        p.size[0],
        rayon::current_num_threads(),
        rates[2],
        rates[0],
        rates[4]
    );
}
