//! Real, small result files, so clients download and check actual media: a PNG for image
//! models (made here: zlib "stored" blocks, CRC-32 and Adler-32 by hand), a WAV for audio
//! (a short tone), an MP4 for video (a one-second clip made once with ffmpeg, in `assets/`).

/// A 1-second 64×36 H.264 clip (ffmpeg testsrc), committed as a fixture.
const SAMPLE_MP4: &[u8] = include_bytes!("../assets/sample.mp4");

/// The kind of media a model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Text,
}

impl MediaKind {
    pub fn extension(self) -> &'static str {
        match self {
            MediaKind::Image => "png",
            MediaKind::Video => "mp4",
            MediaKind::Audio => "wav",
            MediaKind::Text => "txt",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            MediaKind::Image => "image/png",
            MediaKind::Video => "video/mp4",
            MediaKind::Audio => "audio/wav",
            MediaKind::Text => "text/plain; charset=utf-8",
        }
    }
}

/// The file for a task, varied by a seed so different tasks give different images.
pub fn render(kind: MediaKind, seed: u64) -> Vec<u8> {
    match kind {
        MediaKind::Image => png(32, 32, [(seed & 0xff) as u8, ((seed >> 8) & 0xff) as u8, ((seed >> 16) & 0xff) as u8]),
        MediaKind::Video => SAMPLE_MP4.to_vec(),
        MediaKind::Audio => wav(220 + (seed % 440) as u32, 8_000, 4_000),
        MediaKind::Text => b"Simulated language-model output.\n".to_vec(),
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An RGB PNG: a diagonal gradient over `rgb`.
pub fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            let t = ((x + y) * 255 / (w + h)) as u8;
            raw.extend_from_slice(&[rgb[0] ^ t, rgb[1], rgb[2] ^ (255 - t)]);
        }
    }
    // zlib stream of stored deflate blocks (max 65,535 bytes each).
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A mono 8-bit PCM WAV of a sine tone.
pub fn wav(freq_hz: u32, sample_rate: u32, samples: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + samples as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + samples).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes()); // byte rate
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&samples.to_le_bytes());
    for i in 0..samples {
        let phase = 2.0 * std::f64::consts::PI * f64::from(freq_hz) * f64::from(i) / f64::from(sample_rate);
        out.push((128.0 + 100.0 * phase.sin()) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn files_have_their_magic_numbers() {
        assert!(render(MediaKind::Image, 7).starts_with(b"\x89PNG\r\n\x1a\n"));
        let wav = render(MediaKind::Audio, 7);
        assert!(wav.starts_with(b"RIFF") && &wav[8..12] == b"WAVE");
        assert_eq!(&render(MediaKind::Video, 7)[4..8], b"ftyp");
    }
}
