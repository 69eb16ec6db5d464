//! Test-time augmentation (`--tta` on `evaluate` and `predict`): each image is also run
//! mirrored and shifted, as training's `--augment` moves images, and the outputs of the views
//! are averaged (logits for zoo's network, the file's outputs for tract and ONNX Runtime).

/// One way of showing an image: mirrored or not, moved by `(dy, dx)` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub flip: bool,
    pub shift: (i64, i64),
}

/// The image itself only (no augmentation).
pub const PLAIN: &[View] = &[View {
    flip: false,
    shift: (0, 0),
}];

/// The four views `--tta` averages: as it is, mirrored, and moved by a sixteenth of the side
/// down-right and (mirrored) up-left: half of training's largest shift.
pub fn views([_, h, w]: [usize; 3]) -> Vec<View> {
    let d = (h.min(w) / 16).max(1) as i64;
    vec![
        View {
            flip: false,
            shift: (0, 0),
        },
        View {
            flip: true,
            shift: (0, 0),
        },
        View {
            flip: false,
            shift: (d, d),
        },
        View {
            flip: true,
            shift: (-d, -d),
        },
    ]
}

/// [`views`] with `--tta`, else the image alone.
pub fn views_for(tta: bool, chw: [usize; 3]) -> Vec<View> {
    match tta {
        true => views(chw),
        false => PLAIN.to_vec(),
    }
}

/// An engine's description, with the views averaged when there are several.
pub fn described(engine: String, views: usize) -> String {
    match views {
        0 | 1 => engine,
        n => format!("{engine}, test-time augmentation ({n} views averaged)"),
    }
}

/// The rows `run` gives for `block` (CHW images one after another), averaged over `views`.
pub fn averaged(
    block: &[f32],
    chw: [usize; 3],
    views: &[View],
    mut run: impl FnMut(&[f32]) -> anyhow::Result<Vec<Vec<f32>>>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    if views == PLAIN {
        return run(block);
    }
    let size = chw.iter().product::<usize>().max(1);
    let mut sum: Vec<Vec<f32>> = Vec::new();
    for view in views {
        let mut shown = block.to_vec();
        for image in shown.chunks_mut(size) {
            zoo_data::transform(image, chw, view.flip, view.shift);
        }
        let rows = run(&shown)?;
        if sum.is_empty() {
            sum = rows;
            continue;
        }
        for (total, row) in sum.iter_mut().zip(rows) {
            total.iter_mut().zip(row).for_each(|(t, v)| *t += v);
        }
    }
    let n = views.len() as f32;
    sum.iter_mut().flatten().for_each(|v| *v /= n);
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "network" whose row is the image's first pixel and its left-right asymmetry: the
    /// average is over the four views, each computed on the view, not on the image.
    #[test]
    fn rows_are_the_mean_over_the_views_of_each_view() {
        let chw = [1, 2, 32];
        let image: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let run = |block: &[f32]| -> anyhow::Result<Vec<Vec<f32>>> {
            Ok(block.chunks(64).map(|i| vec![i[0], i[31] - i[0]]).collect())
        };
        let plain = averaged(&image, chw, PLAIN, run).unwrap();
        assert_eq!(plain, [vec![0.0, 31.0]]);
        let views = views(chw);
        assert_eq!(views.len(), 4);
        let mut expected = [0.0f32; 2];
        for view in &views {
            let mut shown = image.clone();
            zoo_data::transform(&mut shown, chw, view.flip, view.shift);
            let row = run(&shown).unwrap().remove(0);
            expected[0] += row[0] / 4.0;
            expected[1] += row[1] / 4.0;
        }
        let two = [image.clone(), image].concat();
        let rows = averaged(&two, chw, &views, run).unwrap();
        assert_eq!(rows, [expected.to_vec(), expected.to_vec()]);
        assert_ne!(rows[0], plain[0], "the views differ from the image");
    }
}
