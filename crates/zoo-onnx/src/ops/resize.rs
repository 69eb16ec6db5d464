//! Resampling of an image's spatial axes: Resize (opsets 10-19) and its predecessor Upsample.
//! Sizes are static, so each output row and column knows at import which input rows and
//! columns it reads and with which weights (nearest: one, linear: two, cubic: four); the
//! executor applies those taps along H, then along W.

use std::sync::Arc;

use super::{Attrs, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::shapes::ShapeCx;

/// How an output coordinate maps back to the input (`coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coordinates {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

/// Interpolation (`mode`), with nearest's rounding and cubic's coefficient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Interpolation {
    Nearest(Rounding),
    Linear,
    Cubic { a: f32, exclude_outside: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    PreferFloor,
    PreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    /// Read from an `Upsample` node (for messages).
    pub upsample: bool,
    pub interpolation: Interpolation,
    pub coordinates: Coordinates,
    /// Output `[H, W]`, from `sizes` or `floor(input * scales)` once the input is known.
    pub scales: Option<[f32; 2]>,
    pub sizes: Option<[usize; 2]>,
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Resize", resize).since(10),
    OpDef::new("Upsample", upsample).since(7),
];

fn mode(a: &Attrs) -> Result<Interpolation> {
    let rounding = match a.string("nearest_mode")?.as_deref() {
        None | Some("round_prefer_floor") => Rounding::PreferFloor,
        Some("round_prefer_ceil") => Rounding::PreferCeil,
        Some("floor") => Rounding::Floor,
        Some("ceil") => Rounding::Ceil,
        Some(other) => return Err(a.err(format!("nearest_mode `{other}` is not supported"))),
    };
    Ok(match a.string("mode")?.as_deref() {
        None | Some("nearest") => Interpolation::Nearest(rounding),
        Some("linear") | Some("bilinear") => Interpolation::Linear,
        Some("cubic") => Interpolation::Cubic {
            a: a.float("cubic_coeff_a", -0.75)?,
            exclude_outside: a.int("exclude_outside", 0)? != 0,
        },
        Some(other) => return Err(a.err(format!("mode `{other}` is not supported"))),
    })
}

fn coordinates(a: &Attrs, opset: i64) -> Result<Coordinates> {
    Ok(
        match a.string("coordinate_transformation_mode")?.as_deref() {
            // Opset 10 had no attribute and behaved as asymmetric.
            None if opset < 11 => Coordinates::Asymmetric,
            None | Some("half_pixel") => Coordinates::HalfPixel,
            Some("pytorch_half_pixel") => Coordinates::PytorchHalfPixel,
            Some("align_corners") => Coordinates::AlignCorners,
            Some("asymmetric") => Coordinates::Asymmetric,
            Some("tf_half_pixel_for_nn") => Coordinates::TfHalfPixelForNn,
            Some(other) => {
                return Err(a.err(format!(
                    "coordinate_transformation_mode `{other}` is not supported"
                )))
            }
        },
    )
}

/// Scales (4 values, N and C at 1) and sizes (4 values) to the spatial pair.
fn spatial<T: Copy + PartialEq>(s: &Settings, v: &[T], one: T, what: &str) -> Result<[T; 2]> {
    match v {
        [n, c, h, w] if *n == one && *c == one => Ok([*h, *w]),
        [_, _, h, w] if what == "sizes" => Ok([*h, *w]),
        _ => Err(s.err(format!(
            "its {what} must resize only H and W of an NCHW tensor"
        ))),
    }
}

fn resize(a: &Attrs, opset: i64) -> Result<Parsed> {
    if a.int("antialias", 0)? != 0 || a.has("axes") {
        return Err(a.err("`antialias` and `axes` are not supported"));
    }
    if a.string("keep_aspect_ratio_policy")?
        .is_some_and(|p| p != "stretch")
    {
        return Err(a.err("only keep_aspect_ratio_policy `stretch` is supported"));
    }
    let (interpolation, coordinates) = (mode(a)?, coordinates(a, opset)?);
    // Opset 10: (X, scales); 11 on: (X, roi, scales, sizes).
    let scales_at = if opset < 11 { 1 } else { 2 };
    Ok(Parsed::Bake(Arc::new(move |s: &Settings| {
        let floats = |i: usize| -> Result<Option<Vec<f32>>> {
            let Some(name) = s.input(i) else {
                return Ok(None);
            };
            match s.constants.get(name).and_then(|c| c.as_f32()) {
                Some([]) => Ok(None),
                Some(v) => Ok(Some(v.to_vec())),
                None => Err(s.err(format!("its scales `{name}` must be constant floats"))),
            }
        };
        let scales = floats(scales_at)?
            .map(|v| spatial(s, &v, 1.0, "scales"))
            .transpose()?;
        let sizes = s.ints(3, "sizes")?.filter(|v| !v.is_empty()).map(|v| {
            let v: Vec<usize> = v.iter().map(|&d| d.max(0) as usize).collect();
            spatial(s, &v, 0, "sizes")
        });
        let sizes = sizes.transpose()?;
        if scales.is_none() && sizes.is_none() {
            return Err(s.err("has neither scales nor sizes"));
        }
        Ok(Op::Resize(Resize {
            upsample: false,
            interpolation,
            coordinates,
            scales,
            sizes,
        }))
    })))
}

/// Upsample (deprecated at 10): scales as an attribute (7) or input 1 (9), asymmetric.
fn upsample(a: &Attrs, _: i64) -> Result<Parsed> {
    let interpolation = mode(a)?;
    let attr: Option<Vec<f32>> = a.floats("scales")?;
    Ok(Parsed::Bake(Arc::new(move |s: &Settings| {
        let v = match (&attr, s.input(1)) {
            (Some(v), _) => v.clone(),
            (None, Some(name)) => s
                .constants
                .get(name)
                .and_then(|c| c.as_f32())
                .map(<[f32]>::to_vec)
                .ok_or_else(|| s.err(format!("its scales `{name}` must be constant floats")))?,
            (None, None) => return Err(s.err("has no scales")),
        };
        Ok(Op::Resize(Resize {
            upsample: true,
            interpolation,
            coordinates: Coordinates::Asymmetric,
            scales: Some(spatial(s, &v, 1.0, "scales")?),
            sizes: None,
        }))
    })))
}

/// One output position's input indices and weights.
pub type Taps = Vec<(usize, f32)>;

impl Resize {
    pub fn onnx_type(&self) -> &'static str {
        if self.upsample {
            "Upsample"
        } else {
            "Resize"
        }
    }

    /// Output `[H, W]` for an input of `[H, W]`.
    pub fn output(&self, hw: [usize; 2]) -> [usize; 2] {
        match (self.sizes, self.scales) {
            (Some(s), _) => s,
            (None, Some(k)) => [0, 1].map(|i| (hw[i] as f32 * k[i]).floor() as usize),
            (None, None) => hw,
        }
    }

    /// For each output position along an axis of `input` values resized to `output`, the
    /// taps it reads.
    pub fn taps(&self, input: usize, output: usize, axis: usize) -> Vec<Taps> {
        let scale = match (self.sizes, self.scales) {
            (None, Some(k)) => k[axis],
            _ => output as f32 / input as f32,
        };
        (0..output)
            .map(|x| {
                let original = self.original(x as f32, scale, input, output);
                self.kernel(original, input)
            })
            .collect()
    }

    fn original(&self, x: f32, scale: f32, input: usize, output: usize) -> f32 {
        match self.coordinates {
            Coordinates::HalfPixel => (x + 0.5) / scale - 0.5,
            Coordinates::PytorchHalfPixel if output > 1 => (x + 0.5) / scale - 0.5,
            Coordinates::PytorchHalfPixel => 0.0,
            Coordinates::AlignCorners if output > 1 => {
                x * (input as f32 - 1.0) / (output as f32 - 1.0)
            }
            Coordinates::AlignCorners => 0.0,
            Coordinates::Asymmetric => x / scale,
            Coordinates::TfHalfPixelForNn => (x + 0.5) / scale,
        }
    }

    fn kernel(&self, x: f32, input: usize) -> Taps {
        let last = input as i64 - 1;
        let clamp = |i: i64| i.clamp(0, last) as usize;
        match self.interpolation {
            Interpolation::Nearest(r) => {
                let i = match r {
                    Rounding::PreferFloor if x.fract() == 0.5 => x.floor(),
                    Rounding::PreferCeil if x.fract() == 0.5 => x.ceil(),
                    Rounding::PreferFloor | Rounding::PreferCeil => x.round(),
                    Rounding::Floor => x.floor(),
                    Rounding::Ceil => x.ceil(),
                };
                vec![(clamp(i as i64), 1.0)]
            }
            Interpolation::Linear => {
                let x = x.clamp(0.0, last as f32);
                let x0 = x.floor();
                let f = x - x0;
                vec![(clamp(x0 as i64), 1.0 - f), (clamp(x0 as i64 + 1), f)]
            }
            Interpolation::Cubic { a, exclude_outside } => {
                let x0 = x.floor();
                let f = x - x0;
                let w = |d: f32| {
                    let d = d.abs();
                    if d <= 1.0 {
                        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
                    } else if d < 2.0 {
                        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let mut taps: Taps = (-1..=2)
                    .map(|k| {
                        let i = x0 as i64 + k;
                        let outside = i < 0 || i > last;
                        let weight = if exclude_outside && outside {
                            0.0
                        } else {
                            w(f - k as f32)
                        };
                        (clamp(i), weight)
                    })
                    .collect();
                if exclude_outside {
                    let sum: f32 = taps.iter().map(|t| t.1).sum();
                    taps.iter_mut().for_each(|t| t.1 /= sum);
                }
                taps
            }
        }
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        let x = cx.dims(0)?;
        cx.rank4(&x, "Resize's input")?;
        let [h, w] = self.output([x[2], x[3]]);
        if h == 0 || w == 0 {
            return Err(cx.err(format!("resizes {x:?} to nothing")));
        }
        let spatial_at = |c: Option<&crate::tensor::Constant>| {
            c.and_then(|c| c.as_i64())
                .map(|v| v.get(2..).map(<[i64]>::to_vec))
        };
        let probe = cx.node.input(3).and_then(|n| cx.folded.probes.get(n));
        if cx.is_batch_dependent(3) && spatial_at(probe) != spatial_at(cx.constant(3)) {
            cx.mark_fixed("Resize's output size follows the batch size");
        }
        Ok(vec![x[0], x[1], h, w])
    }
}
