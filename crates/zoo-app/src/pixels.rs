//! Preprocessed images as the engines read them: held in memory, or streamed from their files a
//! block of whole batches at a time, so a set larger than memory is never decoded whole (and
//! blocks of whole batches give every engine the batches it would get from one slice).

use std::borrow::Cow;

/// Images per block of a streamed set (rounded up to whole batches): 256 images of 224 px are
/// 154 MB of f32.
const BLOCK_IMAGES: usize = 256;

#[derive(Clone, Copy)]
pub enum Pixels<'a> {
    /// `C*H*W` values per image, one image after another.
    Held(&'a [f32], [usize; 3]),
    /// A data set's images, held or streamed.
    Set(&'a zoo_data::Tensors),
}

impl Pixels<'_> {
    pub fn len(&self) -> usize {
        match self {
            Pixels::Held(values, chw) => values.len() / chw.iter().product::<usize>().max(1),
            Pixels::Set(set) => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `each` on consecutive runs of the images, in order: all at once when they are held,
    /// blocks of whole `batch`es when streamed.
    pub fn for_each_block(
        &self,
        batch: usize,
        mut each: impl FnMut(&[f32]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let set = match self {
            Pixels::Held(values, _) => return each(values),
            Pixels::Set(set) if set.streamed.is_none() => return each(&set.values),
            Pixels::Set(set) => set,
        };
        let batch = batch.max(1);
        let block = batch * BLOCK_IMAGES.div_ceil(batch);
        for start in (0..set.len()).step_by(block) {
            each(&set.range(start, block.min(set.len() - start))?)?;
        }
        Ok(())
    }

    /// Images `picked`, one after another (the mistakes gallery).
    pub fn gather(&self, picked: &[usize]) -> anyhow::Result<Cow<'_, [f32]>> {
        match self {
            Pixels::Set(set) => Ok(Cow::Owned(set.gather(picked, None)?)),
            Pixels::Held(values, chw) => {
                let size = chw.iter().product::<usize>();
                let rows = picked.iter().map(|&i| values.get(i * size..(i + 1) * size));
                let rows: Option<Vec<&[f32]>> = rows.collect();
                let rows =
                    rows.ok_or_else(|| anyhow::anyhow!("an image past the set asked for"))?;
                Ok(Cow::Owned(rows.concat()))
            }
        }
    }
}

/// Rows of outputs of a function run block by block over `pixels`, one row per image.
pub fn rows_by_block(
    pixels: Pixels,
    batch: usize,
    mut run: impl FnMut(&[f32]) -> anyhow::Result<Vec<Vec<f32>>>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(pixels.len());
    pixels.for_each_block(batch, |block| {
        rows.extend(run(block)?);
        Ok(())
    })?;
    Ok(rows)
}
