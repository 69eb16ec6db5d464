//! Checkpoints: everything a run needs to continue after a crash, in one file
//! (`checkpoint.bin`) replaced atomically at every validation and every epoch end, so it is
//! always one consistent moment of the run.
//!
//! Layout: `ZOOCKPT1`, then three length-prefixed sections: the loop state (JSON), the weights
//! that can change (the last ones and the best ones, by plan index), and the optimizer's state
//! (its own bytes). Frozen weights are not stored: a resume rebuilds them from the base model,
//! whose sha256 `config.json` records.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::trainer::{IterationRow, ValidationRow};

pub const FILE: &str = "checkpoint.bin";
const MAGIC: &[u8; 8] = b"ZOOCKPT1";

/// Where the loop stands: enough to take the next step exactly as an uninterrupted run would.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoopState {
    /// Iterations done over the whole run (the next one is `iteration + 1`).
    pub iteration: usize,
    pub images_seen: usize,
    pub since_best: usize,
    /// Mini-batch loss, correct count and images since the last validation.
    #[serde(with = "nan_as_null")]
    pub recent_loss: f64,
    pub recent_correct: usize,
    pub recent_n: usize,
    pub best_row: Option<ValidationRow>,
    pub rows: Vec<ValidationRow>,
    pub iterations: Vec<IterationRow>,
    /// Seconds of each finished epoch, and of the epoch in progress.
    pub epoch_seconds: Vec<f64>,
    pub current_epoch_s: f64,
    #[serde(with = "nan_as_null")]
    pub initial_val_accuracy: f64,
    /// Patience ran out: the run is over.
    pub stopped_early: bool,
    /// Training seconds so far (for elapsed times after a resume).
    pub elapsed_s: f64,
}

/// Parameter values by plan index.
pub type Weights = Vec<(usize, Vec<f32>)>;

pub struct Checkpoint {
    pub state: LoopState,
    pub last: Weights,
    pub best: Weights,
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let state = serde_json::to_vec(&self.state).expect("loop state serialises");
        let mut out = MAGIC.to_vec();
        section(&mut out, &state);
        let mut weights = Vec::new();
        encode_weights(&mut weights, &self.last);
        encode_weights(&mut weights, &self.best);
        section(&mut out, &weights);
        section(&mut out, &self.optimizer);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a zoo checkpoint (wrong magic)")?;
        let mut reader = Reader(rest);
        let state = serde_json::from_slice(reader.section()?)
            .map_err(|e| format!("the loop state does not parse: {e}"))?;
        let mut weights = Reader(reader.section()?);
        let last = weights.weights()?;
        let best = weights.weights()?;
        let optimizer = reader.section()?.to_vec();
        Ok(Self {
            state,
            last,
            best,
            optimizer,
        })
    }

    pub fn read(run: &Path) -> Result<Self, String> {
        let path = run.join(FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn section(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Count, then (index, length, little-endian f32 values) per tensor.
pub fn encode_weights(out: &mut Vec<u8>, weights: &Weights) {
    out.extend_from_slice(&(weights.len() as u64).to_le_bytes());
    for (index, values) in weights {
        out.extend_from_slice(&(*index as u64).to_le_bytes());
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Reads length-prefixed pieces; every length is checked against the bytes left before
/// anything is allocated, so a damaged file is an error, not an abort.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!(
                "truncated: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn section(&mut self) -> Result<&'a [u8], String> {
        let n = self.u64()?;
        self.take(usize::try_from(n).map_err(|_| "section too large")?)
    }

    pub fn weights(&mut self) -> Result<Weights, String> {
        let count = self.u64()? as usize;
        // Each tensor takes at least 16 header bytes.
        if count > self.0.len() / 16 {
            return Err(format!(
                "{count} tensors do not fit in {} bytes",
                self.0.len()
            ));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.u64()? as usize;
            let len = self.u64()? as usize;
            let bytes = self.take(len.checked_mul(4).ok_or("tensor too large")?)?;
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            out.push((index, values));
        }
        Ok(out)
    }
}

/// JSON has no NaN: serde_json writes it as `null`, and this reads `null` back as NaN.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            state: LoopState {
                iteration: 7,
                recent_loss: f64::NAN,
                initial_val_accuracy: 0.25,
                epoch_seconds: vec![1.5],
                ..Default::default()
            },
            last: vec![(0, vec![1.0, -2.5]), (3, vec![f32::MIN_POSITIVE])],
            best: vec![(0, vec![0.5, 0.25])],
            optimizer: vec![9, 8, 7],
        }
    }

    #[test]
    fn round_trips_bit_for_bit() {
        let c = Checkpoint::decode(&sample().encode()).unwrap();
        assert_eq!(c.state.iteration, 7);
        assert!(c.state.recent_loss.is_nan());
        assert_eq!(c.state.initial_val_accuracy, 0.25);
        assert_eq!(c.last, sample().last);
        assert_eq!(c.best, sample().best);
        assert_eq!(c.optimizer, vec![9, 8, 7]);
    }

    #[test]
    fn every_truncation_and_a_huge_count_are_errors() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut huge = Vec::new();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Reader(&huge).weights().unwrap_err().contains("do not fit"));
    }
}
