//! The spool's on-disk format, as pure functions over bytes.
//!
//! A segment is a header (`MAGIC`) followed by frames:
//! `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`.
//! Frames are only ever appended, so a crash can leave at most a torn last
//! frame; a bit flip anywhere shows up as a checksum mismatch. Decoding stops
//! at the first bad frame and says where and why; it never panics, whatever
//! the bytes (this is a fuzz target).

/// Identifies a spool segment and its format version.
pub const MAGIC: &[u8; 8] = b"CSTSPL01";
const FRAME_HEADER: usize = 8;
/// No record comes near this; a larger length is corruption, not data.
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Append one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why decoding stopped before the end of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTail {
    /// The bytes do not start with the segment header.
    NotASegment,
    /// The last frame was cut short (a crash mid-append).
    Torn { offset: usize },
    /// A frame's length is absurd or its checksum does not match.
    Corrupt { offset: usize },
}

impl std::fmt::Display for BadTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotASegment => f.write_str("not a spool segment (bad header)"),
            Self::Torn { offset } => write!(f, "torn frame at byte {offset}"),
            Self::Corrupt { offset } => write!(f, "corrupt frame at byte {offset}"),
        }
    }
}

/// The frames of a segment, in order, and what ended them early (if
/// anything). Bytes after a bad frame are not trusted.
pub fn decode(bytes: &[u8]) -> (Vec<&[u8]>, Option<BadTail>) {
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return (Vec::new(), Some(BadTail::NotASegment));
    };
    let mut frames = Vec::new();
    let mut offset = MAGIC.len();
    while !rest.is_empty() {
        match next_frame(rest) {
            Ok((payload, used)) => {
                frames.push(payload);
                rest = &rest[used..];
                offset += used;
            }
            Err(Bad::Short) => return (frames, Some(BadTail::Torn { offset })),
            Err(Bad::Corrupt) => return (frames, Some(BadTail::Corrupt { offset })),
        }
    }
    (frames, None)
}

enum Bad {
    Short,
    Corrupt,
}

/// One frame from the start of `bytes`: its payload and the bytes it used.
fn next_frame(bytes: &[u8]) -> Result<(&[u8], usize), Bad> {
    let header = bytes.get(..FRAME_HEADER).ok_or(Bad::Short)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME {
        return Err(Bad::Corrupt);
    }
    let payload = bytes
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(Bad::Short)?;
    if crc32fast::hash(payload) != crc {
        return Err(Bad::Corrupt);
    }
    Ok((payload, FRAME_HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for p in payloads {
            encode_frame(p, &mut out);
        }
        out
    }

    #[test]
    fn frames_round_trip_including_empty_ones() {
        let bytes = segment(&[b"one", b"", b"three"]);
        let (frames, bad) = decode(&bytes);
        assert_eq!(frames, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(bad, None);
    }

    #[test]
    fn a_header_alone_is_an_empty_segment() {
        assert_eq!(decode(MAGIC), (Vec::new(), None));
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail_keeping_the_frames_before() {
        let bytes = segment(&[b"first", b"second frame"]);
        let second_at = MAGIC.len() + FRAME_HEADER + 5;
        for cut in second_at + 1..bytes.len() {
            let (frames, bad) = decode(&bytes[..cut]);
            assert_eq!(frames, vec![&b"first"[..]], "cut at {cut}");
            assert_eq!(
                bad,
                Some(BadTail::Torn { offset: second_at }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_bit_in_a_frame_is_caught() {
        let bytes = segment(&[b"first", b"second frame"]);
        for i in MAGIC.len()..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let (frames, bad) = decode(&flipped);
                // A flipped length may read as a torn frame; either way the
                // damaged frame is never returned.
                assert!(bad.is_some(), "byte {i} bit {bit}");
                assert!(frames.len() < 2, "byte {i} bit {bit}");
                for f in frames {
                    assert_eq!(f, b"first");
                }
            }
        }
    }

    #[test]
    fn a_foreign_file_is_not_a_segment() {
        assert_eq!(
            decode(b"hello world, not a spool"),
            (Vec::new(), Some(BadTail::NotASegment))
        );
        assert_eq!(decode(b""), (Vec::new(), Some(BadTail::NotASegment)));
    }

    #[test]
    fn an_absurd_length_is_corruption_not_an_allocation() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode(&bytes).1,
            Some(BadTail::Corrupt {
                offset: MAGIC.len()
            })
        );
    }
}
