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
            return Err(format!(
                "mean and std need {c} values for {}",
                format!("{:?}", self.color).to_lowercase()
            ));
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

impl std::str::FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(ResizeMode::Direct),
            "shorter-side-crop" => Ok(ResizeMode::ShorterSideCrop),
            _ => Err(format!(
                "`{s}`: expected direct or shorter-side-crop[:SHORTER]"
            )),
        }
    }
}

impl std::str::FromStr for Interpolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nearest" => Ok(Interpolation::Nearest),
            "bilinear" => Ok(Interpolation::Bilinear),
            "bicubic" => Ok(Interpolation::Bicubic),
            _ => Err(format!("`{s}`: expected nearest, bilinear or bicubic")),
        }
    }
}

impl std::str::FromStr for ColorOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rgb" => Ok(ColorOrder::Rgb),
            "bgr" => Ok(ColorOrder::Bgr),
            "gray" | "grey" => Ok(ColorOrder::Gray),
            _ => Err(format!("`{s}`: expected rgb, bgr or gray")),
        }
    }
}

/// A named recipe (`--preprocessing`): the colour order, scale, mean and std of a training
/// tradition, and its resize. The size stays the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// torchvision: RGB, x/255, ImageNet mean/std, shorter side to 256/224 of the crop.
    Imagenet,
    /// Caffe: BGR, 0..255 minus the ImageNet channel means, resized directly.
    Caffe,
    /// Inception/TF-slim: RGB, (x/255 - 0.5)/0.5, shorter side to 1/0.875 of the crop.
    Inception,
    /// RGB (or gray), x/255.
    Unit,
    /// RGB (or gray), 0..255.
    Raw,
}

/// torchvision's evaluation resize: shorter side 256 for a 224 crop.
const CROP_RATIO: f64 = 256.0 / 224.0;

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "imagenet" => Ok(Preset::Imagenet),
            "caffe" => Ok(Preset::Caffe),
            "inception" => Ok(Preset::Inception),
            "unit" => Ok(Preset::Unit),
            "raw" => Ok(Preset::Raw),
            _ => Err(format!(
                "`{s}`: expected imagenet, caffe, inception, unit or raw"
            )),
        }
    }
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Imagenet => "imagenet",
            Preset::Caffe => "caffe",
            Preset::Inception => "inception",
            Preset::Unit => "unit",
            Preset::Raw => "raw",
        }
    }

    /// The preset at `base`'s size (unit and raw keep a gray model gray).
    pub fn at_size_of(self, base: &Preprocessing) -> Preprocessing {
        let gray = base.color == ColorOrder::Gray;
        let (color, scale, mean, std): (ColorOrder, f32, Vec<f32>, Vec<f32>) = match self {
            Preset::Imagenet => (
                ColorOrder::Rgb,
                1.0 / 255.0,
                vec![0.485, 0.456, 0.406],
                vec![0.229, 0.224, 0.225],
            ),
            Preset::Caffe => (
                ColorOrder::Bgr,
                1.0,
                vec![103.939, 116.779, 123.68],
                vec![1.0; 3],
            ),
            Preset::Inception => (ColorOrder::Rgb, 1.0 / 255.0, vec![0.5; 3], vec![0.5; 3]),
            Preset::Unit | Preset::Raw => {
                let color = if gray {
                    ColorOrder::Gray
                } else {
                    ColorOrder::Rgb
                };
                let scale = if self == Preset::Unit {
                    1.0 / 255.0
                } else {
                    1.0
                };
                let c = color.channels();
                (color, scale, vec![0.0; c], vec![1.0; c])
            }
        };
        let crop = matches!(self, Preset::Imagenet | Preset::Inception);
        Preprocessing {
            resize: if crop {
                ResizeMode::ShorterSideCrop
            } else {
                ResizeMode::Direct
            },
            size: base.size,
            resize_shorter: crop.then(|| shorter_for(base.size, CROP_RATIO)),
            interpolation: Interpolation::Bilinear,
            color,
            scale,
            mean,
            std,
        }
    }
}

fn shorter_for(size: [u32; 2], ratio: f64) -> u32 {
    (f64::from(size[0].min(size[1])) * ratio).round() as u32
}

/// Changes to a recipe from the command line: a preset, then single fields over it. Fields
/// override the preset, the preset overrides the card or the file's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorOrder>,
    /// `[height, width]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[u32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeMode>,
    /// The `:SHORTER` of `--resize shorter-side-crop:SHORTER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_shorter: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpolation: Option<Interpolation>,
}

impl RecipeChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `base` with the preset, then the fields, applied; the result is validated.
    pub fn apply(&self, base: &Preprocessing) -> Result<Preprocessing, String> {
        let mut p = match self.preset {
            Some(preset) => preset.at_size_of(base),
            None => base.clone(),
        };
        if let Some(color) = self.color {
            let c = color.channels();
            if c != p.color.channels() && (self.mean.is_none() || self.std.is_none()) {
                return Err(format!(
                    "--color {} needs {c} value(s) in --mean and --std (the recipe has {})",
                    format!("{color:?}").to_lowercase(),
                    p.color.channels()
                ));
            }
            p.color = color;
        }
        if let Some(size) = self.size {
            // A crop keeps its ratio of shorter side to crop size.
            if let (ResizeMode::ShorterSideCrop, Some(s)) = (p.resize, p.resize_shorter) {
                let ratio = f64::from(s) / f64::from(p.size[0].min(p.size[1]).max(1));
                p.resize_shorter = Some(shorter_for(size, ratio));
            }
            p.size = size;
        }
        if let Some(resize) = self.resize {
            p.resize = resize;
            p.resize_shorter = match resize {
                ResizeMode::Direct => None,
                ResizeMode::ShorterSideCrop => Some(
                    self.resize_shorter
                        .or(p.resize_shorter)
                        .unwrap_or_else(|| shorter_for(p.size, CROP_RATIO)),
                ),
            };
        }
        if let Some(i) = self.interpolation {
            p.interpolation = i;
        }
        if let Some(s) = self.scale {
            p.scale = s;
        }
        // One value stands for every channel.
        let per_channel = |v: &Vec<f32>, c: usize| match v.as_slice() {
            [one] => vec![*one; c],
            _ => v.clone(),
        };
        if let Some(m) = &self.mean {
            p.mean = per_channel(m, p.color.channels());
        }
        if let Some(s) = &self.std {
            p.std = per_channel(s, p.color.channels());
        }
        if !p.scale.is_finite() || p.scale <= 0.0 {
            return Err(format!("--scale must be positive, not {}", p.scale));
        }
        p.validate()?;
        Ok(p)
    }

    /// The flags these changes came from, for the one-line recipe note.
    pub fn describe(&self) -> String {
        let list = |v: &[f32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let lower = |d: &dyn std::fmt::Debug| format!("{d:?}").to_lowercase();
        let mut parts = Vec::new();
        if let Some(p) = self.preset {
            parts.push(format!("--preprocessing {}", p.name()));
        }
        if let Some(s) = self.size {
            parts.push(format!("--size {}x{}", s[0], s[1]));
        }
        if let Some(r) = self.resize {
            let shorter = self
                .resize_shorter
                .map(|s| format!(":{s}"))
                .unwrap_or_default();
            let mode = match r {
                ResizeMode::Direct => "direct",
                ResizeMode::ShorterSideCrop => "shorter-side-crop",
            };
            parts.push(format!("--resize {mode}{shorter}"));
        }
        if let Some(i) = self.interpolation {
            parts.push(format!("--interpolation {}", lower(&i)));
        }
        if let Some(c) = self.color {
            parts.push(format!("--color {}", lower(&c)));
        }
        if let Some(s) = self.scale {
            parts.push(format!("--scale {s}"));
        }
        if let Some(m) = &self.mean {
            parts.push(format!("--mean {}", list(m)));
        }
        if let Some(s) = &self.std {
            parts.push(format!("--std {}", list(s)));
        }
        parts.join(" ")
    }
}

/// `R,G,B` (or one value for gray) as given to `--mean` and `--std`.
pub fn parse_channel_values(s: &str) -> Result<Vec<f32>, String> {
    let values: Vec<f32> = s
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            format!("`{s}`: expected numbers separated by commas, e.g. 0.485,0.456,0.406")
        })?;
    if values.len() != 1 && values.len() != 3 {
        return Err(format!("`{s}`: expected 3 values (R,G,B) or 1 (gray)"));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(format!("`{s}`: values must be finite"));
    }
    Ok(values)
}

/// `H,W`, `HxW` or one number for a square, as given to `--size`.
pub fn parse_size(s: &str) -> Result<[u32; 2], String> {
    let parts: Vec<&str> = s.split([',', 'x', 'X']).map(str::trim).collect();
    let n = |t: &str| {
        t.parse::<u32>()
            .ok()
            .filter(|&v| (1..=16_384).contains(&v))
            .ok_or_else(|| format!("`{s}`: expected H,W or HxW with sizes from 1 to 16384"))
    };
    match parts.as_slice() {
        [side] => Ok([n(side)?, n(side)?]),
        [h, w] => Ok([n(h)?, n(w)?]),
        _ => Err(format!("`{s}`: expected H,W or HxW, e.g. 224x224")),
    }
}

/// `direct`, `shorter-side-crop` or `shorter-side-crop:SHORTER`, as given to `--resize`.
pub fn parse_resize(s: &str) -> Result<(ResizeMode, Option<u32>), String> {
    match s.split_once(':') {
        None => Ok((s.parse()?, None)),
        Some((mode, shorter)) => {
            let mode: ResizeMode = mode.parse()?;
            let shorter = shorter
                .parse::<u32>()
                .ok()
                .filter(|&v| (1..=16_384).contains(&v))
                .ok_or_else(|| format!("`{s}`: SHORTER must be a size from 1 to 16384"))?;
            if mode == ResizeMode::Direct {
                return Err(format!("`{s}`: only shorter-side-crop takes :SHORTER"));
            }
            Ok((mode, Some(shorter)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Preprocessing {
        Preprocessing::default_for([3, 224, 224])
    }

    #[test]
    fn presets_give_their_traditions_at_the_models_size() {
        let imagenet = Preset::Imagenet.at_size_of(&base());
        assert_eq!(imagenet.mean, vec![0.485, 0.456, 0.406]);
        assert_eq!(imagenet.resize, ResizeMode::ShorterSideCrop);
        assert_eq!(imagenet.resize_shorter, Some(256));
        let caffe = Preset::Caffe.at_size_of(&Preprocessing::default_for([3, 227, 227]));
        assert_eq!(
            (caffe.color, caffe.scale, caffe.size),
            (ColorOrder::Bgr, 1.0, [227, 227])
        );
        let inception = Preset::Inception.at_size_of(&Preprocessing::default_for([3, 299, 299]));
        assert_eq!(inception.resize_shorter, Some(342));
        assert_eq!(inception.mean, vec![0.5; 3]);
        let gray = Preset::Raw.at_size_of(&Preprocessing::default_for([1, 28, 28]));
        assert_eq!(
            (gray.color, gray.scale, gray.mean.len()),
            (ColorOrder::Gray, 1.0, 1)
        );
        for p in [imagenet, caffe, inception, gray] {
            p.validate().unwrap();
        }
    }

    #[test]
    fn fields_override_the_preset_and_sizes_keep_the_crop_ratio() {
        let changes = RecipeChanges {
            preset: Some(Preset::Imagenet),
            mean: Some(vec![0.5, 0.5, 0.5]),
            size: Some([160, 160]),
            ..Default::default()
        };
        let p = changes.apply(&base()).unwrap();
        assert_eq!(p.mean, vec![0.5; 3]);
        assert_eq!(p.std, vec![0.229, 0.224, 0.225]);
        assert_eq!((p.size, p.resize_shorter), ([160, 160], Some(183)));
        assert_eq!(
            changes.describe(),
            "--preprocessing imagenet --size 160x160 --mean 0.5,0.5,0.5"
        );
        let explicit = RecipeChanges {
            resize: Some(ResizeMode::ShorterSideCrop),
            resize_shorter: Some(300),
            ..Default::default()
        };
        assert_eq!(explicit.apply(&base()).unwrap().resize_shorter, Some(300));
        assert!(RecipeChanges::default().apply(&base()).unwrap() == base());
    }

    #[test]
    fn inconsistent_changes_are_refused_with_the_flag_to_fix() {
        let gray = RecipeChanges {
            color: Some(ColorOrder::Gray),
            ..Default::default()
        };
        assert!(gray
            .apply(&base())
            .unwrap_err()
            .contains("--mean and --std"));
        let two = RecipeChanges {
            mean: Some(vec![0.5, 0.5]),
            ..Default::default()
        };
        assert!(two
            .apply(&base())
            .unwrap_err()
            .contains("mean and std need 3"));
        let one = RecipeChanges {
            mean: Some(vec![128.0]),
            ..Default::default()
        };
        assert_eq!(one.apply(&base()).unwrap().mean, vec![128.0; 3]);
        let crop = RecipeChanges {
            resize: Some(ResizeMode::ShorterSideCrop),
            resize_shorter: Some(100),
            ..Default::default()
        };
        assert!(crop.apply(&base()).is_err());
        let zero = RecipeChanges {
            std: Some(vec![0.0; 3]),
            ..Default::default()
        };
        assert!(zero.apply(&base()).is_err());
    }

    #[test]
    fn command_line_values_parse_or_say_what_is_expected() {
        assert_eq!(parse_size("224x224").unwrap(), [224, 224]);
        assert_eq!(parse_size("240,320").unwrap(), [240, 320]);
        assert_eq!(parse_size("96").unwrap(), [96, 96]);
        assert!(parse_size("0x3").is_err() && parse_size("a,b").is_err());
        assert_eq!(
            parse_resize("shorter-side-crop:256").unwrap(),
            (ResizeMode::ShorterSideCrop, Some(256))
        );
        assert!(parse_resize("direct:256").is_err());
        assert!(parse_resize("stretch").unwrap_err().contains("direct"));
        assert_eq!(parse_channel_values("1, 2,3").unwrap(), vec![1.0, 2.0, 3.0]);
        assert!(parse_channel_values("1,2").is_err());
        assert!("imagenette"
            .parse::<Preset>()
            .unwrap_err()
            .contains("imagenet, caffe"));
    }
}
