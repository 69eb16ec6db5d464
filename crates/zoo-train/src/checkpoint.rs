//! Checkpoints: everything a run needs to continue after a crash, in one file
//! (`checkpoint.bin`) replaced atomically at every validation and every epoch end, so it is
//! always one consistent moment of the run.
//!
//! Layout: `ZOOCKPT2`, then four length-prefixed sections: what the checkpoint belongs to
//! ([`Binding`], JSON: the base model's sha256 and fingerprints of the network's parameters and
//! of the data), the loop state (JSON), the weights that can change (the last ones and the best
//! ones, by plan index), and the optimizer's state (its own bytes); last, the sha256 of
//! everything before it, so any changed bit is found before anything is used. Frozen weights
//! are not stored: a resume rebuilds them from the base model. `ZOOCKPT1` files (zoo before
//! the checksum) are still read, without those checks.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::trainer::{IterationRow, ValidationRow};

pub const FILE: &str = "checkpoint.bin";
const MAGIC: &[u8; 8] = b"ZOOCKPT2";
const MAGIC_V1: &[u8; 8] = b"ZOOCKPT1";
const SHA256_LEN: usize = 32;

/// What a checkpoint belongs to: a resume refuses one whose binding differs from its own run's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// sha256 of the base model the run started from.
    pub base_sha256: String,
    /// sha256 of the network's parameters' names and shapes, in plan order.
    pub params: String,
    /// sha256 of the data: its classes, and every image's name and class, in order.
    pub data: String,
}

impl Binding {
    /// The first way `self` (the checkpoint's) and `now` (this resume's) differ, in words.
    pub fn mismatch(&self, now: &Binding) -> Option<String> {
        if self.base_sha256 != now.base_sha256 {
            Some(format!(
                "it belongs to a run of another base model (sha256 {} there, {} here)",
                self.base_sha256, now.base_sha256
            ))
        } else if self.params != now.params {
            Some("it holds the weights of another network (its parameter list differs)".into())
        } else if self.data != now.data {
            Some("the data changed since it was written (images or class folders added, removed or renamed): a resume needs the run's own data; start a new run for new data".into())
        } else {
            None
        }
    }
}

/// sha256 of `parts`, each length-prefixed (so no two lists of parts hash alike), in hex.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

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
    /// Classes found dead at a validation (their output the same for every image), in the
    /// order found.
    #[serde(default)]
    pub dead_classes: Vec<usize>,
}

/// Parameter values by plan index.
pub type Weights = Vec<(usize, Vec<f32>)>;

pub struct Checkpoint {
    /// `None` for a `ZOOCKPT1` file, which records none.
    pub binding: Option<Binding>,
    pub state: LoopState,
    pub last: Weights,
    pub best: Weights,
    pub optimizer: Vec<u8>,
}

/// One set of weights to write (last or best): each parameter's plan index and value count,
/// and where its values come from, fetched one tensor at a time as it is written.
pub struct WeightSource<'a> {
    pub params: Vec<(usize, usize)>,
    /// A parameter's values: copied out of a network, or borrowed where they lie.
    pub values: Box<dyn Fn(usize) -> Cow<'a, [f32]> + 'a>,
}

impl WeightSource<'_> {
    /// Bytes [`write_weights`] writes for this set.
    pub fn encoded_len(&self) -> u64 {
        8 + self
            .params
            .iter()
            .map(|&(_, n)| 16 + 4 * n as u64)
            .sum::<u64>()
    }
}

/// An optimizer's state for a checkpoint: the bytes of burn's record, or the fused SGD's
/// velocities written from where they lie (no copy of all of them).
pub enum OptimizerState<'a> {
    Bytes(Vec<u8>),
    Weights(WeightSource<'a>),
}

impl OptimizerState<'_> {
    fn write_section(&self, w: &mut dyn Write) -> std::io::Result<()> {
        match self {
            OptimizerState::Bytes(bytes) => write_section(w, bytes),
            OptimizerState::Weights(set) => {
                w.write_all(&set.encoded_len().to_le_bytes())?;
                write_weights(w, set)
            }
        }
    }
}

/// Everything a checkpoint holds, encoded straight to a writer: no copy of all the weights and
/// no encoded file ever sits whole in memory (the frozen-conv AlexNet's were 1.2 GB of
/// buffers), and the sha256 is computed as the bytes pass.
pub struct CheckpointSource<'a, 'o> {
    pub binding: &'a Binding,
    pub state: &'a LoopState,
    pub last: WeightSource<'a>,
    pub best: WeightSource<'a>,
    pub optimizer: &'a OptimizerState<'o>,
}

impl CheckpointSource<'_, '_> {
    pub fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        use sha2::Digest;
        let binding = serde_json::to_vec(self.binding).map_err(std::io::Error::other)?;
        let state = serde_json::to_vec(self.state).map_err(std::io::Error::other)?;
        let mut w = Hashing {
            out,
            hash: sha2::Sha256::new(),
        };
        w.write_all(MAGIC)?;
        write_section(&mut w, &binding)?;
        write_section(&mut w, &state)?;
        let weights_bytes = self.last.encoded_len() + self.best.encoded_len();
        w.write_all(&weights_bytes.to_le_bytes())?;
        for set in [&self.last, &self.best] {
            write_weights(&mut w, set)?;
        }
        self.optimizer.write_section(&mut w)?;
        let sum = w.hash.finalize();
        w.out.write_all(&sum)
    }
}

/// Passes bytes on and hashes them.
struct Hashing<'a> {
    out: &'a mut dyn Write,
    hash: sha2::Sha256,
}

impl Write for Hashing<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.out.write(bytes)?;
        self.hash.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn write_section(w: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(&(bytes.len() as u64).to_le_bytes())?;
    w.write_all(bytes)
}

/// Count, then (index, length, little-endian f32 values) per tensor; a tensor whose count is
/// not the one declared (and already counted in the section's length) is an error.
pub fn write_weights(w: &mut dyn Write, set: &WeightSource) -> std::io::Result<()> {
    w.write_all(&(set.params.len() as u64).to_le_bytes())?;
    let mut bytes = Vec::new();
    for &(index, count) in &set.params {
        let values = (set.values)(index);
        if values.len() != count {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "parameter {index} has {} values, {count} declared",
                    values.len()
                ),
            ));
        }
        w.write_all(&(index as u64).to_le_bytes())?;
        w.write_all(&(count as u64).to_le_bytes())?;
        // In blocks of 1 MB: one buffer, not a second copy of the tensor.
        for block in values.chunks(1 << 18) {
            bytes.clear();
            bytes.extend(block.iter().flat_map(|v| v.to_le_bytes()));
            w.write_all(&bytes)?;
        }
    }
    Ok(())
}

impl Checkpoint {
    /// The checkpoint's bytes (what [`CheckpointSource::write_to`] writes for these weights).
    pub fn encode(&self) -> Vec<u8> {
        let binding = self.binding.clone().unwrap_or_default();
        let params = |w: &Weights| w.iter().map(|(i, v)| (*i, v.len())).collect::<Vec<_>>();
        let lookup = |w: &Weights, index: usize| {
            w.iter()
                .find(|(i, _)| *i == index)
                .map_or(Cow::Borrowed(&[][..]), |(_, v)| Cow::Owned(v.clone()))
        };
        let optimizer = OptimizerState::Bytes(self.optimizer.clone());
        let mut out = Vec::new();
        CheckpointSource {
            binding: &binding,
            state: &self.state,
            last: WeightSource {
                params: params(&self.last),
                values: Box::new(|i| lookup(&self.last, i)),
            },
            best: WeightSource {
                params: params(&self.best),
                values: Box::new(|i| lookup(&self.best, i)),
            },
            optimizer: &optimizer,
        }
        .write_to(&mut out)
        .expect("writing to memory cannot fail");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        use sha2::Digest;
        if let Some(rest) = bytes.strip_prefix(MAGIC_V1.as_slice()) {
            return Self::decode_sections(None, Reader(rest));
        }
        if !bytes.starts_with(MAGIC) {
            return Err("not a zoo checkpoint (wrong magic)".into());
        }
        if bytes.len() < MAGIC.len() + SHA256_LEN {
            return Err("truncated: shorter than its header and checksum".into());
        }
        let (content, sum) = bytes.split_at(bytes.len() - SHA256_LEN);
        if sha2::Sha256::digest(content).as_slice() != sum {
            return Err(
                "damaged: its sha256 does not match its contents (changed or cut after it was written); start the run again, or resume a copy of the run saved before the damage".into(),
            );
        }
        let mut reader = Reader(&content[MAGIC.len()..]);
        let binding = serde_json::from_slice(reader.section()?)
            .map_err(|e| format!("the binding does not parse: {e}"))?;
        Self::decode_sections(Some(binding), reader)
    }

    /// The loop state, the weights and the optimizer, nothing after them.
    fn decode_sections(binding: Option<Binding>, mut reader: Reader) -> Result<Self, String> {
        let state = serde_json::from_slice(reader.section()?)
            .map_err(|e| format!("the loop state does not parse: {e}"))?;
        let mut weights = Reader(reader.section()?);
        let last = weights.weights()?;
        let best = weights.weights()?;
        let optimizer = reader.section()?.to_vec();
        if !reader.0.is_empty() || !weights.0.is_empty() {
            return Err("bytes after the last section".into());
        }
        Ok(Self {
            binding,
            state,
            last,
            best,
            optimizer,
        })
    }

    /// Refuses weights that do not fit `shapes` (parameter sizes by plan index) or are not
    /// finite, before any is applied: another run's or a damaged file's would panic or train
    /// on NaN.
    pub fn check_weights(&self, sizes: &[usize]) -> Result<(), String> {
        for (which, weights) in [("last", &self.last), ("best", &self.best)] {
            for (index, values) in weights {
                let Some(&size) = sizes.get(*index) else {
                    return Err(format!(
                        "its {which} weights name parameter {index}, and the network has {}",
                        sizes.len()
                    ));
                };
                if values.len() != size {
                    return Err(format!(
                        "its {which} weights give parameter {index} {} values, the network's has {size}",
                        values.len()
                    ));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(format!(
                        "its {which} weights of parameter {index} are not finite (NaN or infinite)"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn read(run: &Path) -> Result<Self, String> {
        let path = run.join(FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
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
            binding: Some(Binding {
                base_sha256: "ab".repeat(32),
                params: fingerprint([b"w".as_slice(), b"[2]"]),
                data: fingerprint([b"cat".as_slice()]),
            }),
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
        assert_eq!(c.binding, sample().binding);
    }

    /// Streamed through a file (the journal's way: tensors fetched one at a time, a buffered
    /// temp file, the sha256 computed on the way) the bytes are those of `encode`; a tensor
    /// that is not the size declared for it leaves no file.
    #[test]
    fn a_streamed_checkpoint_is_the_encoded_one_and_checks_its_sizes() {
        let dir = std::env::temp_dir().join(format!("zoo-ckpt-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = sample();
        let binding = c.binding.clone().unwrap();
        let value =
            |w: &Weights, i: usize| Cow::Owned(w.iter().find(|(j, _)| *j == i).unwrap().1.clone());
        let optimizer = OptimizerState::Bytes(c.optimizer.clone());
        let source = |declared_last: &[(usize, usize)]| CheckpointSource {
            binding: &binding,
            state: &c.state,
            last: WeightSource {
                params: declared_last.to_vec(),
                values: Box::new(|i| value(&c.last, i)),
            },
            best: WeightSource {
                params: vec![(0, 2)],
                values: Box::new(|i| value(&c.best, i)),
            },
            optimizer: &optimizer,
        };
        let last = [(0, 2), (3, 1)];
        let path = dir.join(FILE);
        zoo_io::write_atomic_with(&path, |out| source(&last).write_to(out)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), c.encode());
        std::fs::remove_file(&path).unwrap();
        let err = zoo_io::write_atomic_with(&path, |out| source(&[(0, 2), (3, 4)]).write_to(out))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("parameter 3 has 1 values, 4 declared"),
            "{err}"
        );
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no temp file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every single flipped bit of a checkpoint, at every position, is refused (the trailing
    /// sha256 covers the rest, and a flip in the sha256 itself no longer matches).
    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Checkpoint::decode(&flipped).is_err(),
                "bit {bit} flipped was accepted"
            );
        }
    }

    #[test]
    fn weights_that_do_not_fit_or_are_not_finite_are_refused() {
        let mut c = sample();
        assert!(c.check_weights(&[2, 5, 5, 1]).is_ok());
        assert!(c.check_weights(&[2]).unwrap_err().contains("parameter 3"));
        assert!(c
            .check_weights(&[3, 5, 5, 1])
            .unwrap_err()
            .contains("2 values"));
        c.best[0].1[1] = f32::NAN;
        assert!(c
            .check_weights(&[2, 5, 5, 1])
            .unwrap_err()
            .contains("not finite"));
    }

    #[test]
    fn bindings_name_what_differs() {
        let here = sample().binding.unwrap();
        let other_model = Binding {
            base_sha256: "cd".repeat(32),
            ..here.clone()
        };
        assert!(here
            .mismatch(&other_model)
            .unwrap()
            .contains("another base model"));
        let other_data = Binding {
            data: fingerprint([b"dog".as_slice()]),
            ..here.clone()
        };
        assert!(here
            .mismatch(&other_data)
            .unwrap()
            .contains("the data changed"));
        assert_eq!(here.mismatch(&here), None);
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
