//! QR codes for pairing: the `2@...` string whatsapp-rust produces, rendered as a PNG data URI.

use base64::Engine;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module, and modules of quiet zone around the code.
const SCALE: usize = 8;
const QUIET: usize = 4;

/// Renders `payload` as a black-on-white PNG and answers `data:image/png;base64,...`.
///
/// One bit per pixel: a QR code has two colours, and a byte per pixel made every `GET /qr` build
/// a buffer of a quarter megabyte (and encode eight times the data) for a picture of a few
/// kilobytes.
pub fn png_data_uri(payload: &str) -> Result<String, anyhow::Error> {
    let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::L)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let row_bytes = side.div_ceil(8);
    // Grayscale at one bit: 1 is white, 0 is black; rows start on a byte.
    let mut pixels = vec![0xffu8; row_bytes * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (index % width + QUIET, index / width + QUIET);
        for dy in 0..SCALE {
            let row = (my * SCALE + dy) * row_bytes;
            for x in mx * SCALE..(mx + 1) * SCALE {
                pixels[row + x / 8] &= !(0x80 >> (x % 8));
            }
        }
    }
    let mut png_bytes = Vec::new();
    {
        let side = u32::try_from(side)?;
        let mut encoder = png::Encoder::new(&mut png_bytes, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png_bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_decodable_png() {
        let uri = png_data_uri("2@abc,def,ghi,jkl").expect("renders");
        let encoded = uri.strip_prefix("data:image/png;base64,").expect("prefix");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().expect("png header");
        let (width, height) = (reader.info().width, reader.info().height);
        assert_eq!(width, height);
        assert!(width as usize >= 21 * SCALE, "at least a version 1 code");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let frame = reader.next_frame(&mut pixels).expect("pixels");
        assert_eq!(frame.color_type, png::ColorType::Grayscale);
        // Every module reads back in its colour, at the centre of its square.
        let code =
            QrCode::with_error_correction_level(b"2@abc,def,ghi,jkl", EcLevel::L).expect("code");
        let modules = code.width();
        assert_eq!(width as usize, (modules + 2 * QUIET) * SCALE);
        for (index, color) in code.to_colors().iter().enumerate() {
            let x = (index % modules + QUIET) * SCALE + SCALE / 2;
            let y = (index / modules + QUIET) * SCALE + SCALE / 2;
            let pixel = pixels[y * frame.line_size + x];
            let expected = if *color == Color::Dark { 0 } else { 255 };
            assert_eq!(pixel, expected, "module {index}");
        }
        // The quiet zone is white.
        assert_eq!(pixels[0], 255);
    }
}
