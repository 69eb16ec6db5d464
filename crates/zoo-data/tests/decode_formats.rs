//! Every format the loader promises, from committed fixtures (scripts/make-image-fixtures.py).

use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/images")
        .join(name)
}

#[test]
fn every_supported_format_decodes() {
    for name in [
        "progressive.jpg",
        "cmyk.jpg",
        "plain.jpeg",
        "rgba.png",
        "palette.gif",
        "image.bmp",
        "image.webp",
        "image.tiff",
        "gray.png",
        "sixteen-bit.png",
    ] {
        let img = zoo_data::decode(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(img.width() > 0, "{name}");
    }
}

#[test]
fn exif_orientation_is_applied() {
    let img = zoo_data::decode(&fixture("exif-rotated.jpg")).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (16, 24),
        "stored 24x16 with orientation 6"
    );
}

#[test]
fn cmyk_jpeg_becomes_the_same_rgb() {
    let rgb = zoo_data::decode(&fixture("plain.jpeg")).unwrap().to_rgb8();
    let cmyk = zoo_data::decode(&fixture("cmyk.jpg")).unwrap().to_rgb8();
    let diff: f64 = rgb
        .as_raw()
        .iter()
        .zip(cmyk.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / rgb.as_raw().len() as f64;
    assert!(diff < 12.0, "mean abs difference {diff}");
}

#[test]
fn sixteen_bit_and_alpha_convert_to_model_channels() {
    let p = zoo_cards::find("alexnet").unwrap().preprocessing;
    for name in ["sixteen-bit.png", "rgba.png", "gray.png"] {
        let v = zoo_data::preprocess(&zoo_data::decode(&fixture(name)).unwrap(), &p);
        assert_eq!(v.len(), 3 * 224 * 224, "{name}");
        assert!(v.iter().all(|x| x.is_finite()));
    }
    // The 16-bit ramp spans black to white: after scaling to 8 bits both ends are present.
    let gray = zoo_data::decode(&fixture("sixteen-bit.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(gray.get_pixel(0, 0).0[0], 0);
    assert_eq!(gray.get_pixel(19, 0).0[0], 255);
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    for name in ["corrupt.jpg", "text.jpg"] {
        let err = zoo_data::decode(&fixture(name))
            .expect_err(name)
            .to_string();
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn decompression_bombs_are_refused() {
    // A valid PNG header claiming 100000 x 100000 pixels.
    let dir = std::env::temp_dir().join(format!("zoo-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bomb.png");
    let img = image::GrayImage::new(1, 1);
    img.save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(zoo_data::decode(&path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A PNG whose header claims 16384x16384 16-bit RGBA (2 GiB to decode) is refused from its
/// header, before any pixel buffer is allocated.
#[test]
fn a_png_declaring_gigabytes_is_refused_from_its_header() {
    let dir = std::env::temp_dir().join(format!("zoo-png-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bomb.png");
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_pixel(
        1,
        1,
        image::Rgba([1, 2, 3, 4]),
    );
    img.save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // IHDR data starts at byte 16: width, height (big-endian); its CRC covers bytes 12..29.
    bytes[16..20].copy_from_slice(&16_384u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&16_384u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = zoo_data::decode(&path).unwrap_err().to_string();
    assert!(e.contains("over the limits"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_jpeg_cut_short_is_unreadable_not_silently_gray() {
    let dir = std::env::temp_dir().join(format!("zoo-cut-jpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let whole = dir.join("whole.jpg");
    image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    })
    .save(&whole)
    .unwrap();
    assert!(zoo_data::decode(&whole).is_ok());
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 5]).unwrap();
    let err = zoo_data::decode(&cut).expect_err("a cut JPEG").to_string();
    assert!(
        err.contains("cut.jpg") && err.contains("truncated JPEG"),
        "{err}"
    );
    // A trailer after the end-of-image marker (as some cameras write) is fine.
    let trailer = dir.join("trailer.jpg");
    let mut with_trailer = bytes.clone();
    with_trailer.extend_from_slice(&[0u8; 300]);
    std::fs::write(&trailer, &with_trailer).unwrap();
    assert!(zoo_data::decode(&trailer).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// JPEG bytes of a smooth `w`x`h` picture.
fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
    });
    let mut bytes = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    bytes
}

/// Cameras put a small JPEG thumbnail, with its own end-of-image marker, in the EXIF segment
/// near the start of the file: a photo cut after it still "ends" with FF D9 somewhere in its
/// tail, yet the main image is missing. Its structure says so; progressive scans are walked
/// the same way.
#[test]
fn a_cut_photo_with_an_exif_thumbnail_is_still_truncated() {
    let dir = std::env::temp_dir().join(format!("zoo-cut-exif-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let thumbnail = jpeg_bytes(16, 12);
    let main = jpeg_bytes(200, 150);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&thumbnail);
    let mut photo = main[..2].to_vec();
    photo.extend_from_slice(&[0xFF, 0xE1]);
    photo.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    photo.extend_from_slice(&app1);
    photo.extend_from_slice(&main[2..]);
    let whole = dir.join("whole.jpg");
    std::fs::write(&whole, &photo).unwrap();
    let decoded = zoo_data::decode(&whole).expect("the whole photo decodes");
    assert_eq!((decoded.width(), decoded.height()), (200, 150));
    let cut_at = photo.len() * 2 / 5;
    assert!(
        cut_at > thumbnail.len() + 10,
        "the cut keeps the thumbnail's marker"
    );
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &photo[..cut_at]).unwrap();
    let err = zoo_data::decode(&cut).expect_err("a cut photo").to_string();
    assert!(err.contains("truncated JPEG"), "{err}");
    // Progressive JPEG (several scans): whole decodes, cut is truncated.
    let progressive = std::fs::read(fixture("progressive.jpg")).unwrap();
    let cut = dir.join("cut-progressive.jpg");
    std::fs::write(&cut, &progressive[..progressive.len() * 3 / 5]).unwrap();
    let err = zoo_data::decode(&cut).expect_err("a cut progressive JPEG");
    assert!(err.to_string().contains("truncated JPEG"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A FIFO named as an image would block its reader forever: refused without opening it.
#[cfg(unix)]
#[test]
fn a_fifo_named_like_an_image_is_refused_not_waited_on() {
    let dir = std::env::temp_dir().join(format!("zoo-fifo-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("photo.jpg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = zoo_data::decode(&fifo).expect_err("a FIFO").to_string();
    assert!(err.contains("regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
