//! How captured bodies are kept at rest: compressed with zstd before they
//! are sealed (ciphertext does not compress) and before PostgreSQL's own
//! TOAST compression would spend CPU on them. Both bodies of a record are
//! compressed, or neither: one flag on the content says which.

use super::records::RecordContent;
use std::cell::RefCell;

/// No stored body decodes to more than this, whatever its frame claims: a
/// row edited by hand cannot make a read allocate more.
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("a stored body does not decompress")]
pub struct CorruptBody;

thread_local! {
    // One compression context per worker thread, reused: creating one per
    // body costs more than compressing a 1 KiB body.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

fn compress(level: i32, body: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().map(|(l, _)| *l) != Some(level) {
            *cell = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = cell.as_mut()?;
        compressor.compress(body).ok()
    })
}

/// Compress both bodies of `content` at `level` (0: leave them), unless
/// that would not make them smaller together (tiny bodies grow by the frame).
pub fn compress_content(content: &mut RecordContent, level: i32) {
    if level == 0 || content.compressed || content.sealed {
        return;
    }
    let Some(request) = compress(level, &content.request_body) else {
        return;
    };
    let Some(response) = compress(level, &content.response_body) else {
        return;
    };
    if request.len() + response.len() < content.request_body.len() + content.response_body.len() {
        content.request_body = request;
        content.response_body = response;
        content.compressed = true;
    }
}

/// A stored body as it was captured.
pub fn decompress(stored: &[u8]) -> Result<Vec<u8>, CorruptBody> {
    decompress_within(stored, MAX_DECODED_BYTES)
}

/// Only frames this module writes are read: one frame that states its
/// size, within `max`, and decodes to exactly that.
fn decompress_within(stored: &[u8], max: u64) -> Result<Vec<u8>, CorruptBody> {
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) if size <= max => size,
        _ => return Err(CorruptBody),
    };
    let capacity = usize::try_from(size).map_err(|_| CorruptBody)?;
    let out = zstd::bulk::decompress(stored, capacity).map_err(|_| CorruptBody)?;
    if out.len() != capacity {
        return Err(CorruptBody);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    // The configured default (config::CaptureConfig), which domain cannot see.
    const DEFAULT_LEVEL: i32 = -1;

    fn content(request: &[u8], response: &[u8]) -> RecordContent {
        RecordContent {
            request_body: request.to_vec(),
            request_truncated: false,
            response_body: response.to_vec(),
            response_truncated: false,
            expires_at: datetime!(2026-12-01 00:00 UTC),
            sealed: false,
            compressed: false,
        }
    }

    #[test]
    fn compressed_bodies_decompress_to_what_was_captured() {
        let request = br#"{"model":"m","messages":[{"role":"user","content":"hello hello hello hello hello"}]}"#.repeat(20);
        let response = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n".repeat(40);
        let mut c = content(&request, &response);
        compress_content(&mut c, DEFAULT_LEVEL);
        assert!(c.compressed);
        assert!(c.request_body.len() < request.len() / 4);
        assert_eq!(decompress(&c.request_body).unwrap(), request);
        assert_eq!(decompress(&c.response_body).unwrap(), response);
    }

    #[test]
    fn bodies_that_would_grow_are_kept_as_captured() {
        let mut c = content(b"{}", b"");
        compress_content(&mut c, DEFAULT_LEVEL);
        assert!(!c.compressed);
        assert_eq!(c.request_body, b"{}");
    }

    #[test]
    fn level_zero_stores_as_captured() {
        let body = b"a".repeat(4096);
        let mut c = content(&body, &body);
        compress_content(&mut c, 0);
        assert!(!c.compressed);
        assert_eq!(c.request_body, body);
    }

    #[test]
    fn garbage_and_truncated_frames_are_corrupt_not_panics() {
        let mut c = content(&b"abc".repeat(1000), &b"xyz".repeat(1000));
        compress_content(&mut c, DEFAULT_LEVEL);
        assert!(decompress(b"not zstd at all").is_err());
        let cut = &c.request_body[..c.request_body.len() / 2];
        assert!(decompress(cut).is_err());
        assert!(decompress(&[]).is_err());
    }

    #[test]
    fn frames_past_the_bound_or_without_a_size_are_refused_before_decoding() {
        // A streamed frame states no size: it could inflate to anything.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut encoder, &[0u8; 4096]).unwrap();
        let unsized_frame = encoder.finish().unwrap();
        assert!(decompress(&unsized_frame).is_err());
        let frame = zstd::bulk::compress(&[0u8; 4096], 1).unwrap();
        assert!(decompress_within(&frame, 4095).is_err());
        assert_eq!(decompress_within(&frame, 4096).unwrap().len(), 4096);
    }
}
