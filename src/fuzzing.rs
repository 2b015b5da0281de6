//! Entry points for the fuzz targets in `fuzz/`: every parser of untrusted
//! input the gateway owns. Each one checks properties, not only the absence
//! of a panic. The seed corpus under `fuzz/corpus/` is also replayed by a
//! unit test on stable Rust, so every `cargo test` runs it.

use std::path::Path;

use crate::recording::spool::segment;

/// The APIs the console lays out as conversations.
const CONVERSATION_PATHS: [&str; 3] = [
    "/v1/chat/completions",
    "/anthropic/v1/messages",
    "/v1/responses",
];

/// The configuration file (operators make typos; the loader must explain,
/// never panic).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_toml(Path::new("fuzz.toml"), text, Vec::new());
    }
}

/// SSE bodies as the upstream streams them: usage extraction, the reviewer's
/// reassembled text and conversation, and the training line rebuilt from the deltas.
pub fn sse(data: &[u8]) {
    for event in crate::wire::sse_data(data) {
        assert!(!event.is_empty() && event != b"[DONE]");
    }
    let _ = crate::wire::response_fields(data, true);
    let request = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
    // The console's conversation view of a streamed answer, redacted as a
    // contractor reads it.
    for path in CONVERSATION_PATHS {
        let mut conversation = crate::review::conversation::read(path, true, request, data);
        conversation.map_text(crate::review::redact::redact);
    }
    for path in ["/v1/chat/completions", "/anthropic/v1/messages"] {
        let _ = crate::export::finetune::answer_text(path, true, data);
        let captured = crate::export::finetune::Captured {
            path,
            status: 200,
            completed: true,
            streamed: true,
            request,
            response: data,
            truncated: false,
        };
        if let Ok(line) = crate::export::finetune::finetune_line(&captured) {
            // A line the export writes is one valid JSON document.
            assert!(!line.contains('\n'));
            assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
        }
    }
}

/// Spool segments read back after a crash or from a damaged disk.
pub fn spool_segment(data: &[u8]) {
    let (frames, bad) = segment::decode(data);
    // What decodes re-encodes to exactly the bytes it came from.
    let mut again = segment::MAGIC.to_vec();
    for frame in &frames {
        segment::encode_frame(frame, &mut again);
    }
    if bad != Some(segment::BadTail::NotASegment) {
        assert!(data.starts_with(&again));
        assert_eq!(bad.is_none(), data.len() == again.len());
    }
    let _ = crate::recording::spool::decode_records(Path::new("fuzz.spool"), data);
}

/// The JSON fields the gateway reads from request and response bodies, the
/// text the rules see (through any content encoding, within the scan
/// limit) and the redaction applied before a reviewer reads it.
pub fn json_fields(data: &[u8]) {
    use crate::abuse::scan;
    let _ = crate::wire::request_model(data);
    let _ = crate::wire::response_fields(data, false);
    let text = scan::text_of(data);
    // The tokenizer sees every string a JSON parser sees, escapes undone.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let mut strings = Vec::new();
        every_string(&value, &mut strings);
        for s in strings {
            assert!(text.contains(s.as_str()), "{s:?} missing from {text:?}");
        }
    }
    let _ = crate::review::redact::redact(&text);
    let _ = crate::review::redact::redact(&String::from_utf8_lossy(data));
    // The console's conversation view of the body as request and as answer.
    for path in CONVERSATION_PATHS {
        let _ = crate::review::conversation::read(path, false, data, data);
    }
    const CAP: usize = 64 * 1024;
    let limits = scan::Limits {
        max_scan_bytes: CAP,
        max_body_bytes: 4 * CAP,
    };
    for encoding in ["gzip", "deflate", "br", "gzip, br", "zstd"] {
        for content_type in [
            "application/json",
            "multipart/form-data; boundary=x",
            "text/plain",
        ] {
            let body = scan::Body {
                content_type: Some(content_type),
                encodings: &[encoding],
                bytes: data,
                complete: true,
            };
            if let Ok(scanned) = scan::scan(body, limits) {
                // Bounded by the scan limit, never by what the body inflates to.
                assert!(scanned.text.len() <= 4 * CAP + 64, "{}", scanned.text.len());
            }
        }
    }
}

fn every_string(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| every_string(v, out)),
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            every_string(v, out);
        }),
        _ => {}
    }
}

/// A fuzz target: takes any bytes, panics only on a broken property.
pub type Target = fn(&[u8]);

/// Every target with its corpus directory name.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("sse", sse),
    ("spool_segment", spool_segment),
    ("json_fields", json_fields),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus (and anything a fuzzer found and was committed)
    /// passes every target's checks.
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let mut inputs = 0;
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                target(&bytes);
                inputs += 1;
            }
            assert!(inputs > 0, "no seed corpus in {}", dir.display());
        }
    }

    #[test]
    fn the_targets_take_empty_and_odd_inputs() {
        for (_, target) in TARGETS {
            for input in [&b""[..], b"\0", b"\xff\xfe", b"data: [DONE]\n\n", b"{"] {
                target(input);
            }
        }
    }
}
