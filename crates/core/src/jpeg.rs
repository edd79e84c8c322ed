//! Structural completeness check of a JPEG file: walk the marker segments (ITU-T T.81 Annex B) from
//! SOI through every scan to EOI. JPEG decoders are lenient and fill a truncated file's missing part
//! with grey: the capture stage reports such a photo as broken, and the privacy stage fails closed
//! instead of passing on an unscanned (and unredacted-looking) photo.

/// `Ok(())` when the bytes are a JPEG stream that reaches its EOI marker, else what is wrong.
pub fn check_complete(b: &[u8]) -> Result<(), String> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("not a JPEG file (no SOI marker)".into());
    }
    let mut i = 2;
    loop {
        // Find the next marker (skip fill bytes 0xFF).
        while i < b.len() && b[i] != 0xFF {
            i += 1; // tolerate garbage between segments, as decoders do
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        if i >= b.len() {
            return Err("JPEG is truncated: the file ends before the end-of-image marker".into());
        }
        let m = b[i];
        i += 1;
        match m {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue, // stand-alone markers
            _ => {}
        }
        if i + 2 > b.len() {
            return Err("JPEG is truncated inside a marker segment".into());
        }
        let len = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
        if len < 2 || i + len > b.len() {
            return Err(format!(
                "JPEG is truncated: segment 0x{m:02X} runs past the end of the file"
            ));
        }
        i += len;
        if m == 0xDA {
            // Entropy-coded data: runs until a marker that is not a stuffed 0xFF00 or a restart.
            loop {
                while i < b.len() && b[i] != 0xFF {
                    i += 1;
                }
                if i + 1 >= b.len() {
                    return Err("JPEG is truncated inside the image data".into());
                }
                let n = b[i + 1];
                if n == 0x00 || (0xD0..=0xD7).contains(&n) || n == 0xFF {
                    i += if n == 0xFF { 1 } else { 2 };
                    continue;
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_jpeg() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 99]));
        let mut v = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut v, 90)
            .encode_image(&img)
            .unwrap();
        v
    }

    #[test]
    fn complete_jpeg_passes_and_truncations_fail() {
        let v = tiny_jpeg();
        assert_eq!(check_complete(&v), Ok(()));
        let mut trailing = v.clone();
        trailing.extend_from_slice(b"appended trailer");
        assert_eq!(check_complete(&trailing), Ok(()));
        for cut in [3, 20, v.len() / 2, v.len() - 2] {
            assert!(check_complete(&v[..cut]).is_err(), "cut at {cut} passed");
        }
        assert!(check_complete(b"hello, I am text").is_err());
    }
}
