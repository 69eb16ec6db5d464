//! Per-op training-step profile on `Autodiff<Flex>`: forward and forward + backward time of
//! zoo's own ops (convolution with im2col + gemm gradients, fused batch norm) next to burn's
//! generic ones, at the layer shapes of the lecture's LeNet-5 (batch 64) and SqueezeNet 1.0
//! (batch 32, 224x224). Median of 7 timed runs after one warm-up; one JSON object a line.
//! Attention at ViT-tiny's shape (batch 32, 3 heads, 197 tokens of 64) too.
//! Run: cargo bench -p zoo-net --bench train_ops [-- OP] (only ops whose name contains OP)

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use zoo_onnx::builder::SeededRng;

type B = Autodiff<Flex>;
const RUNS: usize = 7;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..RUNS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[RUNS / 2]
}

fn tensor<const D: usize>(rng: &mut SeededRng, dims: [usize; D], grad: bool) -> Tensor<B, D> {
    let values = rng.values(dims.iter().product(), 1.0);
    let t = Tensor::from_data(TensorData::new(values, dims), &Default::default());
    if grad {
        t.require_grad()
    } else {
        t
    }
}

/// Times `op` forward alone and forward + backward of `sum(y * probe)`: the probe makes the
/// gradient reaching `op` a plain contiguous tensor, as inside a network (the gradient of a bare
/// `sum` is a broadcast view). The probe's multiply and sum are in both sides' step times.
fn time_op(op: &dyn Fn() -> Tensor<B, 4>) -> (f64, f64) {
    let dims = op().dims();
    let probe = Tensor::<B, 4>::ones(dims, &Default::default());
    let forward = median_ms(|| {
        let _ = op().inner();
    });
    let step = median_ms(|| {
        let _ = (op() * probe.clone()).sum().backward();
    });
    (forward, step)
}

fn report(model: &str, op: &str, shape: String, zoo: (f64, f64), generic: (f64, f64)) {
    println!(
        "{{\"model\": \"{model}\", \"op\": \"{op}\", \"shape\": \"{shape}\", \
         \"zoo_forward_ms\": {:.2}, \"zoo_step_ms\": {:.2}, \
         \"generic_forward_ms\": {:.2}, \"generic_step_ms\": {:.2}}}",
        zoo.0, zoo.1, generic.0, generic.1
    );
}

struct Conv {
    model: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
    input_grad: bool,
}

fn bench_conv(c: &Conv, rng: &mut SeededRng) {
    let x = tensor(rng, c.x, c.input_grad);
    let w = tensor(rng, c.w, true);
    let b = tensor(rng, [c.w[0]], true);
    let options = ConvOptions::new([c.stride; 2], [c.pad; 2], [1, 1], 1);
    let zoo =
        time_op(&|| zoo_net::conv::conv2d(&x, &w, Some(&b), &(&options).into()).expect("flex"));
    let generic = time_op(&|| conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone()));
    let shape = format!("x {:?} w {:?} stride {} pad {}", c.x, c.w, c.stride, c.pad);
    report(c.model, "conv", shape, zoo, generic);
}

fn bench_batch_norm(model: &str, dims: [usize; 4], rng: &mut SeededRng) {
    let c = dims[1];
    let x = tensor(rng, dims, true);
    let (scale, bias) = (tensor(rng, [c], true), tensor(rng, [c], true));
    let zoo = time_op(&|| {
        zoo_net::batch_norm_train::batch_norm_train(&x, &scale, &bias, 1e-5, false)
            .expect("flex")
            .y
    });
    let generic = time_op(&|| {
        let per_channel = |t: Tensor<B, 4>| t.mean_dim(0).mean_dim(2).mean_dim(3);
        let centred = x.clone() - per_channel(x.clone());
        let var = per_channel(centred.clone().powi_scalar(2));
        centred / (var + 1e-5).sqrt() * scale.clone().reshape([1, c, 1, 1])
            + bias.clone().reshape([1, c, 1, 1])
    });
    report(
        model,
        "batch norm (batch statistics)",
        format!("{dims:?}"),
        zoo,
        generic,
    );
}

/// ReLU, left to flex (its single-core SIMD pass beat a multi-threaded one here).
fn bench_relu(model: &str, dims: [usize; 4], rng: &mut SeededRng) {
    let x = tensor(rng, dims, true);
    let (forward, step) = time_op(&|| burn::tensor::activation::relu(x.clone()));
    println!(
        "{{\"model\": \"{model}\", \"op\": \"relu (flex)\", \"shape\": \"{dims:?}\", \
         \"forward_ms\": {forward:.2}, \"step_ms\": {step:.2}}}"
    );
}

fn bench_max_pool(model: &str, dims: [usize; 4], rng: &mut SeededRng) {
    let x = tensor(rng, dims, true);
    let spec = zoo_onnx::PoolSpec {
        kernel: [2, 2],
        strides: [2, 2],
        dilations: [1, 1],
        padding: zoo_onnx::Padding::Explicit([0; 4]),
        ceil_mode: false,
    };
    let zoo = time_op(&|| zoo_net::max_pool::max_pool(&x, &spec, [0; 4], [0; 2]).expect("flex"));
    let generic = time_op(&|| {
        burn::tensor::module::max_pool2d(x.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false)
    });
    report(model, "max-pool 2x2", format!("{dims:?}"), zoo, generic);
}

/// zoo's attention kernel against burn's `softmax(q k^T * scale) v`.
fn bench_attention(model: &str, [b, h, t, d]: [usize; 4], rng: &mut SeededRng) {
    let [q, k, v] = [0; 3].map(|_| tensor(rng, [b, h, t, d], true));
    let scale = 1.0 / (d as f32).sqrt();
    let zoo = time_op(&|| zoo_net::kernels::attention::attention(&q, &k, &v, scale).expect("flex"));
    let generic = time_op(&|| {
        let scores = q
            .clone()
            .matmul(k.clone().swap_dims(2, 3))
            .mul_scalar(scale);
        burn::tensor::activation::softmax(scores, 3).matmul(v.clone())
    });
    report(
        model,
        "attention",
        format!("q, k, v {:?}", [b, h, t, d]),
        zoo,
        generic,
    );
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |op: &str| only.as_ref().is_none_or(|o| op.contains(o.as_str()));
    let mut rng = SeededRng::new(1);
    if wanted("attention") {
        bench_attention("vit_tiny", [32, 3, 197, 64], &mut rng);
    }
    if only.is_some() && !wanted("conv") {
        return;
    }
    let convs = [
        ("lenet5", [64, 1, 28, 28], [16, 1, 3, 3], 1, 1, false),
        ("lenet5", [64, 16, 14, 14], [32, 16, 3, 3], 1, 1, true),
        ("lenet5", [64, 32, 7, 7], [64, 32, 3, 3], 1, 1, true),
        (
            "squeezenet1.0",
            [32, 3, 224, 224],
            [96, 3, 7, 7],
            2,
            0,
            false,
        ),
        (
            "squeezenet1.0",
            [32, 96, 54, 54],
            [16, 96, 1, 1],
            1,
            0,
            true,
        ),
        (
            "squeezenet1.0",
            [32, 16, 54, 54],
            [64, 16, 3, 3],
            1,
            1,
            true,
        ),
        (
            "squeezenet1.0",
            [32, 64, 13, 13],
            [256, 64, 3, 3],
            1,
            1,
            true,
        ),
    ];
    for (model, x, w, stride, pad, input_grad) in convs {
        let case = Conv {
            model,
            x,
            w,
            stride,
            pad,
            input_grad,
        };
        bench_conv(&case, &mut rng);
    }
    for dims in [[64, 16, 28, 28], [64, 32, 14, 14], [64, 64, 7, 7]] {
        bench_batch_norm("lenet5", dims, &mut rng);
        bench_relu("lenet5", dims, &mut rng);
    }
    for dims in [[64, 16, 28, 28], [64, 32, 14, 14]] {
        bench_max_pool("lenet5", dims, &mut rng);
    }
}
