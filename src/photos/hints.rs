//! Photo hints: advice about a decoded photo's focus, exposure and contrast. Never a refusal:
//! a photo with hints is accepted like any other; the hints only say how it could be better.
//!
//! Everything is measured on a small grayscale copy (longest side at most [`WORKING_SIDE`]),
//! each of its pixels the average of at most 4×4 source pixels under it, so the cost is a few
//! milliseconds and the memory a few hundred KiB whatever the photo's size (the decoded pixels
//! are only read). Working at a fixed size is also what makes the thresholds independent of
//! the original resolution: sharpness is judged as the photo looks at 512 pixels, half the
//! side the trainers work at (about 1 megapixel).
//!
//! - **Exposure** — the mean luminance, and how much of the picture is crushed to black or
//!   clipped to white: [`PhotoHint::TooDark`], [`PhotoHint::TooBright`].
//! - **Contrast** — the standard deviation of the luminance (RMS contrast):
//!   [`PhotoHint::LowContrast`]. Reported only when the exposure is fine: a dark or blown-out
//!   photo is necessarily flat, and its advice (light) is what the user needs.
//! - **Focus** — the variance of the Laplacian (3×3) of the working copy, relative to the same
//!   variance on copies [`COARSE_FACTOR`] and [`COARSE_FACTOR`]² times smaller:
//!   [`PhotoHint::Blurry`]. See [`BLURRY_RATIO`] for why it is a ratio.

use image::{DynamicImage, GenericImageView};

/// Something about a photo the user could do better; advice, never a reason to refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoHint {
    /// Out of focus or shaken: edges are soft at the size the photo is trained at.
    Blurry,
    /// Underexposed: the picture is dark overall, or mostly black.
    TooDark,
    /// Overexposed: the picture is bright overall, or mostly blown out to white.
    TooBright,
    /// Flat: little difference between light and dark (haze, fog, a washed-out picture).
    LowContrast,
}

/// The longest side of the grayscale copy the hints are measured on.
pub const WORKING_SIDE: u32 = 512;

/// A mean luminance (0–255) below this is too dark; well-exposed photos sit around 70–160.
pub const DARK_MEAN: f32 = 50.0;
/// A mean luminance above this is too bright.
pub const BRIGHT_MEAN: f32 = 205.0;
/// A pixel at or below this luminance is crushed to black.
pub const CRUSHED_AT_MOST: u8 = 8;
/// A pixel at or above this luminance is clipped to white.
pub const CLIPPED_AT_LEAST: u8 = 247;
/// Well over half the picture crushed (or clipped) is too dark (too bright) even when a few
/// bright (dark) areas lift the mean: a face against a lamp, a silhouette against a window.
/// Not just over half: a dark or white backdrop behind a well-lit face is a fine photo.
pub const MOSTLY: f32 = 0.6;
/// A luminance standard deviation (0–255) below this is low contrast. A well-exposed photo
/// is around 40–70; a face in fog or a washed-out picture drops under 20.
pub const LOW_CONTRAST_STD: f32 = 18.0;

/// How much smaller each of the coarse and the coarsest copies is than the one before, per side
/// (512 → 128 → 32 pixels).
pub const COARSE_FACTOR: usize = 4;
/// A photo is blurry when the Laplacian variance of the working copy (less its noise floor) is
/// below this fraction of the Laplacian variance of the coarse copy — or, for a blur so strong
/// that the coarse copy is soft too, when the same holds one scale down: the coarse copy
/// against the coarsest.
///
/// Why a ratio, not the usual absolute threshold on the Laplacian variance: the absolute
/// variance grows with the square of the contrast, so a sharp but dim photo would look blurry
/// and need a threshold per exposure; and a smooth gradient (no edges at all: the bot tests'
/// sample photos, a clear sky) has next to no Laplacian and would be "blurry" whatever the
/// threshold. Compared with itself at a coarser scale, a photo is sharp when its fine detail
/// keeps up with its coarse structure: for photo-like pictures the ratio is 0.25–0.5 whatever
/// the contrast, while a blur removes the fine scale long before the coarse one. A gradient
/// has no curvature at any scale, so it is never judged (see [`STRUCTURE_OVER_NOISE`]).
///
/// Calibrated on synthetic photos (the tests' overlapping shapes of all sizes with hard edges,
/// shading and grain; 640 to 6000 pixels wide, raw and as JPEG at quality 60 to 90) and
/// checked on two real photos: sharp ones measure 0.25–0.48. Blurred with a Gaussian of σ
/// pixels per 1024 pixels of width before the check: σ = 1 about 0.1, σ = 1.5 about 0.05,
/// σ = 2 about 0.03, σ = 4 to 6 about 0.01–0.025 (the coarse pair 0.08–0.15), σ = 12 to 24
/// below 0.02 on the coarse pair. So the threshold sits between σ = 1.5 and σ = 2 per 1024
/// pixels: edges a couple of pixels soft at the size the trainers see. A sharp subject on a
/// blurred background (a portrait-mode photo) measures 0.28, far from it.
///
/// Known limit: strong grain (noise of σ ≥ 2 levels at 1 megapixel) adds fine-scale variance
/// that a blur does not remove, so a grainy, moderately blurred photo can pass as sharp (a
/// heavily blurred one is still caught, by the coarse pair). Hints are advice: missing one is
/// better than flagging sharp photos.
pub const BLURRY_RATIO: f32 = 0.035;
/// Laplacian variance of the working copy that is there even in a perfectly smooth picture:
/// rounding the working copy to 8 bits adds 20/12 ≈ 1.7 (white rounding noise, 4-neighbour
/// kernel), compression and the photo's own 8 bits a little more. Subtracted before the
/// comparison, so a heavily blurred photo, whose fine scale is nothing but this floor, is not
/// taken for sharp.
pub const FINE_NOISE_FLOOR: f32 = 2.0;
/// The same for the coarse copy when it is compared with the coarsest one: JPEG's 8×8 blocks,
/// which line up with the coarse copy's pixels in a 1024-pixel photo (up to 4.8 measured on
/// the bot tests' gradients).
pub const COARSE_NOISE_FLOOR: f32 = 5.0;
/// Focus is judged on a pair of scales only when the coarser one has structure: a Laplacian
/// variance at least this many times the noise floor of the finer one (10 for the working copy
/// against the coarse one, 25 for the coarse against the coarsest). Below, there is nothing
/// to be in or out of focus (a flat wall, fog, a gradient, a photo too dark to show anything),
/// and a sharp but faint picture's detail would drown in the floor. A photo with anything in
/// it measures hundreds to thousands; the most blurred test photos still over 20 on the coarse
/// copy or 240 on the coarsest; the bot tests' sample gradients under 5 and under 1.5, so
/// they get no hint at all.
pub const STRUCTURE_OVER_NOISE: f32 = 5.0;

/// The hints for a decoded photo, in the order of [`PhotoHint`]'s variants; empty for a good
/// photo. Pure and cheap: at most 16 × [`WORKING_SIDE`]² pixel reads into a copy of at most
/// [`WORKING_SIDE`]² bytes, then a few passes over that copy.
///
/// [`PhotoHint::Blurry`] and [`PhotoHint::LowContrast`] may come together: a blurred photo
/// loses contrast too, and both pieces of advice hold. A picture with no structure at all (a
/// flat wall, fog) is only [`PhotoHint::LowContrast`]: nothing in it can be in or out of focus.
/// Exposure hints and [`PhotoHint::Blurry`] may come together too (the ratio does not depend
/// on brightness); [`PhotoHint::LowContrast`] never comes with an exposure hint.
pub fn hints_for(image: &DynamicImage) -> Vec<PhotoHint> {
    match Measurements::of(image) {
        Some(measured) => measured.hints(),
        None => Vec::new(),
    }
}

/// What the hints are decided from; see the thresholds above.
#[derive(Debug, Clone, Copy)]
struct Measurements {
    mean: f32,
    std: f32,
    /// Share of pixels at or below [`CRUSHED_AT_MOST`].
    crushed: f32,
    /// Share of pixels at or above [`CLIPPED_AT_LEAST`].
    clipped: f32,
    /// Laplacian variance of the working copy.
    fine: f32,
    /// Laplacian variance of the coarse copy ([`COARSE_FACTOR`] times smaller); `None` when
    /// the picture is too small to have one.
    coarse: Option<f32>,
    /// The same on a copy [`COARSE_FACTOR`] times smaller again.
    coarsest: Option<f32>,
}

impl Measurements {
    /// `None` for an image without pixels.
    fn of(image: &DynamicImage) -> Option<Self> {
        let gray = Gray::downscaled(image)?;
        let n = gray.pixels.len() as f64;
        let (mut sum, mut sum_sq, mut crushed, mut clipped) = (0u64, 0u64, 0u32, 0u32);
        for &p in &gray.pixels {
            sum += u64::from(p);
            sum_sq += u64::from(p) * u64::from(p);
            crushed += u32::from(p <= CRUSHED_AT_MOST);
            clipped += u32::from(p >= CLIPPED_AT_LEAST);
        }
        let mean = sum as f64 / n;
        let variance = (sum_sq as f64 / n - mean * mean).max(0.0);
        let fine = laplacian_variance(gray.width, gray.height, |x, y| {
            f32::from(gray.pixels[y * gray.width + x])
        });
        let coarse = reduced(gray.width, gray.height, &gray.pixels);
        let coarsest = coarse
            .as_ref()
            .and_then(|(width, height, pixels)| reduced(*width, *height, pixels));
        let variance_of = |picture: Option<(usize, usize, Vec<f32>)>| {
            picture.and_then(|(width, height, pixels)| {
                laplacian_variance(width, height, |x, y| pixels[y * width + x])
            })
        };
        Some(Self {
            mean: mean as f32,
            std: variance.sqrt() as f32,
            crushed: (f64::from(crushed) / n) as f32,
            clipped: (f64::from(clipped) / n) as f32,
            fine: fine.unwrap_or(0.0),
            coarse: variance_of(coarse),
            coarsest: variance_of(coarsest),
        })
    }

    fn hints(&self) -> Vec<PhotoHint> {
        let dark = self.mean < DARK_MEAN || self.crushed > MOSTLY;
        let bright = !dark && (self.mean > BRIGHT_MEAN || self.clipped > MOSTLY);
        let low_contrast = !dark && !bright && self.std < LOW_CONTRAST_STD;
        // Soft at the working size against the coarse structure, or so soft that even the coarse
        // copy is, against the coarsest structure (a blur that wiped out the coarse scale too).
        let soft = |detail: f32, noise: f32, structure: Option<f32>| {
            structure.is_some_and(|s| {
                s >= STRUCTURE_OVER_NOISE * noise && detail - noise < BLURRY_RATIO * s
            })
        };
        let blurry = soft(self.fine, FINE_NOISE_FLOOR, self.coarse)
            || self
                .coarse
                .is_some_and(|coarse| soft(coarse, COARSE_NOISE_FLOOR, self.coarsest));
        [
            (blurry, PhotoHint::Blurry),
            (dark, PhotoHint::TooDark),
            (bright, PhotoHint::TooBright),
            (low_contrast, PhotoHint::LowContrast),
        ]
        .into_iter()
        .filter_map(|(on, hint)| on.then_some(hint))
        .collect()
    }
}

/// Variance of the 4-neighbour Laplacian over the interior pixels; `None` when there are none.
fn laplacian_variance(
    width: usize,
    height: usize,
    at: impl Fn(usize, usize) -> f32,
) -> Option<f32> {
    if width < 3 || height < 3 {
        return None;
    }
    let (mut sum, mut sum_sq) = (0f64, 0f64);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let l = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y);
            sum += f64::from(l);
            sum_sq += f64::from(l) * f64::from(l);
        }
    }
    let n = ((width - 2) * (height - 2)) as f64;
    let mean = sum / n;
    Some((sum_sq / n - mean * mean).max(0.0) as f32)
}

/// The grayscale working copy: luminance (Rec. 709, as the `image` crate computes it), 8 bits.
struct Gray {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Gray {
    /// The image reduced to at most [`WORKING_SIDE`] on its longest side (never enlarged); `None`
    /// for an empty image.
    ///
    /// Each working pixel is the mean of an n×n grid of source pixels spread evenly over its
    /// footprint, n = min(⌈scale⌉, [`SAMPLES_PER_SIDE`]): the exact box average when the photo
    /// is at most 4 times the working size (2048 pixels), a supersampled one beyond. So the work
    /// is at most 16 × 512² pixel reads whatever the photo's size, a few milliseconds, where a
    /// full-resolution filter would read every one of 25 million pixels and cost nearly as much
    /// as the decode itself.
    fn downscaled(image: &DynamicImage) -> Option<Self> {
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return None;
        }
        let long = width.max(height);
        let (out_width, out_height) = if long <= WORKING_SIDE {
            (width, height)
        } else {
            let scale = f64::from(long) / f64::from(WORKING_SIDE);
            let side = |n: u32| ((f64::from(n) / scale).round() as u32).clamp(1, WORKING_SIDE);
            (side(width), side(height))
        };
        let per_side = (f64::from(long) / f64::from(WORKING_SIDE))
            .ceil()
            .clamp(1.0, SAMPLES_PER_SIDE as f64) as usize;
        let grid = Grid {
            width: width as usize,
            columns: sample_positions(width as usize, out_width as usize, per_side),
            lines: sample_positions(height as usize, out_height as usize, per_side),
            per_side,
            out_width: out_width as usize,
            out_height: out_height as usize,
        };
        let rgb = |r: f32, g: f32, b: f32| 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let wide = |v: u16| f32::from(v) / 257.0;
        let float = |v: f32| v.clamp(0.0, 1.0) * 255.0;
        let narrow = |v: u8| f32::from(v);
        let pixels = match image {
            DynamicImage::ImageLuma8(b) => grid.sample::<u8, 1>(b, |p| narrow(p[0])),
            DynamicImage::ImageLumaA8(b) => grid.sample::<u8, 2>(b, |p| narrow(p[0])),
            DynamicImage::ImageRgb8(b) => {
                grid.sample::<u8, 3>(b, |p| rgb(narrow(p[0]), narrow(p[1]), narrow(p[2])))
            }
            DynamicImage::ImageRgba8(b) => {
                grid.sample::<u8, 4>(b, |p| rgb(narrow(p[0]), narrow(p[1]), narrow(p[2])))
            }
            DynamicImage::ImageLuma16(b) => grid.sample::<u16, 1>(b, |p| wide(p[0])),
            DynamicImage::ImageLumaA16(b) => grid.sample::<u16, 2>(b, |p| wide(p[0])),
            DynamicImage::ImageRgb16(b) => {
                grid.sample::<u16, 3>(b, |p| rgb(wide(p[0]), wide(p[1]), wide(p[2])))
            }
            DynamicImage::ImageRgba16(b) => {
                grid.sample::<u16, 4>(b, |p| rgb(wide(p[0]), wide(p[1]), wide(p[2])))
            }
            DynamicImage::ImageRgb32F(b) => {
                grid.sample::<f32, 3>(b, |p| rgb(float(p[0]), float(p[1]), float(p[2])))
            }
            DynamicImage::ImageRgba32F(b) => {
                grid.sample::<f32, 4>(b, |p| rgb(float(p[0]), float(p[1]), float(p[2])))
            }
            // A layout added to the crate later: pixel by pixel through the generic accessor.
            other => grid.sample_with(|x, y| {
                let p = other.get_pixel(x as u32, y as u32).0;
                rgb(narrow(p[0]), narrow(p[1]), narrow(p[2]))
            }),
        };
        Some(Self {
            width: grid.out_width,
            height: grid.out_height,
            pixels,
        })
    }
}

/// A picture reduced by [`COARSE_FACTOR`] per side (whole blocks averaged, the remainder
/// dropped), as floats; `None` when not even one block fits.
fn reduced<T: Copy + Into<f32>>(
    width: usize,
    height: usize,
    pixels: &[T],
) -> Option<(usize, usize, Vec<f32>)> {
    let (out_width, out_height) = (width / COARSE_FACTOR, height / COARSE_FACTOR);
    if out_width == 0 || out_height == 0 {
        return None;
    }
    let mut out = vec![0f32; out_width * out_height];
    for y in 0..out_height * COARSE_FACTOR {
        let line = &pixels[y * width..][..out_width * COARSE_FACTOR];
        let sums = &mut out[(y / COARSE_FACTOR) * out_width..][..out_width];
        for (sum, block) in sums.iter_mut().zip(line.chunks_exact(COARSE_FACTOR)) {
            *sum += block.iter().map(|&p| p.into()).sum::<f32>();
        }
    }
    let cell = (COARSE_FACTOR * COARSE_FACTOR) as f32;
    out.iter_mut().for_each(|p| *p /= cell);
    Some((out_width, out_height, out))
}

/// At most this many source pixels are read per working pixel and side (16 in all).
pub const SAMPLES_PER_SIDE: usize = 4;

/// Which source pixels make up each working pixel.
struct Grid {
    /// Source width, in pixels.
    width: usize,
    /// `per_side` source columns for each working column, in order.
    columns: Vec<usize>,
    /// `per_side` source rows for each working row.
    lines: Vec<usize>,
    per_side: usize,
    out_width: usize,
    out_height: usize,
}

impl Grid {
    /// The working pixels of a buffer of `C`-channel pixels, each converted by `luma`.
    fn sample<T: Copy, const C: usize>(
        &self,
        samples: &[T],
        luma: impl Fn(&[T]) -> f32,
    ) -> Vec<u8> {
        let stride = self.width * C;
        self.sample_rows(|y, sums| {
            let line = &samples[y * stride..][..stride];
            for (sum, columns) in sums
                .iter_mut()
                .zip(self.columns.chunks_exact(self.per_side))
            {
                *sum += columns
                    .iter()
                    .map(|&x| luma(&line[x * C..][..C]))
                    .sum::<f32>();
            }
        })
    }

    /// The same through a per-pixel accessor.
    fn sample_with(&self, luma: impl Fn(usize, usize) -> f32) -> Vec<u8> {
        self.sample_rows(|y, sums| {
            for (sum, columns) in sums
                .iter_mut()
                .zip(self.columns.chunks_exact(self.per_side))
            {
                *sum += columns.iter().map(|&x| luma(x, y)).sum::<f32>();
            }
        })
    }

    /// Averages what `add_row` adds, source row by source row, into each working row.
    fn sample_rows(&self, mut add_row: impl FnMut(usize, &mut [f32])) -> Vec<u8> {
        let cell = (self.per_side * self.per_side) as f32;
        let mut sums = vec![0f32; self.out_width];
        let mut out = Vec::with_capacity(self.out_width * self.out_height);
        for lines in self.lines.chunks_exact(self.per_side) {
            sums.iter_mut().for_each(|s| *s = 0.0);
            for &y in lines {
                add_row(y, &mut sums);
            }
            out.extend(
                sums.iter()
                    .map(|&sum| (sum / cell).round().clamp(0.0, 255.0) as u8),
            );
        }
        out
    }
}

/// For an axis of `from` source pixels reduced to `to` working pixels: for each working pixel,
/// the `per_side` source pixels at the centres of equal parts of its footprint.
fn sample_positions(from: usize, to: usize, per_side: usize) -> Vec<usize> {
    let scale = from as f64 / to as f64;
    (0..to)
        .flat_map(|o| {
            (0..per_side).map(move |i| {
                let at = (o as f64 + (i as f64 + 0.5) / per_side as f64) * scale;
                (at as usize).min(from - 1)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{imageops, DynamicImage, Rgb, RgbImage};

    use super::*;
    use PhotoHint::*;

    /// A small deterministic generator, so the pictures are the same on every run.
    struct Seq(u64);

    impl Seq {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
        fn range(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * self.unit()
        }
    }

    /// Photo-like: a shaded background under hundreds of overlapping discs and rectangles of
    /// all sizes (many small, few large: the "dead leaves" model of natural images, hard edges at
    /// every scale), with a little grain. The scene is laid out relative to the size, so the
    /// same seed at twice the size is the same picture at twice the resolution.
    fn photo_like(width: u32, height: u32, seed: u64) -> RgbImage {
        let mut seq = Seq(seed);
        let (w, h) = (width as f32, height as f32);
        let colour = |seq: &mut Seq| [0; 3].map(|_: u8| seq.range(15.0, 240.0));
        let (top, bottom) = (colour(&mut seq), colour(&mut seq));
        let mut img = RgbImage::from_fn(width, height, |x, y| {
            let t = (x as f32 / w + y as f32 / h) / 2.0;
            Rgb([0, 1, 2].map(|c| (top[c] * (1.0 - t) + bottom[c] * t) as u8))
        });
        let long = w.max(h);
        let (r_min, r_max) = (long / 150.0, long / 5.0);
        for _ in 0..400 {
            let u = seq.unit();
            let r = 1.0 / ((1.0 - u) / (r_min * r_min) + u / (r_max * r_max)).sqrt();
            let (cx, cy) = (seq.range(0.0, w), seq.range(0.0, h));
            let fill = Rgb(colour(&mut seq).map(|c| c as u8));
            let disc = seq.unit() < 0.6;
            let ry = r * seq.range(0.4, 1.6);
            let (x0, x1) = ((cx - r).max(0.0) as u32, ((cx + r) as u32).min(width - 1));
            let (y0, y1) = (
                (cy - ry).max(0.0) as u32,
                ((cy + ry) as u32).min(height - 1),
            );
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let (dx, dy) = ((x as f32 - cx) / r, (y as f32 - cy) / ry);
                    if !disc || dx * dx + dy * dy <= 1.0 {
                        img.put_pixel(x, y, fill);
                    }
                }
            }
        }
        for p in img.pixels_mut() {
            let grain = seq.range(-6.0, 6.0);
            p.0 = p.0.map(|c| (f32::from(c) + grain).clamp(0.0, 255.0) as u8);
        }
        img
    }

    fn mapped(img: &RgbImage, f: impl Fn(f32) -> f32) -> RgbImage {
        let mut out = img.clone();
        for p in out.pixels_mut() {
            p.0 = p.0.map(|c| f(f32::from(c)).round().clamp(0.0, 255.0) as u8);
        }
        out
    }

    fn hints(img: &RgbImage) -> Vec<PhotoHint> {
        hints_for(&DynamicImage::ImageRgb8(img.clone()))
    }

    /// Through a JPEG at the encoder's default quality, as photos arrive.
    fn as_jpeg(img: &RgbImage) -> DynamicImage {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encode");
        image::load_from_memory(&out.into_inner()).expect("decode")
    }

    fn measured(img: &RgbImage) -> Measurements {
        Measurements::of(&DynamicImage::ImageRgb8(img.clone())).expect("pixels")
    }

    fn sharpness(m: &Measurements) -> f32 {
        (m.fine - FINE_NOISE_FLOOR) / m.coarse.expect("large enough")
    }

    #[test]
    fn a_sharp_photo_has_no_hints() {
        for seed in 1..=3 {
            let sharp = photo_like(1024, 768, seed);
            assert_eq!(hints(&sharp), [], "seed {seed}");
            assert_eq!(hints_for(&as_jpeg(&sharp)), [], "seed {seed} as JPEG");
            // Far from the threshold, not just over it.
            let ratio = sharpness(&measured(&sharp));
            assert!(ratio > 5.0 * BLURRY_RATIO, "seed {seed}: {ratio}");
        }
    }

    #[test]
    fn a_strongly_blurred_photo_is_blurry_and_nothing_else() {
        let sharp = photo_like(1024, 768, 1);
        for sigma in [3.0, 6.0, 12.0] {
            let blurred = imageops::blur(&sharp, sigma);
            assert_eq!(hints(&blurred), [Blurry], "σ = {sigma}");
            assert_eq!(
                hints_for(&as_jpeg(&blurred)),
                [Blurry],
                "σ = {sigma} as JPEG"
            );
        }
    }

    #[test]
    fn slight_softness_and_a_blurred_background_are_not_blurry() {
        let sharp = photo_like(1024, 768, 2);
        assert_eq!(hints(&imageops::blur(&sharp, 1.0)), []);
        // Portrait mode: a sharp subject in the middle, the background blurred away.
        let mut portrait = imageops::blur(&sharp, 8.0);
        for (x, y, p) in portrait.enumerate_pixels_mut() {
            let (dx, dy) = ((x as f32 - 512.0) / 200.0, (y as f32 - 384.0) / 280.0);
            if dx * dx + dy * dy <= 1.0 {
                *p = *sharp.get_pixel(x, y);
            }
        }
        assert_eq!(hints(&portrait), []);
        assert!(sharpness(&measured(&portrait)) > 3.0 * BLURRY_RATIO);
    }

    #[test]
    fn blur_is_judged_the_same_at_any_resolution() {
        // The same scene at twice the resolution, blurred by twice as many pixels, is equally
        // soft: the same verdict and about the same measure.
        let (small, large) = (photo_like(1024, 768, 3), photo_like(2048, 1536, 3));
        assert_eq!((hints(&small), hints(&large)), (vec![], vec![]));
        let (small, large) = (imageops::blur(&small, 4.0), imageops::blur(&large, 8.0));
        assert_eq!((hints(&small), hints(&large)), (vec![Blurry], vec![Blurry]));
        let (a, b) = (sharpness(&measured(&small)), sharpness(&measured(&large)));
        assert!((a - b).abs() < BLURRY_RATIO / 2.0, "{a} vs {b}");
    }

    #[test]
    fn a_dark_photo_is_too_dark_and_nothing_else() {
        let sharp = photo_like(1024, 768, 4);
        assert_eq!(hints(&mapped(&sharp, |c| c * 0.15)), [TooDark]);
        assert_eq!(
            hints_for(&as_jpeg(&mapped(&sharp, |c| c * 0.15))),
            [TooDark]
        );
    }

    #[test]
    fn a_bright_photo_is_too_bright_and_nothing_else() {
        let sharp = photo_like(1024, 768, 5);
        let bright = mapped(&sharp, |c| 255.0 - (255.0 - c) * 0.15);
        assert_eq!(hints(&bright), [TooBright]);
        assert_eq!(hints_for(&as_jpeg(&bright)), [TooBright]);
    }

    #[test]
    fn mostly_black_or_mostly_blown_out_is_badly_exposed_whatever_the_mean() {
        // A silhouette: two thirds black, the rest a bright window. The mean is fine (~85).
        let sharp = photo_like(1024, 768, 6);
        let split = |img: &RgbImage, f: &dyn Fn(u32, Rgb<u8>) -> Rgb<u8>| {
            let mut out = img.clone();
            for (x, _, p) in out.enumerate_pixels_mut() {
                *p = f(x, *p);
            }
            out
        };
        let silhouette = split(&sharp, &|x, p| {
            if x < 700 {
                Rgb([2; 3])
            } else {
                Rgb(p.0.map(|c| c.max(200)))
            }
        });
        let m = measured(&silhouette);
        assert!(m.mean > DARK_MEAN, "{}", m.mean);
        assert_eq!(hints(&silhouette), [TooDark]);
        let backlit = split(&sharp, &|x, p| {
            if x < 700 {
                Rgb([253; 3])
            } else {
                Rgb(p.0.map(|c| c / 3))
            }
        });
        let m = measured(&backlit);
        assert!(m.mean < BRIGHT_MEAN, "{}", m.mean);
        assert_eq!(hints(&backlit), [TooBright]);
        // A black backdrop behind a lit subject is a fine photo, not a dark one.
        let backdrop = split(&sharp, &|x, p| if x < 500 { Rgb([3; 3]) } else { p });
        assert_eq!(hints(&backdrop), []);
    }

    #[test]
    fn a_flat_picture_is_low_contrast_only() {
        let mut seq = Seq(7);
        let flat = RgbImage::from_fn(1024, 768, |_, _| {
            Rgb([(128.0 + seq.range(-2.0, 2.0)) as u8; 3])
        });
        // Nothing in it can be in or out of focus: no Blurry.
        assert_eq!(hints(&flat), [LowContrast]);
        assert_eq!(hints_for(&as_jpeg(&flat)), [LowContrast]);
        // Haze: a sharp photo with a quarter of its contrast.
        let hazy = mapped(&photo_like(1024, 768, 7), |c| 128.0 + (c - 128.0) * 0.25);
        assert_eq!(hints(&hazy), [LowContrast]);
    }

    #[test]
    fn a_blurred_and_flat_photo_gets_both_hints() {
        let sharp = photo_like(1024, 768, 8);
        let flat = mapped(&imageops::blur(&sharp, 6.0), |c| 128.0 + (c - 128.0) * 0.45);
        assert_eq!(hints(&flat), [Blurry, LowContrast]);
    }

    #[test]
    fn the_bot_tests_sample_photos_get_no_hints() {
        // Smooth gradients: no edges at all, so no curvature at either scale and focus is not
        // judged; well exposed, with plenty of contrast. Sizes the bot's tests send.
        for (width, height) in [
            (640, 640),
            (768, 1024),
            (600, 600),
            (512, 512),
            (1024, 1024),
        ] {
            for seed in [0, 40, 128, 255] {
                let bytes = fake_telegram::sample_jpeg(width, height, seed);
                let img = image::load_from_memory(&bytes).expect("decode");
                assert_eq!(hints_for(&img), [], "{width}×{height} seed {seed}");
                let m = Measurements::of(&img).expect("pixels");
                assert!(
                    m.coarse.expect("large enough") < STRUCTURE_OVER_NOISE * FINE_NOISE_FLOOR / 2.0
                        && m.coarsest.expect("large enough")
                            < STRUCTURE_OVER_NOISE * COARSE_NOISE_FLOOR / 10.0,
                    "{m:?}"
                );
            }
        }
    }

    #[test]
    fn every_pixel_layout_is_measured_alike() {
        let dark = mapped(&photo_like(600, 512, 9), |c| c * 0.15);
        let rgb = DynamicImage::ImageRgb8(dark);
        let layouts = [
            rgb.clone(),
            DynamicImage::ImageRgba8(rgb.to_rgba8()),
            DynamicImage::ImageLuma8(rgb.to_luma8()),
            DynamicImage::ImageLumaA8(rgb.to_luma_alpha8()),
            DynamicImage::ImageRgb16(rgb.to_rgb16()),
            DynamicImage::ImageRgba16(rgb.to_rgba16()),
            DynamicImage::ImageLuma16(rgb.to_luma16()),
            DynamicImage::ImageRgb32F(rgb.to_rgb32f()),
            DynamicImage::ImageRgba32F(rgb.to_rgba32f()),
        ];
        let reference = Measurements::of(&rgb).expect("pixels");
        for img in &layouts {
            let m = Measurements::of(img).expect("pixels");
            assert!(
                (m.mean - reference.mean).abs() < 1.0,
                "{:?}: {m:?}",
                img.color()
            );
            assert_eq!(hints_for(img), [TooDark], "{:?}", img.color());
        }
    }

    #[test]
    fn the_working_copy_is_small_and_averages_what_it_covers() {
        // 25 megapixels: read at 16 points per working pixel, not 25 million.
        let columns = sample_positions(6000, 512, SAMPLES_PER_SIDE);
        let lines = sample_positions(4000, 341, SAMPLES_PER_SIDE);
        assert_eq!((columns.len(), lines.len()), (512 * 4, 341 * 4));
        assert!(columns.windows(2).all(|w| w[0] <= w[1]) && columns[columns.len() - 1] < 6000);
        // An exact 2×2 average at 1024: a pixel-sized checkerboard becomes flat grey.
        let checker = RgbImage::from_fn(1024, 768, |x, y| {
            Rgb([if (x + y) % 2 == 0 { 0 } else { 255 }; 3])
        });
        let gray = Gray::downscaled(&DynamicImage::ImageRgb8(checker)).expect("pixels");
        assert_eq!((gray.width, gray.height), (512, 384));
        assert!(
            gray.pixels.iter().all(|&p| p == 128),
            "{:?}",
            &gray.pixels[..8]
        );
        // Never enlarged.
        let small = Gray::downscaled(&DynamicImage::new_rgb8(300, 200)).expect("pixels");
        assert_eq!((small.width, small.height), (300, 200));
        let tall = Gray::downscaled(&DynamicImage::new_rgb8(513, 4000)).expect("pixels");
        assert_eq!((tall.width, tall.height), (66, 512));
    }

    #[test]
    fn tiny_and_empty_images_get_an_answer() {
        assert_eq!(hints_for(&DynamicImage::new_rgb8(0, 0)), []);
        assert_eq!(hints_for(&DynamicImage::new_rgb8(0, 10)), []);
        // Black: too dark, whatever the size.
        for (w, h) in [(1, 1), (2, 2), (3, 3), (8, 8), (5, 40)] {
            assert_eq!(
                hints_for(&DynamicImage::new_rgb8(w, h)),
                [TooDark],
                "{w}×{h}"
            );
        }
    }
}
