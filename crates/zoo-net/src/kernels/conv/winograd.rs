//! 3x3 stride-1 inference convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 block of outputs
//! comes from a 4x4 input tile with 16 multiplies per input and output channel instead of 36.
//! Per block of tiles the input tiles are transformed (`B^T d B`), the multiplies are 16 gemms
//! of the transformed weights (`G g G^T`, made once per weight tensor) by the transformed
//! tiles, and each output block is `A^T m A`, then bias and ReLU. Every transform runs over
//! all tiles of a block at once (vector arithmetic), never tile by tile.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use ::gemm::Parallelism;
use rayon::prelude::*;

use super::{aligned_rows, gemm_into, with_scratch, Geometry, View, BLOCK_VALUES, GEMM_LANES};
use crate::simd::{every_second, interleave, wide_kernel};

/// A Winograd convolution ready to run over a batch: its transformed weights and tiling.
pub(super) struct Winograd {
    weights: Arc<Vec<f32>>,
    tiles: Tiles,
}

impl Winograd {
    /// The plan for geometry `g` and weights `w`, when Winograd serves it: 3x3, stride and
    /// dilation 1, one group, enough channels for the gemms to pay (a thin layer stays on
    /// im2col).
    pub(super) fn plan(g: &Geometry, w: &[f32]) -> Option<Self> {
        let serves = [g.kh, g.kw] == [3, 3]
            && g.stride == [1, 1]
            && g.dilation == [1, 1]
            && g.groups == 1
            && g.c_in >= 8
            && g.c_out >= 8
            && g.oh >= 4
            && g.ow >= 4;
        serves.then(|| Self {
            weights: transformed_weights(w, g.c_out, g.c_in),
            tiles: Tiles::new(g),
        })
    }
}

/// `G g G^T` of every `[c_out, c_in, 3, 3]` kernel: 16 matrices `[c_out, c_in]`, one per
/// position of the 4x4 transformed kernel.
fn transform_weights(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    let g = |v: [f32; 3]| {
        [
            v[0],
            (v[0] + v[1] + v[2]) / 2.0,
            (v[0] - v[1] + v[2]) / 2.0,
            v[2],
        ]
    };
    let mut u = vec![0.0f32; 16 * c_out * c_in];
    for (pair, k) in w.chunks_exact(9).enumerate() {
        let columns = [0, 1, 2].map(|j| g([k[j], k[3 + j], k[6 + j]]));
        for i in 0..4 {
            let row = g([columns[0][i], columns[1][i], columns[2][i]]);
            for (j, value) in row.into_iter().enumerate() {
                u[(i * 4 + j) * c_out * c_in + pair] = value;
            }
        }
    }
    u
}

/// One cached transform: the weights it was made from (compared whole, so a tensor changed
/// in place or a new one at a reused address never hits) and their transform.
struct Cached {
    weights: Vec<f32>,
    transformed: Arc<Vec<f32>>,
}

/// Transformed weights of recent inference calls (this forward serves inference alone): an
/// image-by-image pass runs every convolution once per image, and a transform per call would
/// cost a third of the layer; a batch-1 `predict` would pay it every time.
static CACHE: Mutex<Vec<Cached>> = Mutex::new(Vec::new());
/// The most weight values the cache keeps (copies and transforms together, 128 MB).
const CACHE_VALUES: usize = 32 << 20;

fn transformed_weights(w: &[f32], c_out: usize, c_in: usize) -> Arc<Vec<f32>> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(hit) = cache.iter().find(|c| bytes(&c.weights) == bytes(w)) {
        return hit.transformed.clone();
    }
    let transformed = Arc::new(transform_weights(w, c_out, c_in));
    let size = |c: &Cached| c.weights.len() + c.transformed.len();
    let entry = Cached {
        weights: w.to_vec(),
        transformed: transformed.clone(),
    };
    let mut total = size(&entry) + cache.iter().map(size).sum::<usize>();
    while total > CACHE_VALUES && !cache.is_empty() {
        total -= size(&cache.remove(0));
    }
    if total <= CACHE_VALUES {
        cache.push(entry);
    }
    transformed
}

/// The bytes of `values`: equal bytes are one `memcmp` (an f32 comparison is a loop, and it
/// ran once per image and layer).
fn bytes(values: &[f32]) -> &[u8] {
    // SAFETY: any f32 is 4 initialised bytes; u8 has no alignment to keep.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) }
}

/// The plan of one image's Winograd convolution: tiles, their blocks, and the output channels
/// multiplied and finished at a time, so that a block's transformed tiles and one chunk's
/// products (about [`BLOCK_VALUES`] each) stay in the core's L2 cache.
struct Tiles {
    /// Tiles across and down (`ceil(ow / 2)`, `ceil(oh / 2)`).
    across: usize,
    down: usize,
    /// Tile rows per block (see [`aligned_rows`]).
    rows_per_block: usize,
    /// Output channels per chunk.
    channels_per_chunk: usize,
}

impl Tiles {
    fn new(g: &Geometry) -> Self {
        let (across, down) = (g.ow.div_ceil(2), g.oh.div_ceil(2));
        let rows = aligned_rows((BLOCK_VALUES / (16 * g.c_in)).max(1), across, down);
        let channels = (BLOCK_VALUES / (16 * rows * across)).max(GEMM_LANES);
        Self {
            across,
            down,
            rows_per_block: rows,
            channels_per_chunk: channels.min(g.c_out),
        }
    }

    fn block_len(&self) -> usize {
        self.rows_per_block * self.across
    }

    /// Input columns a tile row reads, padding included (`2 * across + 2`).
    fn padded_width(&self) -> usize {
        2 * self.across + 2
    }
}

/// Scratch of one image's input transform: transformed tiles and one block's rearranged
/// input rows.
struct Scratch<'a> {
    tiles: &'a mut [f32],
    /// See [`BlockLayout`].
    rows: &'a mut [f32],
}

impl Winograd {
    /// One image's output `[c_out, oh, ow]`, every value written; scratch from the thread's
    /// reused buffers. `Parallelism::Rayon` (fewer images than cores): the output channels'
    /// chunks of each block spread over the cores (one core multiplied AlexNet's 3x3 layer
    /// at batch 1 while the other waited).
    pub(super) fn image_output(
        &self,
        g: &Geometry,
        image: &[f32],
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
        parallelism: Parallelism,
    ) {
        let tiles = &self.tiles;
        let block = tiles.block_len();
        let threads = rayon::current_num_threads();
        let chunk = match parallelism {
            Parallelism::Rayon(_) if threads > 1 => g
                .c_out
                .div_ceil(2 * threads)
                .next_multiple_of(GEMM_LANES)
                .min(tiles.channels_per_chunk),
            _ => tiles.channels_per_chunk,
        };
        let lens = [
            16 * g.c_in * block,
            BlockLayout::new(tiles, tiles.rows_per_block).len(),
        ];
        with_scratch(lens.iter().sum(), |buffer| {
            let (tiles_part, rows) = buffer.split_at_mut(lens[0]);
            let mut s = Scratch {
                tiles: tiles_part,
                rows,
            };
            let positions = g.oh * g.ow;
            let spread = matches!(parallelism, Parallelism::Rayon(_)) && chunk < g.c_out;
            for first in (0..tiles.down).step_by(tiles.rows_per_block) {
                let rows = first..(first + tiles.rows_per_block).min(tiles.down);
                transform_block(g, tiles, image, rows.clone(), &mut s);
                let s = &s;
                let run = |(i, out): (usize, &mut [MaybeUninit<f32>])| {
                    let channels = i * chunk..((i + 1) * chunk).min(g.c_out);
                    let block = BlockOutput {
                        rows: rows.clone(),
                        channels,
                        bias,
                    };
                    self.chunk_output(g, s.tiles, &block, out)
                };
                if spread {
                    out.par_chunks_mut(chunk * positions)
                        .enumerate()
                        .for_each(run);
                } else {
                    out.chunks_mut(chunk * positions).enumerate().for_each(run);
                }
            }
        });
    }
}

impl Winograd {
    /// Output channels `block.channels` (their planes: `out`) at tile rows `block.rows`, from
    /// the block's transformed tiles: the 16 products, then the output transform.
    fn chunk_output(
        &self,
        g: &Geometry,
        transformed: &[f32],
        block: &BlockOutput,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (tiles, count) = (&self.tiles, block.rows.len() * self.tiles.across);
        let lens = [16 * block.channels.len() * count, 10 * count];
        with_scratch(lens.iter().sum(), |buffer| {
            let (products, sums) = buffer.split_at_mut(lens[0]);
            let channels = block.channels.clone();
            let products = multiply_chunk(g, &self.weights, transformed, channels, count, products);
            finish_chunk(g, tiles, products, sums, block, out);
        })
    }
}

wide_kernel! {
    /// [`transform_tiles`] of one block of tile rows, widened.
    fn transform_block(g: &Geometry, tiles: &Tiles, image: &[f32], rows: Range<usize>, s: &mut Scratch) {
        transform_tiles(g, tiles, image, rows, s)
    }
}

/// The 16 products of the transformed weights of output channels `channels` by a block's
/// `count` transformed tiles (`[16, c_in, count]`), into `products` (`[16, channels,
/// count]`, returned).
fn multiply_chunk<'a>(
    g: &Geometry,
    u: &[f32],
    tiles: &[f32],
    channels: Range<usize>,
    count: usize,
    products: &'a mut [f32],
) -> &'a [f32] {
    let cc = channels.len();
    for xi in 0..16 {
        let weights = &u[(xi * g.c_out + channels.start) * g.c_in..][..cc * g.c_in];
        gemm_into(
            &mut products[xi * cc * count..][..cc * count],
            [cc, count, g.c_in],
            View::rows(weights, g.c_in),
            View::rows(&tiles[xi * g.c_in * count..][..g.c_in * count], count),
            false,
            Parallelism::None,
        );
    }
    &products[..16 * cc * count]
}

/// `B^T d B` of every tile of tile rows `rows`, per input channel, into `s.tiles`
/// (`[16, c_in, tiles]`). `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
///
/// SqueezeNet's tile rows are 7 to 27 tiles long, too short for 16-lane vectors, so the block
/// is rearranged first: its padded input rows, their even and odd columns, then per row parity
/// and column offset (2x, 2x + 1, 2x + 2, 2x + 3) one array over the block's tiles. Each of
/// the 16 transformed values is then one pass over all tiles of the block.
#[inline(always)]
fn transform_tiles(g: &Geometry, t: &Tiles, image: &[f32], rows: Range<usize>, s: &mut Scratch) {
    let (across, count) = (t.across, rows.len() * t.across);
    let layout = BlockLayout::new(t, rows.len());
    let (padded, rest) = s.rows.split_at_mut(layout.padded_len());
    let (even, rest) = rest.split_at_mut(layout.columns_len());
    let (odd, rest) = rest.split_at_mut(layout.columns_len());
    let offsets = &mut rest[..8 * layout.offset_len()];
    let plane = g.h * g.w;
    for c in 0..g.c_in {
        pad_rows(
            g,
            &image[c * plane..][..plane],
            2 * rows.start,
            t.padded_width(),
            padded,
        );
        every_second(padded, even);
        every_second(&padded[1..], odd);
        for r in 0..layout.padded_rows {
            let at = (r / 2) * across;
            let sources = [(&*even, 0), (&*odd, 0), (&*even, 1), (&*odd, 1)];
            for (offset, (columns, shift)) in sources.into_iter().enumerate() {
                let to = ((r % 2) * 4 + offset) * layout.offset_len() + at;
                offsets[to..][..across]
                    .copy_from_slice(&columns[r * (across + 1) + shift..][..across]);
            }
        }
        // The cells of row parity `parity`, column offset `offset`, `down` tile rows lower.
        let cells = |parity: usize, offset: usize, down: usize| {
            &offsets[(parity * 4 + offset) * layout.offset_len() + down * across..][..count]
        };
        for (i, ((p0, d0), (p1, d1), row_sign)) in ROW_COMBINATIONS.into_iter().enumerate() {
            for (j, (k0, k1, column_sign)) in COLUMN_COMBINATIONS.into_iter().enumerate() {
                let (a0, b0) = (cells(p0, k0, d0), cells(p1, k0, d1));
                let (a1, b1) = (cells(p0, k1, d0), cells(p1, k1, d1));
                let dst = &mut s.tiles[((i * 4 + j) * g.c_in + c) * count..][..count];
                let sources = a0.iter().zip(b0).zip(a1.iter().zip(b1));
                for (v, ((a0, b0), (a1, b1))) in dst.iter_mut().zip(sources) {
                    *v = (a0 + row_sign * b0) + column_sign * (a1 + row_sign * b1);
                }
            }
        }
    }
}

/// One of a tile row's four input rows: its parity and how many tile rows down it lies (rows
/// 0 and 2 are even, rows 2 and 3 one tile row down).
type InputRow = (usize, usize);

/// The rows of `B^T d`: `(first, second, sign)` for `first + sign * second`.
const ROW_COMBINATIONS: [(InputRow, InputRow, f32); 4] = [
    ((0, 0), (0, 1), -1.0),
    ((1, 0), (0, 1), 1.0),
    ((0, 1), (1, 0), -1.0),
    ((1, 0), (1, 1), -1.0),
];

/// The columns of `(B^T d) B`: `(first, second, sign)`, column offsets within the tile.
const COLUMN_COMBINATIONS: [(usize, usize, f32); 4] =
    [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)];

/// Sizes of one block's rearranged input (see [`transform_tiles`]).
struct BlockLayout {
    across: usize,
    tile_rows: usize,
    /// Input rows the block's tiles read (`2 * tile_rows + 2`).
    padded_rows: usize,
}

impl BlockLayout {
    fn new(t: &Tiles, tile_rows: usize) -> Self {
        Self {
            across: t.across,
            tile_rows,
            padded_rows: 2 * tile_rows + 2,
        }
    }

    fn padded_len(&self) -> usize {
        self.padded_rows * (2 * self.across + 2)
    }

    /// The even (or odd) columns of the padded rows.
    fn columns_len(&self) -> usize {
        self.padded_rows * (self.across + 1)
    }

    /// One row parity and column offset over the block: a row of tiles per input row pair.
    fn offset_len(&self) -> usize {
        (self.tile_rows + 1) * self.across
    }

    /// All of the above: the scratch [`transform_tiles`] needs.
    fn len(&self) -> usize {
        self.padded_len() + 2 * self.columns_len() + 8 * self.offset_len()
    }
}

/// The input rows `first..` of one channel, `width` columns each with the convolution's
/// padding around, zero outside the image, into `padded`.
#[inline(always)]
fn pad_rows(g: &Geometry, channel: &[f32], first: usize, width: usize, padded: &mut [f32]) {
    for (r, row) in padded.chunks_exact_mut(width).enumerate() {
        row.fill(0.0);
        let iy = (first + r) as isize - g.pad[0] as isize;
        if (0..g.h as isize).contains(&iy) {
            let lo = g.pad[1].min(width);
            let len = g.w.min(width - lo);
            row[lo..lo + len].copy_from_slice(&channel[iy as usize * g.w..][..len]);
        }
    }
}

/// Which outputs a chunk's products finish: tile rows `rows` of output channels `channels`,
/// plus their bias.
struct BlockOutput<'a> {
    rows: Range<usize>,
    channels: Range<usize>,
    bias: Option<&'a [f32]>,
}

wide_kernel! {
/// `A^T m A` of every tile's products (`products`, `[16, channels, tiles]`) into the output
/// channels `block.channels` (`out` holds their planes), then bias and ReLU.
/// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`. Each step runs over all tiles of the block at once
/// (tile rows are short); only the final interleaving of even and odd output columns goes
/// row by row.
fn finish_chunk(
    g: &Geometry,
    t: &Tiles,
    products: &[f32],
    sums: &mut [f32],
    block: &BlockOutput,
    out: &mut [MaybeUninit<f32>],
) {
    let (rows, channels, bias) = (block.rows.clone(), block.channels.clone(), block.bias);
    let (count, cc, across) = (rows.len() * t.across, channels.len(), t.across);
    // The two rows of `A^T m` (four columns each), then the even and odd output columns.
    let (sums, columns) = sums[..10 * count].split_at_mut(8 * count);
    for (k, co) in channels.enumerate() {
        let b = bias.map_or(0.0, |b| b[co]);
        let m = |xi: usize| &products[(xi * cc + k) * count..][..count];
        let (top, bottom) = sums.split_at_mut(4 * count);
        for j in 0..4 {
            let sources = m(j)
                .iter()
                .zip(m(4 + j))
                .zip(m(8 + j).iter().zip(m(12 + j)));
            let pairs = top[j * count..][..count]
                .iter_mut()
                .zip(&mut bottom[j * count..][..count]);
            for ((top, bottom), ((m0, m1), (m2, m3))) in pairs.zip(sources) {
                *top = m0 + m1 + m2;
                *bottom = m1 - m2 - m3;
            }
        }
        for half in 0..2 {
            let half_sums = &sums[half * 4 * count..][..4 * count];
            let (s0, s1, s2, s3) = (
                &half_sums[..count],
                &half_sums[count..2 * count],
                &half_sums[2 * count..3 * count],
                &half_sums[3 * count..],
            );
            let (even, odd) = columns.split_at_mut(count);
            let sources = s0.iter().zip(s1).zip(s2.iter().zip(s3));
            for ((e, o), ((s0, s1), (s2, s3))) in even.iter_mut().zip(odd.iter_mut()).zip(sources) {
                *e = s0 + s1 + s2 + b;
                *o = s1 - s2 - s3 + b;
            }
            if g.relu {
                columns.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let (even, odd) = columns.split_at(count);
            for ty in rows.clone() {
                let oy = 2 * ty + half;
                if oy < g.oh {
                    let at = (ty - rows.start) * across;
                    let row = &mut out[(k * g.oh + oy) * g.ow..][..g.ow];
                    interleave(&even[at..][..across], &odd[at..][..across], row);
                }
            }
        }
    }
}
}
