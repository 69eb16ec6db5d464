//! Channels-last inputs (TensorFlow exports): the engines are fed NCHW images like zoo's
//! network and transpose them for a file that declares `[N, H, W, C]`.

/// Whether a declared input shape is `[N, H, W, C]` for images of `chw` (and not NCHW).
pub fn is_nhwc(declared: &[Option<i64>], chw: [usize; 3]) -> bool {
    let [c, h, w] = chw.map(|d| Some(d as i64));
    declared.len() == 4 && declared[1..] == [h, w, c] && declared[1..] != [c, h, w]
}

/// NCHW images (`n * C*H*W` values) in NHWC order.
pub fn to_nhwc(images: &[f32], chw: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = chw;
    let plane = h * w;
    let mut out = vec![0.0; images.len()];
    for (image, dst) in images.chunks(c * plane).zip(out.chunks_mut(c * plane)) {
        for ch in 0..c {
            for p in 0..plane {
                dst[p * c + ch] = image[ch * plane + p];
            }
        }
    }
    out
}
