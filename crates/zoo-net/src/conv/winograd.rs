//! 3x3 stride-1 inference convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 block of outputs
//! comes from a 4x4 input tile with 16 multiplies per input and output channel instead of 36.
//! Per block of tiles the input tiles are transformed (`B^T d B`), the multiplies are 16 gemms
//! of the transformed weights (`G g G^T`, made once per weight tensor) by the transformed
//! tiles, and each output block is `A^T m A`, then bias and ReLU. Every transform runs along
//! whole tile rows (vector arithmetic), never tile by tile.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::{aligned_rows, gemm_into, with_scratch, Geometry, View, BLOCK_VALUES, GEMM_LANES};
use crate::image_parallel::inside_image_task;

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

/// Transformed weights of recent image-by-image calls, which run every convolution once per
/// image: a transform per call would cost a third of the layer. Batched calls (training,
/// batched inference) transform once per call and keep nothing, so a training run's changing
/// weights never fill it.
static CACHE: Mutex<Vec<Cached>> = Mutex::new(Vec::new());
/// The most weight values the cache keeps (copies and transforms together, 128 MB).
const CACHE_VALUES: usize = 32 << 20;

fn transformed_weights(w: &[f32], c_out: usize, c_in: usize) -> Arc<Vec<f32>> {
    if !inside_image_task() {
        return Arc::new(transform_weights(w, c_out, c_in));
    }
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(hit) = cache.iter().find(|c| c.weights == w) {
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

/// Scratch of one image: transformed tiles, products, and rows of one tile row.
struct Scratch<'a> {
    tiles: &'a mut [f32],
    products: &'a mut [f32],
    /// Four padded input rows, then the even and odd columns of one combined row.
    rows: &'a mut [f32],
}

impl Winograd {
    /// One image's output `[c_out, oh, ow]`, every value written; scratch from the thread's
    /// reused buffer.
    pub(super) fn image_output(
        &self,
        g: &Geometry,
        image: &[f32],
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let tiles = &self.tiles;
        let block = tiles.block_len();
        let lens = [
            16 * g.c_in * block,
            16 * tiles.channels_per_chunk * block,
            4 * tiles.padded_width() + 2 * (tiles.across + 1),
        ];
        with_scratch(lens.iter().sum(), |buffer| {
            let (tiles_part, rest) = buffer.split_at_mut(lens[0]);
            let (products, rows) = rest.split_at_mut(lens[1]);
            let mut s = Scratch {
                tiles: tiles_part,
                products,
                rows,
            };
            image_blocks(g, tiles, image, &self.weights, bias, &mut s, out);
        });
    }
}

fn image_blocks(
    g: &Geometry,
    tiles: &Tiles,
    image: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    s: &mut Scratch,
    out: &mut [MaybeUninit<f32>],
) {
    for first in (0..tiles.down).step_by(tiles.rows_per_block) {
        let rows = first..(first + tiles.rows_per_block).min(tiles.down);
        let count = rows.len() * tiles.across;
        transform_tiles(g, tiles, image, rows.clone(), s);
        for start in (0..g.c_out).step_by(tiles.channels_per_chunk) {
            let channels = start..(start + tiles.channels_per_chunk).min(g.c_out);
            let cc = channels.len();
            for xi in 0..16 {
                let weights = &u[(xi * g.c_out + start) * g.c_in..][..cc * g.c_in];
                gemm_into(
                    &mut s.products[xi * cc * count..][..cc * count],
                    [cc, count, g.c_in],
                    View::rows(weights, g.c_in),
                    View::rows(&s.tiles[xi * g.c_in * count..][..g.c_in * count], count),
                    false,
                    gemm::Parallelism::None,
                );
            }
            transform_products(g, tiles, s.products, rows.clone(), channels, bias, out);
        }
    }
}

/// `B^T d B` of every tile of tile rows `rows`, per input channel, into `s.tiles`
/// (`[16, c_in, tiles]`). `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
fn transform_tiles(g: &Geometry, t: &Tiles, image: &[f32], rows: Range<usize>, s: &mut Scratch) {
    let count = rows.len() * t.across;
    let width = t.padded_width();
    let plane = g.h * g.w;
    for c in 0..g.c_in {
        let channel = &image[c * plane..][..plane];
        for ty in rows.clone() {
            let (input, work) = s.rows.split_at_mut(4 * width);
            // The tile row's four input rows, zero outside the image.
            for (r, row) in input.chunks_exact_mut(width).enumerate() {
                row.fill(0.0);
                let iy = (2 * ty + r) as isize - g.pad[0] as isize;
                if (0..g.h as isize).contains(&iy) {
                    let lo = g.pad[1].min(width);
                    let len = g.w.min(width - lo);
                    row[lo..lo + len].copy_from_slice(&channel[iy as usize * g.w..][..len]);
                }
            }
            let r = |i: usize| &input[i * width..][..width];
            let at = (ty - rows.start) * t.across;
            // Down the rows (`B^T d`), then across each combined row (`. B`).
            for (i, (a, b, sign)) in [
                (r(0), r(2), -1.0f32),
                (r(1), r(2), 1.0),
                (r(2), r(1), -1.0),
                (r(1), r(3), -1.0),
            ]
            .into_iter()
            .enumerate()
            {
                let (even, odd) = even_and_odd(a, b, sign, t.across + 1, work);
                let (e0, e1, o0, o1) = (&even[..t.across], &even[1..], &odd[..t.across], &odd[1..]);
                for (j, (x, y, sign)) in [
                    (e0, e1, -1.0f32),
                    (o0, e1, 1.0),
                    (e1, o0, -1.0),
                    (o0, o1, -1.0),
                ]
                .into_iter()
                .enumerate()
                {
                    let dst = &mut s.tiles[((i * 4 + j) * g.c_in + c) * count + at..][..t.across];
                    for (v, (x, y)) in dst.iter_mut().zip(x.iter().zip(y)) {
                        *v = x + sign * y;
                    }
                }
            }
        }
    }
}

/// The even and odd columns of `a + sign * b`, `n` of each, in `work`.
fn even_and_odd<'w>(
    a: &[f32],
    b: &[f32],
    sign: f32,
    n: usize,
    work: &'w mut [f32],
) -> (&'w [f32], &'w [f32]) {
    let (even, rest) = work.split_at_mut(n);
    let odd = &mut rest[..n];
    let pairs = a.chunks_exact(2).zip(b.chunks_exact(2)).take(n);
    for ((e, o), (a, b)) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
        *e = a[0] + sign * b[0];
        *o = a[1] + sign * b[1];
    }
    (even, odd)
}

/// `A^T m A` of every tile's products (`[16, channels, tiles]`) into the output channels
/// `channels`, then bias and ReLU. `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
fn transform_products(
    g: &Geometry,
    t: &Tiles,
    products: &[f32],
    rows: Range<usize>,
    channels: Range<usize>,
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let (count, cc, n) = (rows.len() * t.across, channels.len(), t.across);
    // Per tile row: the two rows of `A^T m` (four columns each), then the output pairs.
    let mut sums = vec![0.0f32; 8 * n];
    let mut pairs = vec![[0.0f32; 2]; n];
    for (k, co) in channels.enumerate() {
        let b = bias.map_or(0.0, |b| b[co]);
        for ty in rows.clone() {
            let m = |xi: usize| &products[(xi * cc + k) * count + (ty - rows.start) * n..][..n];
            let (top, bottom) = sums.split_at_mut(4 * n);
            for j in 0..4 {
                let (m0, m1, m2, m3) = (m(j), m(4 + j), m(8 + j), m(12 + j));
                let top = &mut top[j * n..][..n];
                let bottom = &mut bottom[j * n..][..n];
                for x in 0..n {
                    top[x] = m0[x] + m1[x] + m2[x];
                    bottom[x] = m1[x] - m2[x] - m3[x];
                }
            }
            for half in 0..2 {
                let oy = 2 * ty + half;
                if oy >= g.oh {
                    break;
                }
                let s = &sums[half * 4 * n..][..4 * n];
                let (s0, s1, s2, s3) = (&s[..n], &s[n..2 * n], &s[2 * n..3 * n], &s[3 * n..]);
                for (x, pair) in pairs.iter_mut().enumerate() {
                    let left = s0[x] + s1[x] + s2[x] + b;
                    let right = s1[x] - s2[x] - s3[x] + b;
                    *pair = if g.relu {
                        [left.max(0.0), right.max(0.0)]
                    } else {
                        [left, right]
                    };
                }
                let row = &mut out[(co * g.oh + oy) * g.ow..][..g.ow];
                let mut cells = row.chunks_exact_mut(2);
                for (cell, pair) in (&mut cells).zip(&pairs) {
                    cell[0].write(pair[0]);
                    cell[1].write(pair[1]);
                }
                if let [last] = cells.into_remainder() {
                    last.write(pairs[n - 1][0]);
                }
            }
        }
    }
}
