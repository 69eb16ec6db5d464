//! How raw images become the tensor a model was trained on.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Stretch to `size` (the Caffe recipe).
    Direct,
    /// Resize the shorter side to `resize_shorter`, then take the centre `size` crop.
    ShorterSideCrop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColorOrder {
    Rgb,
    Bgr,
    Gray,
}

impl ColorOrder {
    pub fn channels(self) -> usize {
        match self {
            ColorOrder::Gray => 1,
            _ => 3,
        }
    }
}

/// `value = (pixel_0_255 * scale - mean[c]) / std[c]`, channels in `color` order, NCHW.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    pub resize: ResizeMode,
    /// Target `[height, width]`.
    pub size: [u32; 2],
    /// Shorter-side length before the centre crop (only for `shorter-side-crop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_shorter: Option<u32>,
    pub interpolation: Interpolation,
    pub color: ColorOrder,
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Preprocessing {
    /// What zoo assumes for a model with no card and no zoo metadata: stretch to the input
    /// size, RGB (or gray for one channel), scale to 0..1, no mean/std.
    pub fn default_for(chw: [usize; 3]) -> Self {
        let color = if chw[0] == 1 {
            ColorOrder::Gray
        } else {
            ColorOrder::Rgb
        };
        Self {
            resize: ResizeMode::Direct,
            size: [chw[1] as u32, chw[2] as u32],
            resize_shorter: None,
            interpolation: Interpolation::Bilinear,
            color,
            scale: 1.0 / 255.0,
            mean: vec![0.0; color.channels()],
            std: vec![1.0; color.channels()],
        }
    }

    /// One line for tables and warnings.
    pub fn describe(&self) -> String {
        let resize = match self.resize {
            ResizeMode::Direct => format!("resize to {}x{}", self.size[1], self.size[0]),
            ResizeMode::ShorterSideCrop => format!(
                "shorter side to {}, centre crop {}x{}",
                self.resize_shorter.unwrap_or(self.size[0]),
                self.size[1],
                self.size[0]
            ),
        };
        format!(
            "{resize} ({:?}), {:?}, x{}, mean {:?}, std {:?}",
            self.interpolation, self.color, self.scale, self.mean, self.std
        )
        .to_lowercase()
    }

    pub fn validate(&self) -> Result<(), String> {
        let c = self.color.channels();
        if self.mean.len() != c || self.std.len() != c {
            return Err(format!("mean and std need {c} values for {:?}", self.color));
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err("std values must be finite and non-zero".into());
        }
        if self.size[0] == 0 || self.size[1] == 0 {
            return Err("size must be positive".into());
        }
        if self.resize == ResizeMode::ShorterSideCrop
            && self
                .resize_shorter
                .is_some_and(|s| s < self.size[0].min(self.size[1]))
        {
            return Err("resize_shorter must be at least the crop size".into());
        }
        Ok(())
    }
}
