//! TensorBoard event files, so runs can be compared in TensorBoard (`tensorboard --logdir
//! runs/`) with nothing but the files zoo writes: `RUN/tensorboard/events.out.tfevents.zoo`
//! holds TFRecord-framed `tensorflow.Event` protos (written here with prost) of scalar
//! summaries: `train/loss`, `train/accuracy` and `train/images_per_second` at every iteration,
//! `val/loss`, `val/accuracy` and `lr` at every validation. The same values as metrics.csv.
//!
//! TFRecord framing: `u64` length (little endian), the masked CRC-32C of those 8 bytes, the
//! data, the masked CRC-32C of the data.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

/// The folder in a run directory.
pub const DIR: &str = "tensorboard";
/// One file per run, rewritten when a run resumes (with the rows up to its checkpoint), so
/// every step is in it once. TensorBoard reads any file whose name holds `tfevents`.
pub const FILE: &str = "events.out.tfevents.zoo";

/// `tensorflow.Event`: `wall_time` = 1, `step` = 2, and of its `what` oneof the
/// `file_version` = 3 and `summary` = 5 members.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`: its repeated `value` = 1.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: `tag` = 1 and of its `value` oneof `simple_value` = 2 (a member
/// of a oneof is written even when zero, hence `optional`).
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// One scalar at one step, as written and read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub step: i64,
    pub tag: String,
    pub value: f32,
}

/// The scalars of one step, as one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub step: i64,
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    pub values: Vec<(String, f32)>,
}

/// Appends events to a run's file.
pub struct EventWriter {
    file: std::fs::File,
}

impl EventWriter {
    /// Starts `run/tensorboard/` afresh with the file-version event and `earlier` (the steps a
    /// resumed run keeps), written atomically, then opens it for appending.
    pub fn create(run: &Path, earlier: &[Step]) -> std::io::Result<Self> {
        let dir = run.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let mut bytes = Vec::new();
        let version = Event {
            wall_time: unix_now(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        };
        frame(&mut bytes, &version.encode_to_vec());
        for step in earlier {
            frame(&mut bytes, &scalars_event(step).encode_to_vec());
        }
        zoo_io::write_atomic(&dir.join(FILE), &bytes)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))?;
        Ok(Self { file })
    }

    /// One step's event, in one write (a kill loses whole records only).
    pub fn write(&mut self, step: &Step) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        frame(&mut bytes, &scalars_event(step).encode_to_vec());
        self.file.write_all(&bytes)
    }
}

/// The file of a run directory.
pub fn file_of(run: &Path) -> PathBuf {
    run.join(DIR).join(FILE)
}

fn scalars_event(step: &Step) -> Event {
    Event {
        wall_time: step.wall_time,
        step: step.step,
        file_version: None,
        summary: Some(Summary {
            value: step
                .values
                .iter()
                .map(|(tag, v)| SummaryValue {
                    tag: tag.clone(),
                    simple_value: Some(*v),
                })
                .collect(),
        }),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn frame(out: &mut Vec<u8>, data: &[u8]) {
    let length = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Every event of an event file, each record's checksums checked; a record cut short at the
/// end (a killed writer) ends the list.
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    let bytes = zoo_io::read_limited(path, 1 << 30)?;
    let bad = |what: &str, at: usize| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what} at byte {at}", path.display()),
        )
    };
    let mut events = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let length_bytes = &bytes[at..at + 8];
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if crc != masked_crc32c(length_bytes) {
            return Err(bad("record length checksum mismatch", at));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes")) as usize;
        let Some(end) = (at + 12)
            .checked_add(length)
            .filter(|&e| e + 4 <= bytes.len())
        else {
            break;
        };
        let data = &bytes[at + 12..end];
        let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        if crc != masked_crc32c(data) {
            return Err(bad("record data checksum mismatch", at));
        }
        events.push(Event::decode(data).map_err(|e| bad(&e.to_string(), at))?);
        at = end + 4;
    }
    Ok(events)
}

/// The scalar summaries of an event file, in file order.
pub fn read_scalars(path: &Path) -> std::io::Result<Vec<Scalar>> {
    Ok(read_events(path)?
        .into_iter()
        .flat_map(|e| {
            let step = e.step;
            e.summary.into_iter().flat_map(move |s| {
                s.value.into_iter().filter_map(move |v| {
                    v.simple_value.map(|value| Scalar {
                        step,
                        tag: v.tag,
                        value,
                    })
                })
            })
        })
        .collect())
}

/// TFRecord's checksum: CRC-32C (Castagnoli), rotated right by 15 bits plus a constant, so a
/// CRC of data that holds CRCs stays well distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C, reflected polynomial 0x82F63B78, one table lookup per byte.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (n, entry) in table.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        table
    });
    !data.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // RFC 3720 (iSCSI) B.4 and the standard "123456789" check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        // TensorFlow's masking of the same.
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn events_round_trip_and_a_damaged_record_is_refused() {
        let run = std::env::temp_dir().join(format!("zoo-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        let step = |step, values: &[(&str, f32)]| Step {
            step,
            wall_time: 99.0 + step as f64,
            values: values.iter().map(|&(t, v)| (t.to_string(), v)).collect(),
        };
        let earlier = [step(1, &[("train/loss", 2.5)])];
        let mut w = EventWriter::create(&run, &earlier).unwrap();
        w.write(&step(2, &[("train/loss", 0.0), ("lr", 1e-3)]))
            .unwrap();
        let events = read_events(&file_of(&run)).unwrap();
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(events[2].wall_time, 101.0);
        let scalars = read_scalars(&file_of(&run)).unwrap();
        let expected = [
            (1, "train/loss", 2.5),
            (2, "train/loss", 0.0),
            (2, "lr", 1e-3),
        ];
        assert_eq!(scalars.len(), 3);
        for (s, (step, tag, value)) in scalars.iter().zip(expected) {
            assert_eq!((s.step, s.tag.as_str(), s.value), (step, tag, value));
        }
        // A rewrite keeps only what it is given.
        EventWriter::create(&run, &[]).unwrap();
        assert!(read_scalars(&file_of(&run)).unwrap().is_empty());
        // One flipped bit in a record's data is caught by its checksum.
        let mut w = EventWriter::create(&run, &earlier).unwrap();
        w.write(&step(2, &[("lr", 0.5)])).unwrap();
        let mut bytes = std::fs::read(file_of(&run)).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 0x10;
        std::fs::write(file_of(&run), &bytes).unwrap();
        let err = read_events(&file_of(&run)).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        // A record cut short (a killed writer) ends the list.
        std::fs::write(file_of(&run), &bytes[..bytes.len() - 9]).unwrap();
        assert_eq!(read_events(&file_of(&run)).unwrap().len(), 2);
        std::fs::remove_dir_all(&run).unwrap();
    }
}
