//! zoo's own training ops on `Autodiff<Flex>` compute what burn's generic ops compute: the
//! convolution (im2col + gemm gradients) the same output and gradients of the input, weights
//! and bias over strides, padding, dilation, groups, 1x1 kernels and batch sizes; batch norm
//! with batch statistics (one op, own backward) the same output, statistics and gradients as
//! the composed formula; max pooling (argmax kept for the backward) the same output and input
//! gradient as burn's max_pool2d over -inf padding; concatenation the same values and input
//! gradients as `Tensor::cat`.

mod support {
    pub mod narrower_kernels;
}

use burn::backend::{Autodiff, Flex};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use zoo_onnx::builder::SeededRng;

type B = Autodiff<Flex>;

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
    input_grad: bool,
    relu: bool,
}

fn case(x: [usize; 4], w: [usize; 4]) -> Case {
    Case {
        x,
        w,
        stride: [1, 1],
        pad: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: true,
        input_grad: true,
        relu: false,
    }
}

fn tensor<const D: usize>(values: &[f32], dims: [usize; D], grad: bool) -> Tensor<B, D> {
    let t = Tensor::<B, D>::from_data(TensorData::new(values.to_vec(), dims), &Default::default());
    if grad {
        t.require_grad()
    } else {
        t
    }
}

fn host<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn close(name: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 2e-5 * scale, "{name}[{i}]: {x} vs {y}");
    }
}

/// Output, then the gradients of x, w and b, of `sum(conv(x) * probe)` (a probe makes every
/// output cell's gradient different).
fn run(c: &Case, fast: bool) -> Vec<Vec<f32>> {
    let mut rng = SeededRng::new(5);
    let x_values = rng.values(c.x.iter().product(), 1.0);
    let w_values = rng.values(c.w.iter().product(), 0.5);
    let b_values = rng.values(c.w[0], 0.5);
    let (x, w) = (
        tensor(&x_values, c.x, c.input_grad),
        tensor(&w_values, c.w, true),
    );
    let b = c.bias.then(|| tensor(&b_values, [c.w[0]], true));
    let options = ConvOptions::new(c.stride, c.pad, c.dilation, c.groups);
    let y = if fast {
        let settings = zoo_net::conv::ConvSettings {
            relu: c.relu,
            ..(&options).into()
        };
        zoo_net::conv::conv2d(&x, &w, b.as_ref(), &settings).expect("the fast path takes f32 flex")
    } else {
        let y = conv2d(x.clone(), w.clone(), b.clone(), options);
        if c.relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        }
    };
    let probe = Tensor::<B, 4>::from_data(
        TensorData::new(rng.values(y.dims().iter().product(), 1.0), y.dims()),
        &Default::default(),
    );
    let grads = (y.clone() * probe).sum().backward();
    let mut out = vec![host(y.inner())];
    if c.input_grad {
        out.push(host(x.grad(&grads).expect("x grad")));
    }
    out.push(host(w.grad(&grads).expect("w grad")));
    if let Some(b) = &b {
        out.push(host(b.grad(&grads).expect("b grad")));
    }
    out
}

fn check(name: &str, c: Case) {
    let (fast, generic) = (run(&c, true), run(&c, false));
    assert_eq!(fast.len(), generic.len());
    for (i, (a, b)) in fast.iter().zip(&generic).enumerate() {
        close(&format!("{name} part {i}"), a, b);
    }
}

#[test]
fn padded_3x3_matches_the_generic_convolution() {
    check(
        "3x3 pad 1",
        Case {
            pad: [1, 1],
            ..case([4, 3, 7, 6], [5, 3, 3, 3])
        },
    );
}

#[test]
fn strided_padded_and_dilated_kernels_match() {
    check(
        "5x5 stride 2 pad 2",
        Case {
            stride: [2, 2],
            pad: [2, 1],
            ..case([3, 2, 9, 8], [4, 2, 5, 5])
        },
    );
    check(
        "3x3 dilation 2",
        Case {
            pad: [2, 2],
            dilation: [2, 2],
            ..case([2, 2, 8, 7], [3, 2, 3, 3])
        },
    );
    check(
        "7x3 stride (3, 1), no pad",
        Case {
            stride: [3, 1],
            ..case([2, 3, 11, 6], [2, 3, 7, 3])
        },
    );
}

#[test]
fn grouped_depthwise_and_pointwise_kernels_match() {
    check(
        "groups 2",
        Case {
            pad: [1, 1],
            groups: 2,
            ..case([3, 4, 6, 5], [6, 2, 3, 3])
        },
    );
    check(
        "depthwise",
        Case {
            pad: [1, 1],
            stride: [2, 2],
            groups: 3,
            ..case([2, 3, 7, 7], [3, 1, 3, 3])
        },
    );
    check("pointwise", case([3, 4, 5, 5], [6, 4, 1, 1]));
    check(
        "1x1 stride 2",
        Case {
            stride: [2, 2],
            ..case([2, 3, 6, 5], [2, 3, 1, 1])
        },
    );
}

/// Depthwise convolutions run zoo's direct kernels (`conv/depthwise.rs`, and its dense path at
/// stride 1 in `conv/depthwise/dense.rs`): ConvNeXt's 7x7,
/// MobileNet's strided 3x3 and 5x5, dilation, a fused ReLU, no bias, images narrower than the
/// kernel's reach, and a frozen input.
#[test]
fn depthwise_kernels_match_the_generic_convolution() {
    let dw = |x: [usize; 4], k: usize| case(x, [x[1], 1, k, k]);
    let groups = |c: &Case| c.x[1];
    let cases = [
        (
            "7x7 same",
            Case {
                pad: [3, 3],
                ..dw([2, 5, 9, 8], 7)
            },
        ),
        (
            "3x3 stride 2",
            Case {
                pad: [1, 1],
                stride: [2, 2],
                ..dw([3, 4, 9, 10], 3)
            },
        ),
        (
            "5x5 stride 2 relu",
            Case {
                pad: [2, 2],
                stride: [2, 2],
                relu: true,
                ..dw([2, 3, 11, 7], 5)
            },
        ),
        (
            "dilated",
            Case {
                pad: [2, 1],
                dilation: [2, 2],
                ..dw([2, 3, 8, 8], 3)
            },
        ),
        (
            "no bias, frozen input",
            Case {
                bias: false,
                input_grad: false,
                ..dw([1, 6, 5, 6], 3)
            },
        ),
        (
            "reach past the image",
            Case {
                pad: [3, 3],
                ..dw([2, 2, 2, 3], 7)
            },
        ),
        ("unpadded", dw([2, 3, 6, 6], 3)),
        (
            "3x3 same relu, rows wider than a block, odd height",
            Case {
                pad: [1, 1],
                relu: true,
                ..dw([2, 3, 7, 37], 3)
            },
        ),
        (
            "pads wider than the image",
            Case {
                pad: [3, 3],
                ..dw([1, 2, 2, 2], 7)
            },
        ),
    ];
    for (name, c) in cases {
        let c = Case {
            groups: groups(&c),
            ..c
        };
        check(name, c);
    }
}

#[test]
fn one_image_no_bias_and_an_input_without_gradient_match() {
    check(
        "one image",
        Case {
            pad: [1, 1],
            ..case([1, 2, 6, 6], [3, 2, 3, 3])
        },
    );
    check(
        "no bias, input not trained",
        Case {
            bias: false,
            input_grad: false,
            ..case([3, 1, 8, 8], [4, 1, 3, 3])
        },
    );
}

#[test]
fn a_fused_relu_matches_conv_then_relu_in_values_and_gradients() {
    check(
        "3x3 pad 1 + ReLU",
        Case {
            pad: [1, 1],
            relu: true,
            ..case([4, 3, 7, 6], [5, 3, 3, 3])
        },
    );
    check(
        "pointwise + ReLU",
        Case {
            relu: true,
            ..case([3, 4, 5, 5], [6, 4, 1, 1])
        },
    );
    check(
        "one image, no bias + ReLU",
        Case {
            pad: [1, 1],
            bias: false,
            relu: true,
            ..case([1, 2, 6, 6], [3, 2, 3, 3])
        },
    );
}

#[test]
fn inference_on_flex_matches_the_generic_convolution() {
    let mut rng = SeededRng::new(9);
    for (x_dims, w_dims, options) in [
        (
            [2, 3, 9, 8],
            [4, 3, 3, 3],
            ConvOptions::new([2, 1], [1, 1], [1, 1], 1),
        ),
        (
            [1, 4, 6, 6],
            [4, 1, 3, 3],
            ConvOptions::new([1, 1], [1, 1], [1, 1], 4),
        ),
        (
            [3, 5, 4, 4],
            [2, 5, 1, 1],
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ),
    ] {
        let device = Default::default();
        let make = |dims: Vec<usize>, rng: &mut SeededRng| {
            let n = dims.iter().product();
            TensorData::new(rng.values(n, 1.0), dims)
        };
        let x = Tensor::<Flex, 4>::from_data(make(x_dims.to_vec(), &mut rng), &device);
        let w = Tensor::<Flex, 4>::from_data(make(w_dims.to_vec(), &mut rng), &device);
        let b = Tensor::<Flex, 1>::from_data(make(vec![w_dims[0]], &mut rng), &device);
        let generic = conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone());
        for relu in [false, true] {
            let settings = zoo_net::conv::ConvSettings {
                relu,
                ..(&options).into()
            };
            let fast = zoo_net::conv::conv2d(&x, &w, Some(&b), &settings).expect("flex f32");
            let expected = if relu {
                burn::tensor::activation::relu(generic.clone())
            } else {
                generic.clone()
            };
            close(
                &format!("{x_dims:?} relu {relu}"),
                &host(fast),
                &host(expected),
            );
        }
    }
}

/// Large images run in blocks of output rows (the first and last blocks meet the padding);
/// inside a rayon task zoo's own kernel runs whatever the batch and the core count.
#[test]
fn inference_in_blocks_of_output_rows_matches_the_generic_convolution() {
    let mut rng = SeededRng::new(71);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // The last case follows others on the same threads: its blocks reuse their scratch.
    let cases = [
        ([3, 64, 30, 30], 3, 1, 1),
        ([2, 64, 31, 31], 3, 2, 1),
        ([2, 16, 45, 45], 5, 2, 2),
    ];
    for (x_dims, kernel, stride, pad) in cases {
        let device = Default::default();
        let make = |dims: Vec<usize>, rng: &mut SeededRng| {
            let n = dims.iter().product();
            TensorData::new(rng.values(n, 1.0), dims)
        };
        let x = Tensor::<Flex, 4>::from_data(make(x_dims.to_vec(), &mut rng), &device);
        let w_dims = vec![8, x_dims[1], kernel, kernel];
        let w = Tensor::<Flex, 4>::from_data(make(w_dims, &mut rng), &device);
        let b = Tensor::<Flex, 1>::from_data(make(vec![8], &mut rng), &device);
        let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
        let settings = zoo_net::conv::ConvSettings {
            relu: true,
            ..(&options).into()
        };
        let fast = pool.install(|| zoo_net::conv::conv2d(&x, &w, Some(&b), &settings));
        let generic = burn::tensor::activation::relu(conv2d(x, w, Some(b), options));
        let name = format!("{x_dims:?} {kernel}x{kernel} stride {stride} pad {pad}");
        close(&name, &host(fast.expect("flex f32")), &host(generic));
    }
}

/// One image on two cores: its blocks of output rows (per group) spread over the cores, each
/// gemm on one, and a Winograd layer's output-channel chunks too; a pointwise layer with one
/// block keeps gemm's own threads. Each against burn's convolution.
#[test]
fn one_image_spreads_its_blocks_and_chunks_over_the_cores() {
    let mut rng = SeededRng::new(72);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // (x, [c_out, kernel], stride, pad, groups): AlexNet's first two layers in small, a
    // Winograd layer with four chunks and a last short one, a pointwise layer.
    let cases = [
        ([1, 3, 195, 195], [16, 11], 4, 0, 1),
        ([1, 64, 27, 27], [32, 5], 1, 2, 2),
        ([1, 24, 13, 13], [72, 3], 1, 1, 1),
        ([1, 32, 9, 9], [40, 1], 1, 0, 1),
    ];
    for (x_dims, [c_out, kernel], stride, pad, groups) in cases {
        let device = Default::default();
        let make = |dims: Vec<usize>, rng: &mut SeededRng| {
            let n = dims.iter().product();
            TensorData::new(rng.values(n, 1.0), dims)
        };
        let x = Tensor::<Flex, 4>::from_data(make(x_dims.to_vec(), &mut rng), &device);
        let w_dims = vec![c_out, x_dims[1] / groups, kernel, kernel];
        let w = Tensor::<Flex, 4>::from_data(make(w_dims, &mut rng), &device);
        let b = Tensor::<Flex, 1>::from_data(make(vec![c_out], &mut rng), &device);
        let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], groups);
        for relu in [false, true] {
            let settings = zoo_net::conv::ConvSettings {
                relu,
                ..(&options).into()
            };
            let fast = pool.install(|| zoo_net::conv::conv2d(&x, &w, Some(&b), &settings));
            let mut generic = conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone());
            if relu {
                generic = burn::tensor::activation::relu(generic);
            }
            let name =
                format!("{x_dims:?} -> {c_out}x{kernel}x{kernel} groups {groups} relu {relu}");
            close(&name, &host(fast.expect("flex f32")), &host(generic));
        }
    }
}

/// 3x3 stride-1 convolutions with more than 16 output channels run by Winograd's F(2x2, 3x3):
/// odd and even sizes (a last half tile), no, symmetric and asymmetric padding, several tile
/// blocks, with and without bias and ReLU, new weights of a shape already seen, against the
/// direct convolution of the padded input.
#[test]
fn winograd_convolutions_match_the_generic_convolution() {
    inference_matches_the_padded_convolution(&[
        ([2, 8, 9, 9], [24, 3, 3], [1, 1, 1, 1]),
        ([1, 16, 8, 11], [20, 3, 3], [0, 0, 0, 0]),
        ([2, 32, 27, 27], [64, 3, 3], [1, 1, 1, 1]),
        ([1, 64, 55, 55], [16, 3, 3], [1, 1, 1, 1]),
        ([2, 8, 10, 7], [17, 3, 3], [1, 0, 2, 1]),
    ]);
}

/// Stride-1 convolutions with at most 16 output channels run zoo's direct kernel
/// (`conv/direct.rs`): the MNIST CNN's two 5x5 layers, output channels that do not fill a
/// register block, rows wider than two blocks with a tail, asymmetric pads, 7x7 and 1x3 filters.
#[test]
fn few_channel_convolutions_match_the_generic_convolution() {
    inference_matches_the_padded_convolution(&[
        ([3, 1, 28, 28], [8, 5, 5], [2, 2, 2, 2]),
        ([2, 8, 14, 14], [16, 5, 5], [2, 2, 2, 2]),
        ([2, 3, 9, 37], [5, 3, 3], [1, 0, 2, 1]),
        ([1, 2, 6, 5], [3, 7, 7], [3, 3, 3, 3]),
        ([2, 4, 8, 17], [16, 1, 3], [0, 1, 0, 1]),
    ]);
}

/// zoo's inference convolution of each `(x dims, [c_out, kh, kw], pads)` against burn's of the
/// padded input, with and without bias and ReLU, the weights scaled between runs.
fn inference_matches_the_padded_convolution(cases: &[([usize; 4], [usize; 3], [usize; 4])]) {
    let mut rng = SeededRng::new(33);
    let device = Default::default();
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let make = |dims: Vec<usize>, rng: &mut SeededRng| {
        let n = dims.iter().product();
        TensorData::new(rng.values(n, 1.0), dims)
    };
    for &(x_dims, [c_out, kh, kw], pads) in cases {
        let x = Tensor::<Flex, 4>::from_data(make(x_dims.to_vec(), &mut rng), &device);
        let w_dims = vec![c_out, x_dims[1], kh, kw];
        let w = Tensor::<Flex, 4>::from_data(make(w_dims, &mut rng), &device);
        let b = Tensor::<Flex, 1>::from_data(make(vec![c_out], &mut rng), &device);
        let [top, left, bottom, right] = pads;
        let padded = x.clone().pad(
            [(top, bottom), (left, right)],
            burn::tensor::ops::PadMode::Constant(0.0),
        );
        let plain = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        // The same weights again (a hit of Winograd's transform cache), then new ones.
        for (bias, relu, scale) in [(true, false, 1.0), (false, true, 1.0), (true, true, -0.5)] {
            let w = w.clone() * scale;
            let settings = zoo_net::conv::ConvSettings {
                stride: [1, 1],
                pads,
                dilation: [1, 1],
                groups: 1,
                relu,
            };
            let bias = bias.then(|| b.clone());
            // In a one-thread pool, as an image-by-image task runs it (each gemm on one core).
            let fast =
                one_thread.install(|| zoo_net::conv::conv2d(&x, &w, bias.as_ref(), &settings));
            let fast = fast.expect("flex f32");
            let mut expected = conv2d(padded.clone(), w.clone(), bias, plain.clone());
            if relu {
                expected = burn::tensor::activation::relu(expected);
            }
            let name = format!("{x_dims:?} -> {c_out}x{kh}x{kw} pads {pads:?} relu {relu}");
            close(&name, &host(fast), &host(expected));
        }
    }
}

#[test]
fn values_that_are_not_f32_take_the_generic_path() {
    let x =
        Tensor::<Flex, 4>::zeros([1, 1, 3, 3], &Default::default()).cast(burn::tensor::DType::F64);
    let w =
        Tensor::<Flex, 4>::zeros([1, 1, 1, 1], &Default::default()).cast(burn::tensor::DType::F64);
    let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    assert!(zoo_net::conv::conv2d(&x, &w, None, &(&options).into()).is_none());
}

/// Output, mean, biased variance, then the gradients of x, scale and bias.
fn batch_norm(dims: [usize; 4], fused: bool, relu: bool) -> Vec<Vec<f32>> {
    const EPS: f32 = 1e-5;
    let mut rng = SeededRng::new(23);
    let c = dims[1];
    let x = tensor(&rng.values(dims.iter().product(), 2.0), dims, true);
    let scale = tensor(&rng.values(c, 1.0), [c], true);
    let bias = tensor(&rng.values(c, 1.0), [c], true);
    let (y, mean, var) = if fused {
        let out = zoo_net::batch_norm_train::batch_norm_train(&x, &scale, &bias, EPS, relu)
            .expect("the fused op takes f32 flex");
        (out.y, out.mean, out.var)
    } else {
        let per_channel = |t: Tensor<B, 4>| t.mean_dim(0).mean_dim(2).mean_dim(3);
        let mean = per_channel(x.clone());
        let centred = x.clone() - mean.clone();
        let var = per_channel(centred.clone().powi_scalar(2));
        let y = centred / (var.clone() + EPS as f64).sqrt() * scale.clone().reshape([1, c, 1, 1])
            + bias.clone().reshape([1, c, 1, 1]);
        let y = if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
        (y, host(mean.inner()), host(var.inner()))
    };
    let probe = Tensor::<B, 4>::from_data(
        TensorData::new(rng.values(dims.iter().product(), 1.0), dims),
        &Default::default(),
    );
    let grads = (y.clone() * probe).sum().backward();
    vec![
        host(y.inner()),
        mean,
        var,
        host(x.grad(&grads).unwrap()),
        host(scale.grad(&grads).unwrap()),
        host(bias.grad(&grads).unwrap()),
    ]
}

#[test]
fn batch_norm_with_batch_statistics_matches_the_composed_formula() {
    for relu in [false, true] {
        for dims in [[4, 3, 5, 6], [1, 2, 3, 3], [6, 5, 1, 1]] {
            let (fused, composed) = (batch_norm(dims, true, relu), batch_norm(dims, false, relu));
            let parts = [
                "output",
                "mean",
                "variance",
                "x grad",
                "scale grad",
                "bias grad",
            ];
            for ((a, b), part) in fused.iter().zip(&composed).zip(parts) {
                close(&format!("{dims:?} relu {relu} {part}"), a, b);
            }
        }
    }
}

/// Output and input gradient of max pooling: zoo's, or burn's over an input padded with -inf.
fn max_pool(
    dims: [usize; 4],
    spec: &zoo_onnx::PoolSpec,
    pads: [usize; 4],
    extra: [usize; 2],
    zoo: bool,
) -> Vec<Vec<f32>> {
    let mut rng = SeededRng::new(31);
    let x = tensor(&rng.values(dims.iter().product(), 3.0), dims, true);
    let y = if zoo {
        zoo_net::max_pool::max_pool(&x, spec, pads, extra).expect("flex f32")
    } else {
        let padded = x.clone().pad(
            [(pads[0], pads[2] + extra[0]), (pads[1], pads[3] + extra[1])],
            burn::tensor::ops::PadMode::Constant(f32::NEG_INFINITY),
        );
        burn::tensor::module::max_pool2d(
            padded,
            spec.kernel,
            spec.strides,
            [0, 0],
            spec.dilations,
            false,
        )
    };
    let probe = Tensor::<B, 4>::from_data(
        TensorData::new(rng.values(y.dims().iter().product(), 1.0), y.dims()),
        &Default::default(),
    );
    let grads = (y.clone() * probe).sum().backward();
    vec![host(y.inner()), host(x.grad(&grads).unwrap())]
}

#[test]
fn max_pooling_matches_burn_with_padding_overlap_and_ceil_mode() {
    let spec = |k: usize, s: usize| zoo_onnx::PoolSpec {
        kernel: [k, k],
        strides: [s, s],
        dilations: [1, 1],
        padding: zoo_onnx::Padding::Explicit([0; 4]),
        ceil_mode: false,
    };
    for (name, dims, spec, pads, extra) in [
        ("2x2 stride 2", [3, 4, 8, 6], spec(2, 2), [0; 4], [0; 2]),
        (
            "3x3 stride 2 pad 1",
            [2, 3, 9, 7],
            spec(3, 2),
            [1, 1, 1, 1],
            [0; 2],
        ),
        (
            "3x3 stride 2 ceil mode",
            [2, 2, 12, 12],
            spec(3, 2),
            [0; 4],
            [1, 1],
        ),
        (
            "3x3 stride 1 pad 1",
            [1, 2, 5, 5],
            spec(3, 1),
            [1, 1, 1, 1],
            [0; 2],
        ),
        // Rows long enough for whole 16-lane vectors of the strided reads.
        (
            "3x3 stride 2 pad 1, wide rows",
            [1, 2, 7, 75],
            spec(3, 2),
            [1, 1, 1, 1],
            [0; 2],
        ),
        (
            "3x3 stride 3, wide rows",
            [1, 2, 7, 50],
            spec(3, 3),
            [0; 4],
            [0; 2],
        ),
        // Small planes go several to a task at inference, the last task short.
        (
            "2x2 stride 2, many small planes",
            [2, 300, 6, 6],
            spec(2, 2),
            [0; 4],
            [0; 2],
        ),
        (
            "3x3 stride 3, many small planes",
            [3, 150, 14, 14],
            spec(3, 3),
            [0; 4],
            [0; 2],
        ),
    ] {
        let (ours, burn) = (
            max_pool(dims, &spec, pads, extra, true),
            max_pool(dims, &spec, pads, extra, false),
        );
        close(&format!("{name} output"), &ours[0], &burn[0]);
        close(&format!("{name} input gradient"), &ours[1], &burn[1]);
        // Inference on flex (values only: separable maxima) gives the same values.
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(SeededRng::new(31).values(dims.iter().product(), 3.0), dims),
            &Default::default(),
        );
        let inference = zoo_net::max_pool::max_pool(&x, &spec, pads, extra).expect("flex f32");
        close(&format!("{name} inference"), &host(inference), &burn[0]);
    }
}

#[test]
fn asymmetric_padding_matches_a_convolution_of_the_padded_input() {
    let mut rng = SeededRng::new(47);
    let (x_values, w_values) = (
        rng.values(2 * 3 * 9 * 8, 1.0),
        rng.values(4 * 3 * 7 * 7, 0.5),
    );
    let run = |zoo: bool| {
        let x = tensor(&x_values, [2, 3, 9, 8], true);
        let w = tensor(&w_values, [4, 3, 7, 7], true);
        let y = if zoo {
            let settings = zoo_net::conv::ConvSettings {
                stride: [2, 2],
                pads: [2, 1, 3, 2],
                dilation: [1, 1],
                groups: 1,
                relu: false,
            };
            zoo_net::conv::conv2d(&x, &w, None, &settings).expect("flex f32")
        } else {
            let padded = x
                .clone()
                .pad([(2, 3), (1, 2)], burn::tensor::ops::PadMode::Constant(0.0));
            conv2d(
                padded,
                w.clone(),
                None,
                ConvOptions::new([2, 2], [0, 0], [1, 1], 1),
            )
        };
        let grads = (y.clone() * y.clone()).sum().backward();
        [
            host(y.inner()),
            host(x.grad(&grads).unwrap()),
            host(w.grad(&grads).unwrap()),
        ]
    };
    let (ours, burn) = (run(true), run(false));
    for (part, (a, b)) in ["output", "x grad", "w grad"]
        .iter()
        .zip(ours.iter().zip(&burn))
    {
        close(&format!("asymmetric pads {part}"), a, b);
    }
}

#[test]
fn concatenation_matches_tensor_cat_for_two_to_five_inputs() {
    let mut rng = SeededRng::new(53);
    for (count, axis) in [(2, 1), (3, 1), (4, 2), (5, 1), (2, 0)] {
        let dims: Vec<[usize; 4]> = (0..count)
            .map(|i| {
                let mut d = [3, 2, 4, 5];
                d[axis] = i + 1;
                d
            })
            .collect();
        let values: Vec<Vec<f32>> = dims
            .iter()
            .map(|d| rng.values(d.iter().product(), 1.0))
            .collect();
        let run = |zoo: bool| {
            let parts: Vec<Tensor<B, 4>> = values
                .iter()
                .zip(&dims)
                .map(|(v, d)| tensor(v, *d, true))
                .collect();
            let y = if zoo {
                zoo_net::concat::concat(parts.clone(), axis)
            } else {
                Tensor::cat(parts.clone(), axis)
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            let mut out = vec![host(y.inner())];
            out.extend(parts.iter().map(|p| host(p.grad(&grads).unwrap())));
            out
        };
        let (ours, burn) = (run(true), run(false));
        for (i, (a, b)) in ours.iter().zip(&burn).enumerate() {
            close(&format!("{count} parts on axis {axis}, part {i}"), a, b);
        }
        let inference: Vec<Tensor<Flex, 4>> = values
            .iter()
            .zip(&dims)
            .map(|(v, d)| Tensor::from_data(TensorData::new(v.clone(), *d), &Default::default()))
            .collect();
        let flex_cat = zoo_net::concat::concat(inference, axis);
        close(
            &format!("{count} parts on axis {axis}, inference"),
            &host(flex_cat),
            &burn[0],
        );
    }
}

/// The kernels built for narrower targets (what CPUs without AVX-512, or without AVX2, run)
/// pass this file's tests too.
#[test]
fn the_narrower_kernels_pass_these_tests_too() {
    support::narrower_kernels::run_every_narrower_copy("the_narrower_kernels_pass_these_tests_too");
}

/// A fully connected layer at a batch of one to four images on flex (zoo's matrix-vector
/// kernel) gives burn's `x @ w^T + b`; five rows or autodiff go back to burn.
#[test]
fn few_rows_fully_connected_matches_the_matrix_product() {
    use zoo_net::kernels::few_rows::few_rows_linear;
    let device = Default::default();
    for (rows, k, c) in [
        (1, 1, 1),
        (1, 37, 130),
        (2, 1000, 65),
        (4, 9, 3),
        (3, 256, 200),
    ] {
        let mut rng = SeededRng::new((rows * k + c) as u64);
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new(rng.values(rows * k, 1.0), [rows, k]),
            &device,
        );
        let w =
            Tensor::<Flex, 2>::from_data(TensorData::new(rng.values(c * k, 1.0), [c, k]), &device);
        let b = Tensor::<Flex, 1>::from_data(TensorData::new(rng.values(c, 1.0), [c]), &device);
        let expected = x.clone().matmul(w.clone().transpose());
        let got = few_rows_linear(&x, &w, None).expect("served");
        close("few rows, no bias", &host(got), &host(expected.clone()));
        let got = few_rows_linear(&x, &w, Some(&b)).expect("served");
        close(
            "few rows, bias",
            &host(got),
            &host(expected + b.unsqueeze()),
        );
    }
    let x = Tensor::<Flex, 2>::zeros([5, 3], &device);
    assert!(few_rows_linear(&x, &Tensor::zeros([2, 3], &device), None).is_none());
    let x = Tensor::<Autodiff<Flex>, 2>::zeros([1, 3], &device);
    assert!(few_rows_linear(&x, &Tensor::zeros([2, 3], &device), None).is_none());
}
