//! Keeps rayon's other workers awake through an inference pass. An op's parallel loop lasts
//! tens of microseconds at batch 1, and between two ops a worker with nothing to do goes to
//! sleep after a few rounds of spinning; waking it (a futex call, then the scheduler) cost
//! more than the loop saved: a batch-1 ViT-tiny's LayerNorms took twice as long on two cores
//! as on one (perf: 12 % of the pass in the kernel's wake-up path). Here each other worker
//! runs a task that takes the pool's pending work as it appears, until the pass ends.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// Passes running on this thread (a pass's own loops may nest another on it).
    static PASSES_HERE: Cell<usize> = const { Cell::new(0) };
}

/// `pass()` run on one of rayon's workers (it is called from outside the pool) while the
/// other workers take work as it appears instead of sleeping.
pub(crate) fn with_workers_awake<T: Send>(pass: impl FnOnce() -> T + Send) -> T {
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            scope.spawn(move |_| take_work_until(done));
        }
        let _marked = PassHere::enter();
        let out = pass();
        done.store(true, Ordering::Release);
        out
    })
}

/// Runs the pool's pending work until `done`. Returns at once on a thread in the middle of a
/// pass: its pass could not go on under this loop, and two such loops waiting on each other's
/// pass would never end.
fn take_work_until(done: &AtomicBool) {
    if PASSES_HERE.with(Cell::get) > 0 {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

/// Marks this thread as running a pass until dropped.
struct PassHere;

impl PassHere {
    fn enter() -> Self {
        PASSES_HERE.with(|c| c.set(c.get() + 1));
        Self
    }
}

impl Drop for PassHere {
    fn drop(&mut self) {
        PASSES_HERE.with(|c| c.set(c.get() - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::with_workers_awake;
    use rayon::prelude::*;

    #[test]
    fn passes_from_many_threads_at_once_all_finish_with_their_own_results() {
        // Passes started together from outside the pool, each with parallel loops inside:
        // the other workers' loops must neither lose work nor wait on each other forever.
        let sums: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6u64)
                .map(|k| {
                    s.spawn(move || {
                        with_workers_awake(|| {
                            (0..200)
                                .map(|_| (0..10_000u64).into_par_iter().map(|i| i * k).sum::<u64>())
                                .sum()
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let expected = |k: u64| 200 * k * (10_000 * 9_999 / 2);
        assert_eq!(sums, (0..6).map(expected).collect::<Vec<_>>());
    }
}
