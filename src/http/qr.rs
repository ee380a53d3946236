//! QR codes for pairing: the `2@...` string whatsapp-rust produces, rendered as a PNG data URI.

use base64::Engine;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module, and modules of quiet zone around the code.
const SCALE: usize = 8;
const QUIET: usize = 4;

/// Renders `payload` as a black-on-white PNG and answers `data:image/png;base64,...`.
pub fn png_data_uri(payload: &str) -> Result<String, anyhow::Error> {
    let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::L)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (index % width + QUIET, index / width + QUIET);
        for dy in 0..SCALE {
            let row = (my * SCALE + dy) * side;
            let start = row + mx * SCALE;
            pixels[start..start + SCALE].fill(0);
        }
    }
    let mut png_bytes = Vec::new();
    {
        let side = u32::try_from(side)?;
        let mut encoder = png::Encoder::new(&mut png_bytes, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
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
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().expect("png header");
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert!(
            info.width as usize >= 21 * SCALE,
            "at least a version 1 code"
        );
    }
}
