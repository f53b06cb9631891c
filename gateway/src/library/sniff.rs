//! The content type of a result, read from its first bytes (never from the answer's
//! `Content-Type`, which a source can set to anything).

/// How many leading bytes [`content_type`] needs.
pub const SNIFF_LEN: usize = 16;

/// The media type the bytes begin like; `application/octet-stream` when none is known.
pub fn content_type(head: &[u8]) -> &'static str {
    let at = |off: usize, sig: &[u8]| head.len() >= off + sig.len() && &head[off..off + sig.len()] == sig;
    if at(0, b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if at(0, b"\xff\xd8\xff") {
        "image/jpeg"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "image/gif"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        "audio/wav"
    } else if at(4, b"ftyp") {
        // ISO base media: M4A is audio, the rest (mp41, mp42, isom, avc1, qt…) video.
        if at(8, b"M4A ") { "audio/mp4" } else if at(8, b"qt  ") { "video/quicktime" } else { "video/mp4" }
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        "video/webm"
    } else if at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xff && head[1] & 0xe0 == 0xe0) {
        "audio/mpeg"
    } else if at(0, b"OggS") {
        "audio/ogg"
    } else if at(0, b"fLaC") {
        "audio/flac"
    } else if at(0, b"MThd") {
        "audio/midi"
    } else {
        "application/octet-stream"
    }
}

/// A file name's extension for `content_type` (as [`content_type`] names them), for a copy
/// sent on under a name (KIE's upload reads the type from it).
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "audio/wav" => "wav",
        "audio/mp4" => "m4a",
        "video/quicktime" => "mov",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/flac" => "flac",
        "audio/midi" => "mid",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn each_kind_is_told_by_its_bytes() {
        for (head, want) in [
            (&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], "image/png"),
            (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg"),
            (b"GIF89a\x01\0", "image/gif"),
            (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
            (b"RIFF\x24\0\0\0WAVEfmt ", "audio/wav"),
            (b"MThd\0\0\0\x06\0\x01", "audio/midi"),
            (b"\0\0\0\x20ftypisom\0\0\x02\0", "video/mp4"),
            (b"\0\0\0\x20ftypM4A \0\0\0\0", "audio/mp4"),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "video/webm"),
            (b"ID3\x04\0\0\0\0", "audio/mpeg"),
            (b"\xff\xfb\x90\x64", "audio/mpeg"),
            (b"OggS\0\x02", "audio/ogg"),
            (b"fLaC\0\0\0\x22", "audio/flac"),
            (b"<html><body>", "application/octet-stream"),
            (b"", "application/octet-stream"),
            (b"RIFF", "application/octet-stream"),
        ] {
            assert_eq!(content_type(head), want, "{head:?}");
        }
    }
}
