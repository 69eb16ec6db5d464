//! zoo's transpose on flex (a contiguous copy, merged axes, tiles) gives burn's permute's
//! values, and on `Autodiff<Flex>` its gradients (the inverse copy), over ranks 2 to 6,
//! permutations that keep runs contiguous, swap the last two axes, or move one axis, and
//! sizes around the tile edge. The fused Linear (`x @ W + b` over all rows) gives burn's
//! matmul-plus-bias values and gradients; LayerNorm, Softmax, GELU and the per-column add and
//! multiply give their composed burn forms' values and gradients.

mod support {
    pub mod narrower_kernels;
}

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use zoo_net::kernels::permute::permute;
use zoo_onnx::builder::SeededRng;

fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn check<const D: usize>(dims: [usize; D], axes: [usize; D]) {
    let n: usize = dims.iter().product();
    let x = SeededRng::new(n as u64).values(n, 1.0);
    let device = Default::default();
    let flex = Tensor::<Flex, D>::from_data(TensorData::new(x.clone(), dims), &device);
    let fast = permute(&flex, axes).expect("flex is served");
    assert_eq!(
        fast.dims(),
        flex.clone().permute(axes).dims(),
        "{dims:?} {axes:?}"
    );
    assert_eq!(
        values(fast),
        values(flex.permute(axes)),
        "{dims:?} {axes:?}"
    );

    // Gradients of sum(y * w) with a different w per output value.
    let w = SeededRng::new(7).values(n, 1.0);
    let grad = |fast: bool| {
        let x = Tensor::<Autodiff<Flex>, D>::from_data(TensorData::new(x.clone(), dims), &device)
            .require_grad();
        let y = if fast {
            permute(&x, axes).expect("autodiff flex is served")
        } else {
            x.clone().permute(axes)
        };
        let w =
            Tensor::<Autodiff<Flex>, D>::from_data(TensorData::new(w.clone(), y.dims()), &device);
        let grads = (y * w).sum().backward();
        values(x.grad(&grads).unwrap())
    };
    assert_eq!(grad(true), grad(false), "gradient {dims:?} {axes:?}");
}

#[test]
fn transposes_match_burns_permute_in_values_and_gradients() {
    check([3, 5], [1, 0]);
    check([70, 130], [1, 0]);
    check([2, 3, 4], [0, 2, 1]);
    check([2, 3, 4], [2, 0, 1]);
    check([2, 65, 67], [0, 2, 1]);
    check([2, 5, 3, 4], [0, 2, 1, 3]);
    check([2, 5, 3, 4], [0, 2, 3, 1]);
    check([1, 3, 1, 4], [3, 1, 0, 2]);
    check([2, 5, 3, 2, 4], [2, 0, 3, 1, 4]);
    check([1, 2, 5, 3, 2, 4], [0, 3, 1, 4, 2, 5]);
    check([1, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]);
}

/// Largest difference between two value lists, relative to the largest magnitude.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// A tensor of `Autodiff<Flex>` that collects its gradient.
fn leaf<const D: usize>(v: &[f32], dims: [usize; D]) -> Tensor<Autodiff<Flex>, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), dims), &Default::default()).require_grad()
}

/// `linear` against burn's `x.matmul(w) + b`: values on flex, and on `Autodiff<Flex>` the
/// gradients of all three inputs (of `sum(y * r)` with a different `r` per output value).
fn check_linear(rows: usize, k: usize, c: usize) {
    use zoo_net::kernels::linear::linear;
    type T = Autodiff<Flex>;
    let device = Default::default();
    let [x, w, b, r] =
        [rows * k, k * c, c, rows * c].map(|n| SeededRng::new((n + k) as u64).values(n, 1.0));
    let flex2 = |v: &[f32], d: [usize; 2]| {
        Tensor::<Flex, 2>::from_data(TensorData::new(v.to_vec(), d), &device)
    };
    let bias = Tensor::<Flex, 1>::from_data(TensorData::new(b.clone(), [c]), &device);
    let (xf, wf) = (flex2(&x, [rows, k]), flex2(&w, [k, c]));
    let fast = linear(&xf, &wf, &bias).expect("flex is served");
    let slow = xf.matmul(wf) + bias.unsqueeze();
    let diff = max_rel_diff(&values(fast), &values(slow));
    assert!(diff < 1e-5, "forward {rows}x{k}x{c}: {diff}");

    let grads = |fast: bool| {
        let (x, w) = (leaf::<2>(&x, [rows, k]), leaf::<2>(&w, [k, c]));
        let b = leaf::<1>(&b, [c]);
        let y = if fast {
            linear(&x, &w, &b).expect("autodiff flex is served")
        } else {
            x.clone().matmul(w.clone()) + b.clone().unsqueeze()
        };
        let r = Tensor::<T, 2>::from_data(TensorData::new(r.clone(), [rows, c]), &device);
        let g = (y * r).sum().backward();
        [
            values(x.grad(&g).unwrap()),
            values(w.grad(&g).unwrap()),
            values(b.grad(&g).unwrap()),
        ]
    };
    let (fast, slow) = (grads(true), grads(false));
    for (name, (f, s)) in ["x", "w", "bias"].iter().zip(fast.iter().zip(&slow)) {
        let diff = max_rel_diff(f, s);
        assert!(diff < 1e-5, "gradient of {name} {rows}x{k}x{c}: {diff}");
    }
}

#[test]
fn token_wise_linear_matches_matmul_plus_bias_in_values_and_gradients() {
    check_linear(1, 1, 1);
    check_linear(7, 5, 3);
    check_linear(197, 64, 192);
    check_linear(130, 192, 10);
}

/// A zoo row op against its composed burn form: values on flex (when `on_flex`), and on
/// `Autodiff<Flex>` the gradients of every input (of `sum(y * r)`).
fn check_rows<const N: usize>(
    name: &str,
    dims: [[usize; 2]; N],
    on_flex: bool,
    fast: impl Fn(&[Tensor<Autodiff<Flex>, 2>; N]) -> Tensor<Autodiff<Flex>, 2>,
    slow: impl Fn(&[Tensor<Autodiff<Flex>, 2>; N]) -> Tensor<Autodiff<Flex>, 2>,
    fast_flex: impl Fn(&[Tensor<Flex, 2>; N]) -> Tensor<Flex, 2>,
) {
    let device = Default::default();
    let inputs: [Vec<f32>; N] =
        std::array::from_fn(|i| SeededRng::new(31 + i as u64).values(dims[i][0] * dims[i][1], 2.0));
    if on_flex {
        let flex: [Tensor<Flex, 2>; N] = std::array::from_fn(|i| {
            Tensor::from_data(TensorData::new(inputs[i].clone(), dims[i]), &device)
        });
        let slow_flex: [Tensor<Autodiff<Flex>, 2>; N] = std::array::from_fn(|i| {
            Tensor::from_data(TensorData::new(inputs[i].clone(), dims[i]), &device)
        });
        let diff = max_rel_diff(&values(fast_flex(&flex)), &values(slow(&slow_flex).inner()));
        assert!(diff < 1e-5, "{name} forward {dims:?}: {diff}");
    }
    let grads = |use_fast: bool| {
        let leaves: [Tensor<Autodiff<Flex>, 2>; N] = std::array::from_fn(|i| {
            Tensor::from_data(TensorData::new(inputs[i].clone(), dims[i]), &device).require_grad()
        });
        let y = if use_fast {
            fast(&leaves)
        } else {
            slow(&leaves)
        };
        let n: usize = y.dims().iter().product();
        let r = SeededRng::new(5).values(n, 1.0);
        let r = Tensor::<Autodiff<Flex>, 2>::from_data(TensorData::new(r, y.dims()), &device);
        let forward = values(y.clone().inner());
        let g = (y * r).sum().backward();
        let mut all = vec![forward];
        all.extend(leaves.iter().map(|l| values(l.grad(&g).unwrap())));
        all
    };
    for (k, (f, s)) in grads(true).iter().zip(&grads(false)).enumerate() {
        let diff = max_rel_diff(f, s);
        assert!(
            diff < 2e-5,
            "{name} {dims:?}: output {k} (0 = values, then gradients) {diff}"
        );
    }
}

#[test]
fn layer_norm_matches_the_composed_form_in_values_and_gradients() {
    use zoo_net::kernels::rows::layer_norm;
    let eps = 1e-6;
    let composed = |t: &[Tensor<Autodiff<Flex>, 2>; 3]| {
        let x = t[0].clone();
        let centred = x.clone() - x.mean_dim(1);
        let var = centred.clone().powi_scalar(2).mean_dim(1);
        centred / (var + eps as f64).sqrt() * t[1].clone() + t[2].clone()
    };
    for (rows, len) in [(1, 1), (3, 7), (197, 192), (70, 9)] {
        let dims = [[rows, len], [1, len], [1, len]];
        let row = |t: &Tensor<Autodiff<Flex>, 2>| t.clone().reshape([len]);
        check_rows(
            "layer norm",
            dims,
            true,
            |t| layer_norm(&t[0], &row(&t[1]), &row(&t[2]), eps).expect("served"),
            composed,
            |t| {
                let row = |t: &Tensor<Flex, 2>| t.clone().reshape([len]);
                layer_norm(&t[0], &row(&t[1]), &row(&t[2]), eps).expect("served")
            },
        );
    }
}

#[test]
fn softmax_matches_burns_in_values_and_gradients() {
    use burn::tensor::activation::softmax as burn_softmax;
    use zoo_net::kernels::rows::softmax;
    for (rows, len) in [(1, 1), (5, 3), (12 * 197, 197), (4, 100)] {
        check_rows(
            "softmax",
            [[rows, len]],
            false,
            |t| softmax(&t[0]).expect("served"),
            |t| burn_softmax(t[0].clone(), 1),
            |t| burn_softmax(t[0].clone(), 1),
        );
    }
}

#[test]
fn gelu_matches_burns_in_values_and_gradients() {
    use burn::tensor::activation::gelu as burn_gelu;
    use zoo_net::kernels::gelu::gelu;
    for (rows, len) in [(1, 1), (3, 5), (197, 768), (1, 40_000)] {
        check_rows(
            "gelu",
            [[rows, len]],
            true,
            |t| gelu(&t[0]).expect("served"),
            |t| burn_gelu(t[0].clone()),
            |t| gelu(&t[0]).expect("served"),
        );
    }
}

#[test]
fn per_column_add_and_mul_match_burns_broadcast_in_values_and_gradients() {
    use zoo_net::kernels::columns::{per_column, ColumnOp};
    for op in [ColumnOp::Add, ColumnOp::Mul] {
        for (rows, c) in [(2, 1), (3, 5), (6272, 80), (200, 3)] {
            let vector = |t: &Tensor<Autodiff<Flex>, 2>| t.clone().reshape([c]);
            check_rows(
                "per column",
                [[rows, c], [1, c]],
                true,
                |t| per_column(&t[0], &vector(&t[1]), op).expect("served"),
                |t| match op {
                    ColumnOp::Add => t[0].clone() + t[1].clone(),
                    ColumnOp::Mul => t[0].clone() * t[1].clone(),
                },
                |t| per_column(&t[0], &t[1].clone().reshape([c]), op).expect("served"),
            );
        }
    }
}

/// `attention` against burn's `softmax(q k^T * scale) v`: values on flex, and on
/// `Autodiff<Flex>` the values and the gradients of q, k and v (of `sum(y * r)`).
fn check_attention(dims: [usize; 5], scale: f32) {
    use burn::tensor::activation::softmax;
    use zoo_net::kernels::attention::attention;
    let [b, h, t, s, d] = dims;
    let dv = d + 3;
    let shapes = [[b, h, t, d], [b, h, s, d], [b, h, s, dv]];
    let inputs: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, sh)| SeededRng::new(40 + i as u64).values(sh.iter().product(), 2.0))
        .collect();
    let composed = |q: Tensor<Autodiff<Flex>, 4>, k: Tensor<_, 4>, v: Tensor<_, 4>| {
        softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3).matmul(v)
    };
    let device = Default::default();
    let flex: Vec<Tensor<Flex, 4>> = (0..3)
        .map(|i| Tensor::from_data(TensorData::new(inputs[i].clone(), shapes[i]), &device))
        .collect();
    let fast = attention(&flex[0], &flex[1], &flex[2], scale).expect("flex is served");
    let run = |use_fast: bool| {
        let leaves: Vec<Tensor<Autodiff<Flex>, 4>> =
            (0..3).map(|i| leaf::<4>(&inputs[i], shapes[i])).collect();
        let (q, k, v) = (leaves[0].clone(), leaves[1].clone(), leaves[2].clone());
        let y = if use_fast {
            attention(&q, &k, &v, scale).expect("autodiff flex is served")
        } else {
            composed(q, k, v)
        };
        let r = SeededRng::new(9).values(b * h * t * dv, 1.0);
        let r = Tensor::<Autodiff<Flex>, 4>::from_data(TensorData::new(r, y.dims()), &device);
        let forward = values(y.clone().inner());
        let g = (y * r).sum().backward();
        let mut all = vec![forward];
        all.extend(leaves.iter().map(|l| values(l.grad(&g).unwrap())));
        all
    };
    let slow = run(false);
    let diff = max_rel_diff(&values(fast), &slow[0]);
    assert!(diff < 1e-5, "attention forward on flex {dims:?}: {diff}");
    for (k, (f, s)) in run(true).iter().zip(&slow).enumerate() {
        let diff = max_rel_diff(f, s);
        assert!(
            diff < 2e-5,
            "attention {dims:?}: output {k} (0 = values, then dq, dk, dv) {diff}"
        );
    }
}

#[test]
fn attention_matches_the_composed_form_in_values_and_gradients() {
    check_attention([1, 1, 1, 1, 1], 1.0);
    check_attention([2, 3, 5, 7, 4], 0.5);
    check_attention([2, 3, 197, 197, 64], 0.125);
    check_attention([1, 2, 9, 30, 8], -0.7);
    // Fewer pairs than cores: query rows cut in blocks (the last one shorter), per batch-1 ViT.
    check_attention([1, 3, 197, 197, 64], 0.125);
    check_attention([1, 1, 100, 50, 8], 0.3);
    // Nothing to attend over, or no queries: left to burn.
    let zeros = |d: [usize; 4]| Tensor::<Flex, 4>::zeros(d, &Default::default());
    let (q, kv) = (zeros([1, 1, 0, 4]), zeros([1, 1, 3, 4]));
    assert!(zoo_net::kernels::attention::attention(&q, &kv, &kv, 1.0).is_none());
    let (q, kv) = (zeros([1, 1, 2, 4]), zeros([1, 1, 0, 4]));
    assert!(zoo_net::kernels::attention::attention(&q, &kv, &kv, 1.0).is_none());
}

/// burn's attention over tokens-first Q, K and V (`[B, T, H*D]`), heads taken apart and put
/// back with reshapes and transposes.
fn composed_tokens<B: burn::tensor::backend::Backend>(
    [q, k, v]: [Tensor<B, 3>; 3],
    heads: usize,
    scale: f32,
) -> Tensor<B, 3> {
    use burn::tensor::activation::softmax;
    let split = |x: Tensor<B, 3>| {
        let [b, t, c] = x.dims();
        x.reshape([b, t, heads, c / heads]).swap_dims(1, 2)
    };
    let y = softmax(
        split(q).matmul(split(k).swap_dims(2, 3)).mul_scalar(scale),
        3,
    )
    .matmul(split(v));
    let [b, h, t, dv] = y.dims();
    y.swap_dims(1, 2).reshape([b, t, h * dv])
}

/// `attention_tokens` (Q, K and V `[B, T, H*D]` apart) and `attention_packed` (side by side
/// in one `[B, T, 3*H*D]`) against burn's heads taken apart and put back: values on flex and
/// on `Autodiff<Flex>`, and the gradients of every input.
fn check_tokens_first(b: usize, heads: usize, t: usize, d: usize, scale: f32) {
    use zoo_net::kernels::attention::{attention_packed, attention_tokens};
    type T = Autodiff<Flex>;
    let c = heads * d;
    let x = SeededRng::new(61).values(b * t * 3 * c, 2.0);
    let r = SeededRng::new(62).values(b * t * c, 1.0);
    let third = |x: &Tensor<T, 3>, i: usize| x.clone().narrow(2, i * c, c);
    let run = |how: &str| {
        let leaf = leaf::<3>(&x, [b, t, 3 * c]);
        let y = match how {
            "packed" => attention_packed(&leaf, heads, scale).expect("served"),
            "tokens" => {
                // Each of Q, K and V its own contiguous tensor.
                let [q, k, v] = [0, 1, 2].map(|i| third(&leaf, i) * 1.0);
                attention_tokens(&q, &k, &v, heads, scale).expect("served")
            }
            _ => composed_tokens([0, 1, 2].map(|i| third(&leaf, i)), heads, scale),
        };
        let rt =
            Tensor::<T, 3>::from_data(TensorData::new(r.clone(), y.dims()), &Default::default());
        let forward = values(y.clone().inner());
        let g = (y * rt).sum().backward();
        [forward, values(leaf.grad(&g).unwrap())]
    };
    let slow = run("composed");
    for how in ["packed", "tokens"] {
        for (k, (f, s)) in run(how).iter().zip(&slow).enumerate() {
            let diff = max_rel_diff(f, s);
            assert!(
                diff < 2e-5,
                "{how} {b}x{heads}x{t}x{d}: output {k} (0 = values, 1 = dx) {diff}"
            );
        }
    }
    let flex = Tensor::<Flex, 3>::from_data(
        TensorData::new(x.clone(), [b, t, 3 * c]),
        &Default::default(),
    );
    let fast = attention_packed(&flex, heads, scale).expect("flex is served");
    let diff = max_rel_diff(&values(fast), &slow[0]);
    assert!(diff < 1e-5, "packed on flex {b}x{heads}x{t}x{d}: {diff}");
}

#[test]
fn attention_reads_tokens_first_and_packed_inputs_where_they_lie() {
    check_tokens_first(1, 1, 1, 1, 1.0);
    check_tokens_first(2, 3, 5, 4, 0.5);
    // Batch-1 ViT-tiny: query rows cut in blocks.
    check_tokens_first(1, 3, 197, 64, 0.125);
    check_tokens_first(3, 2, 17, 8, -0.7);
    // Heads that do not divide the width: left to burn.
    let x = Tensor::<Flex, 3>::zeros([1, 4, 3 * 10], &Default::default());
    assert!(zoo_net::kernels::attention::attention_packed(&x, 3, 1.0).is_none());
}

/// LayerNorm over the channels of each position (`[N, C, positions]`) against burn's
/// channels-last LayerNorm between two transposes (ConvNeXt's exported form): values on flex
/// and on `Autodiff<Flex>`, and the gradients of the map, the scale and the bias.
#[test]
fn layer_norm_over_channels_matches_the_transposed_form_in_values_and_gradients() {
    use zoo_net::kernels::rows::layer_norm_over_channels;
    fn composed<B: burn::tensor::backend::Backend>(
        t: &[Tensor<B, 2>; 3],
        n: usize,
        eps: f32,
    ) -> Tensor<B, 2> {
        let [rows, p] = t[0].dims();
        let c = rows / n;
        let last = t[0]
            .clone()
            .reshape([n, c, p])
            .swap_dims(1, 2)
            .reshape([n * p, c]);
        let centred = last.clone() - last.mean_dim(1);
        let var = centred.clone().powi_scalar(2).mean_dim(1);
        let y = centred / (var + eps as f64).sqrt() * t[1].clone() + t[2].clone();
        y.reshape([n, p, c]).swap_dims(1, 2).reshape([n * c, p])
    }
    fn fused<B: burn::tensor::backend::Backend>(
        t: &[Tensor<B, 2>; 3],
        n: usize,
        eps: f32,
    ) -> Tensor<B, 2> {
        let [rows, p] = t[0].dims();
        let c = rows / n;
        let (scale, bias) = (t[1].clone().reshape([c]), t[2].clone().reshape([c]));
        layer_norm_over_channels(&t[0].clone().reshape([n, c, p]), &scale, &bias, eps)
            .expect("served")
            .reshape([n * c, p])
    }
    // ConvNeXt-atto's first stage at batch 2 (56 x 56 positions: blocks of 256 and a shorter
    // last one), a late stage, and sizes that fit no lane width.
    for (n, c, p) in [(2, 40, 3136), (1, 320, 49), (3, 5, 7), (1, 1, 1)] {
        let eps = 1e-6;
        check_rows(
            "over channels",
            [[n * c, p], [1, c], [1, c]],
            true,
            |t| fused(t, n, eps),
            |t| composed(t, n, eps),
            |t| fused(t, n, eps),
        );
    }
}

/// The kernels built for narrower targets pass this file's tests too.
#[test]
fn the_narrower_kernels_pass_these_tests_too() {
    support::narrower_kernels::run_every_narrower_copy("the_narrower_kernels_pass_these_tests_too");
}

/// A value per channel of NCHW maps (`[outer, c, inner]`, ConvNeXt's `gamma` `[c, 1, 1]`).
#[test]
fn per_channel_add_and_mul_match_burns_broadcast_in_values_and_gradients() {
    use zoo_net::kernels::columns::{per_channel, ColumnOp};
    for op in [ColumnOp::Add, ColumnOp::Mul] {
        for (outer, c, inner) in [(1, 2, 3), (3, 5, 7), (4, 40, 3136), (2, 3, 20_000)] {
            let maps = |t: &Tensor<Autodiff<Flex>, 2>| t.clone().reshape([outer, c, inner]);
            let flat = |t: Tensor<Autodiff<Flex>, 3>| t.reshape([outer, c * inner]);
            check_rows(
                "per channel",
                [[outer, c * inner], [1, c]],
                true,
                |t| {
                    flat(per_channel(&maps(&t[0]), &t[1].clone().reshape([c]), op).expect("served"))
                },
                |t| {
                    let v = t[1].clone().reshape([1, c, 1]);
                    flat(match op {
                        ColumnOp::Add => maps(&t[0]) + v,
                        ColumnOp::Mul => maps(&t[0]) * v,
                    })
                },
                |t| {
                    let x = t[0].clone().reshape([outer, c, inner]);
                    let y = per_channel(&x, &t[1].clone().reshape([c]), op).expect("served");
                    y.reshape([outer, c * inner])
                },
            );
        }
    }
}
