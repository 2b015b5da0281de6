//! What the text rules read of a request body, in memory bounded by the
//! configuration, never by what the body decompresses to.
//!
//! Every `Content-Encoding` layer is undone as a stream and only the first
//! `max_scan_bytes` decoded bytes are kept; the rest of a body held whole is
//! decoded only to be counted against `max_request_body_bytes` (so a
//! decompression bomb is a 413, not an allocation). JSON (and JSON Lines)
//! is read by a tokenizer over the bytes that yields every string, object
//! keys included, with its escapes undone: no `Value` tree, no recursion, so
//! neither nesting nor `\u` escapes hide a keyword. Multipart uploads are
//! split into their parts and each text part read the same way. What cannot
//! be read in full is said ([`Unreadable`]), for the profile to decide.

use std::borrow::Cow;
use std::io::Read;

use futures_util::FutureExt;

use crate::domain::verdict::Unreadable;

/// Content-Encoding layers undone at most: each layer may inflate up to the
/// body limit, so this bounds the work one body can ask for.
const MAX_LAYERS: usize = 3;

/// What the rules get to read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanText {
    pub text: String,
    /// Set when part of the body could not be read.
    pub unreadable: Option<Unreadable>,
}

impl ScanText {
    fn unreadable(reason: Unreadable) -> Self {
        Self {
            text: String::new(),
            unreadable: Some(reason),
        }
    }

    /// Keep the first reason found.
    fn mark(&mut self, reason: Unreadable) {
        self.unreadable.get_or_insert(reason);
    }
}

/// A body the gateway refuses outright rather than reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("the decoded body is larger than the limit")]
    TooLarge,
    #[error("the body is not valid {0}")]
    InvalidEncoding(&'static str),
}

/// A request body as it reached the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    pub content_type: Option<&'a str>,
    /// Every `Content-Encoding` header value, in order.
    pub encodings: &'a [&'a str],
    pub bytes: &'a [u8],
    /// False when `bytes` is only the start of the body (the rest streams).
    pub complete: bool,
}

/// Limits of one scan.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decoded bytes read for the rules.
    pub max_scan_bytes: usize,
    /// Decoded bytes a whole body may have (`server.max_request_body_bytes`).
    pub max_body_bytes: usize,
}

/// The text of `body` for the rules.
pub fn scan(body: Body<'_>, limits: Limits) -> Result<ScanText, ScanError> {
    let limits = Limits {
        max_scan_bytes: limits.max_scan_bytes.min(limits.max_body_bytes),
        ..limits
    };
    let Some(encodings) = encoding_layers(body.encodings) else {
        return Ok(ScanText::unreadable(Unreadable::UnknownEncoding));
    };
    let (decoded, complete) = decode_prefix(&encodings, body, limits)?;
    let mut out = ScanText::default();
    if !complete {
        out.mark(Unreadable::ScanLimit);
    }
    read_text(body.content_type, &decoded, complete, &mut out);
    Ok(out)
}

/// A whole body decoded (every `Content-Encoding` layer undone), for a
/// reader that needs it all; `None` when an encoding is unknown.
pub fn decoded<'a>(
    encodings: &'a [&'a str],
    bytes: &'a [u8],
    limits: Limits,
) -> Result<Option<Cow<'a, [u8]>>, ScanError> {
    let Some(layers) = encoding_layers(encodings) else {
        return Ok(None);
    };
    let body = Body {
        content_type: None,
        encodings,
        bytes,
        complete: true,
    };
    let limits = Limits {
        max_scan_bytes: limits.max_body_bytes,
        ..limits
    };
    decode_prefix(&layers, body, limits).map(|(decoded, _)| Some(decoded))
}

/// Whether scanning this body is worth a blocking thread: decoding, a
/// multipart split, or more than a few tens of kilobytes.
pub fn is_heavy(body: Body<'_>) -> bool {
    const INLINE_BYTES: usize = 64 * 1024;
    body.bytes.len() > INLINE_BYTES
        || body.encodings.iter().any(|e| {
            e.split(',')
                .any(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"))
        })
        || body.content_type.is_some_and(is_multipart)
}

/// The text of a captured request body (for the classifier and export):
/// its JSON strings, or the text itself.
pub fn text_of(body: &[u8]) -> String {
    let mut out = ScanText::default();
    read_text(None, body, true, &mut out);
    out.text
}

/// The encoding layers in the order they were applied; `None` when one is
/// unknown or there are too many.
fn encoding_layers(values: &[&str]) -> Option<Vec<Encoding>> {
    let layers: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
        .collect();
    if layers.len() > MAX_LAYERS {
        return None;
    }
    layers.into_iter().map(Encoding::parse).collect()
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Gzip,
    Deflate,
    Brotli,
}

impl Encoding {
    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Self::Gzip),
            "deflate" => Some(Self::Deflate),
            "br" => Some(Self::Brotli),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
        }
    }

    fn wrap<'a>(self, inner: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        match self {
            // Every member: a second gzip member must not go unread.
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            Self::Deflate => Box::new(flate2::read::ZlibDecoder::new(inner)),
            Self::Brotli => Box::new(brotli_decompressor::Decompressor::new(inner, 8 * 1024)),
        }
    }
}

/// The first `max_scan_bytes` of the decoded body, and whether that is all
/// of it. A whole body is decoded to its end (counted, not kept) so that
/// one inflating past `max_body_bytes` is refused.
fn decode_prefix<'a>(
    encodings: &[Encoding],
    body: Body<'a>,
    limits: Limits,
) -> Result<(Cow<'a, [u8]>, bool), ScanError> {
    let Some(outermost) = encodings.last() else {
        let end = body.bytes.len().min(limits.max_scan_bytes);
        let complete = body.complete && end == body.bytes.len();
        return Ok((Cow::Borrowed(&body.bytes[..end]), complete));
    };
    let invalid = ScanError::InvalidEncoding(outermost.name());
    // A whole body is first decoded only to be counted, keeping nothing: a
    // bomb is refused before a byte of it is held. (A compressed body within
    // the limit is then decoded twice: they are rare, and small.)
    let decoded_len = match body.complete {
        true => {
            let (mut reader, tripped) = decoder(encodings, body.bytes, limits.max_body_bytes);
            let cap = limits.max_body_bytes as u64 + 1;
            let counted = std::io::copy(&mut (&mut reader).take(cap), &mut std::io::sink());
            match counted {
                Ok(n) if n < cap => Some(n),
                Ok(_) => return Err(ScanError::TooLarge),
                Err(_) if tripped.get() => return Err(ScanError::TooLarge),
                Err(_) => return Err(invalid),
            }
        }
        false => None,
    };
    let (mut reader, tripped) = decoder(encodings, body.bytes, limits.max_body_bytes);
    let mut prefix = Vec::new();
    let read = (&mut reader)
        .take(limits.max_scan_bytes as u64)
        .read_to_end(&mut prefix);
    match (read, decoded_len) {
        (Ok(_), Some(n)) => {
            let whole = n == prefix.len() as u64;
            Ok((Cow::Owned(prefix), whole))
        }
        // The start of a body cut where the gateway stopped holding it: its
        // end is missing, not broken.
        (_, None) if !tripped.get() => Ok((Cow::Owned(prefix), false)),
        (_, None) => Err(ScanError::TooLarge),
        (Err(_), Some(_)) => Err(invalid),
    }
}

/// The decoders of `encodings` over `bytes`, each layer capped at
/// `max_bytes` (an inner layer that inflates to gigabytes of nothing, empty
/// gzip members, costs no more than that); the flag says a cap was hit.
fn decoder<'a>(
    encodings: &[Encoding],
    bytes: &'a [u8],
    max_bytes: usize,
) -> (Box<dyn Read + 'a>, std::rc::Rc<std::cell::Cell<bool>>) {
    let tripped = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut reader: Box<dyn Read + 'a> = Box::new(bytes);
    // Applied in order, so undone in reverse.
    for encoding in encodings.iter().rev() {
        reader = Box::new(Capped {
            inner: encoding.wrap(reader),
            left: max_bytes as u64,
            tripped: std::rc::Rc::clone(&tripped),
        });
    }
    (reader, tripped)
}

/// A decoding layer that may produce at most `left` more bytes; past it,
/// an error (and `tripped` says why).
struct Capped<R> {
    inner: R,
    left: u64,
    tripped: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more would be over the limit: is there one?
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.tripped.set(true);
            return Err(std::io::Error::other(
                "a decoding layer inflates past the body limit",
            ));
        }
        let room = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..room])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Add the text of a decoded body (or its start) to `out`, by its type.
fn read_text(content_type: Option<&str>, bytes: &[u8], complete: bool, out: &mut ScanText) {
    match content_type.and_then(multipart_boundary) {
        Some(boundary) => read_multipart(&boundary, bytes, complete, out),
        None => read_part(content_type, None, bytes, out),
    }
}

/// One body or part: JSON (or JSON Lines) by its strings, other text as
/// it is, bytes that are not text as unreadable.
fn read_part(content_type: Option<&str>, filename: Option<&str>, bytes: &[u8], out: &mut ScanText) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Text in UTF-16 (or anything else with NUL bytes) is valid UTF-8 with
    // NULs between the letters: read it as what it is, or not at all.
    if bytes.contains(&0) {
        return match utf16_text(bytes) {
            Some(text) => read_part(content_type, filename, text.as_bytes(), out),
            None => out.mark(Unreadable::Binary),
        };
    }
    let json_typed = content_type.is_some_and(is_json_type)
        || filename.is_some_and(|f| {
            let f = f.to_ascii_lowercase();
            f.ends_with(".json") || f.ends_with(".jsonl") || f.ends_with(".ndjson")
        });
    if json_typed || looks_like_json(bytes) {
        let start = out.text.len();
        if json_strings(bytes, &mut out.text) {
            return;
        }
        // Not JSON as the tokenizer knows it (a parser may still accept it):
        // the text as it is, with the escapes in its strings undone.
        out.text.truncate(start);
        push_line(&mut out.text, &unescape_json(bytes));
        return;
    }
    let text_typed = content_type.is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("text/") || is_json_type(&t)
    });
    match std::str::from_utf8(bytes) {
        Ok(text) => push_line(&mut out.text, text),
        // A body cut inside a character is still text.
        Err(e) if e.error_len().is_none() => {
            push_line(&mut out.text, &String::from_utf8_lossy(bytes));
        }
        Err(_) if text_typed => push_line(&mut out.text, &String::from_utf8_lossy(bytes)),
        Err(_) => out.mark(Unreadable::Binary),
    }
}

/// `bytes` as UTF-16 text (with a byte-order mark, or NULs in every other
/// byte as ASCII text in UTF-16 has), or `None`.
fn utf16_text(bytes: &[u8]) -> Option<String> {
    // Without a byte-order mark: mostly NULs in one byte of each pair and
    // none in the other, over the start (ASCII text in UTF-16).
    let sample = &bytes[..bytes.len().min(64) & !1];
    let pairs = sample.len() / 2;
    let zeros = |odd: usize| {
        sample
            .iter()
            .skip(odd)
            .step_by(2)
            .filter(|b| **b == 0)
            .count()
    };
    let (even, odd) = (zeros(0), zeros(1));
    let little = match bytes {
        [0xFF, 0xFE, ..] => true,
        [0xFE, 0xFF, ..] => false,
        _ if pairs >= 2 && even == 0 && odd * 4 >= pairs * 3 => true,
        _ if pairs >= 2 && odd == 0 && even * 4 >= pairs * 3 => false,
        _ => return None,
    };
    let units = bytes.chunks_exact(2).map(|pair| match little {
        true => u16::from_le_bytes([pair[0], pair[1]]),
        false => u16::from_be_bytes([pair[0], pair[1]]),
    });
    let text: String = char::decode_utf16(units).collect::<Result<_, _>>().ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned();
    // Decoded, it must be text: no NULs left.
    (!text.contains('\0')).then_some(text)
}

fn push_line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

fn is_json_type(content_type: &str) -> bool {
    let t = content_type.trim_start().to_ascii_lowercase();
    let essence = t.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || essence == "application/jsonl"
        || essence == "application/x-ndjson"
        || essence == "application/json-seq"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[' | b'"')
    )
}

fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/")
}

/// The boundary of a multipart body; `Some("")` (no part can match) when
/// the type names more than one: parsers disagree on which one counts.
fn multipart_boundary(content_type: &str) -> Option<String> {
    if !is_multipart(content_type) {
        return None;
    }
    let boundaries = content_type
        .split(';')
        .filter_map(|param| param.split_once('='))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .count();
    if boundaries > 1 {
        return Some(String::new());
    }
    multer::parse_boundary(content_type).ok()
}

/// Every part of a multipart body, each read by its own type. The parts are
/// in memory already (the decoded prefix), so every step is ready at once.
fn read_multipart(boundary: &str, bytes: &[u8], complete: bool, out: &mut ScanText) {
    if boundary.is_empty() {
        return out.mark(Unreadable::MalformedMultipart);
    }
    let body = bytes::Bytes::copy_from_slice(bytes);
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        let field = match multipart.next_field().now_or_never() {
            Some(Ok(Some(field))) => field,
            Some(Ok(None)) => return,
            // A body cut at the scan limit ends inside a part: said already.
            _ if !complete => return,
            _ => return out.mark(Unreadable::MalformedMultipart),
        };
        let content_type = field.content_type().map(ToString::to_string);
        let filename = field.file_name().map(str::to_owned);
        if let Some(name) = field.name() {
            push_line(&mut out.text, name);
        }
        match field.bytes().now_or_never() {
            Some(Ok(data)) => read_part(content_type.as_deref(), filename.as_deref(), &data, out),
            _ if !complete => return,
            _ => return out.mark(Unreadable::MalformedMultipart),
        }
    }
}

/// Append every JSON string in `bytes` (object keys and values, escapes
/// undone) to `out`, one per line. Works on any number of top-level values
/// (JSON Lines) and on a document cut short; false when `bytes` is not
/// JSON at all (text outside strings that no JSON token explains).
pub fn json_strings(bytes: &[u8], out: &mut String) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let (text, end) = json_string(&bytes[i + 1..]);
                out.push_str(&text);
                out.push('\n');
                i += 1 + end;
            }
            b'{' | b'}' | b'[' | b']' | b':' | b',' => i += 1,
            b if b.is_ascii_whitespace() => i += 1,
            b'-' | b'+' | b'.' | b'0'..=b'9' | b'e' | b'E' => i += 1,
            // NaN and Infinity: not JSON, but Python's parser takes them.
            b't' | b'f' | b'n' | b'N' | b'I' => {
                let word = bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphabetic())
                    .count();
                let literal = &bytes[i..i + word];
                let cut = i + word == bytes.len();
                let known = [&b"true"[..], b"false", b"null", b"NaN", b"Infinity"];
                if !known
                    .iter()
                    .any(|k| *k == literal || (cut && k.starts_with(literal)))
                {
                    return false;
                }
                i += word;
            }
            _ => return false,
        }
    }
    true
}

/// `bytes` as text with the escapes inside its JSON strings undone and the
/// rest as it is: for a JSON document that does not parse (cut short by the
/// capture cap), so that what a reader sees is what the escapes meant.
pub fn unescape_json(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .position(|b| *b == b'"')
            .unwrap_or(bytes.len() - i);
        out.push_str(&String::from_utf8_lossy(&bytes[i..i + run]));
        i += run;
        if i < bytes.len() {
            let (text, used) = json_string(&bytes[i + 1..]);
            out.push('"');
            out.push_str(&text);
            if bytes.get(i + used) == Some(&b'"') {
                out.push('"');
            }
            i += 1 + used;
        }
    }
    out
}

/// The string that starts at `bytes` (just past its opening quote), its
/// escapes undone, and how many bytes it took (closing quote included).
fn json_string(bytes: &[u8]) -> (String, usize) {
    let mut raw: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (into_text(raw), i + 1),
            b'\\' => {
                let (decoded, used) = json_escape(&bytes[i + 1..]);
                let mut buf = [0u8; 4];
                raw.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
                i += 1 + used;
            }
            _ => {
                let run = bytes[i..]
                    .iter()
                    .position(|b| *b == b'"' || *b == b'\\')
                    .unwrap_or(bytes.len() - i);
                raw.extend_from_slice(&bytes[i..i + run]);
                i += run;
            }
        }
    }
    (into_text(raw), i)
}

fn into_text(raw: Vec<u8>) -> String {
    String::from_utf8(raw).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One escape (just past its backslash): the character and the bytes used.
/// Lone surrogates and unknown escapes become U+FFFD, never a bypass.
fn json_escape(bytes: &[u8]) -> (char, usize) {
    let Some(&first) = bytes.first() else {
        return (char::REPLACEMENT_CHARACTER, 0);
    };
    let simple = match first {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return unicode_escape(bytes),
        _ => char::REPLACEMENT_CHARACTER,
    };
    (simple, 1)
}

fn unicode_escape(bytes: &[u8]) -> (char, usize) {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let Some(high) = hex(1) else {
        return (char::REPLACEMENT_CHARACTER, 1);
    };
    if (0xD800..0xDC00).contains(&high) && bytes.get(5..7) == Some(b"\\u") {
        if let Some(low) = hex(7).filter(|l| (0xDC00..0xE000).contains(l)) {
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return (
                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
                11,
            );
        }
    }
    (
        char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER),
        5,
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMITS: Limits = Limits {
        max_scan_bytes: 1 << 20,
        max_body_bytes: 4 << 20,
    };

    fn body<'a>(content_type: &'a str, encodings: &'a [&'a str], bytes: &'a [u8]) -> Body<'a> {
        Body {
            content_type: Some(content_type),
            encodings,
            bytes,
            complete: true,
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn json_text(bytes: &[u8]) -> String {
        scan(body("application/json", &[], bytes), LIMITS)
            .unwrap()
            .text
    }

    #[test]
    fn every_string_keys_included_has_its_escapes_undone() {
        let text = json_text(
            br#"{"messages":[{"role":"user","content":"say \"b\u006fmb\"\nnow"}],"k\u00e9y":1}"#,
        );
        for wanted in ["messages", "role", "user", "say \"bomb\"\nnow", "kéy"] {
            assert!(text.contains(wanted), "{wanted:?} not in {text:?}");
        }
        assert_eq!(
            json_text(br#"["\ud83d\ude00", "\ud800x"]"#),
            "😀\n\u{fffd}x\n"
        );
    }

    #[test]
    fn nesting_and_json_lines_do_not_hide_strings() {
        let deep = format!(
            "{}\"b\\u006fmb\"{}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(json_text(deep.as_bytes()).contains("bomb"));
        let lines = b"{\"a\":\"one\"}\n{\"b\":\"tw\\u006f\"}\n";
        let got = scan(body("application/jsonl", &[], lines), LIMITS).unwrap();
        assert!(
            got.text.contains("one") && got.text.contains("two"),
            "{got:?}"
        );
    }

    #[test]
    fn text_that_is_not_json_is_read_as_it_is() {
        let got = json_text(b"say bomb \"quoted\" now");
        assert!(got.contains("say bomb"), "{got:?}");
        let plain = scan(body("text/plain", &[], b"plain bomb"), LIMITS).unwrap();
        assert_eq!(plain.text, "plain bomb\n");
        assert_eq!(plain.unreadable, None);
        let binary = scan(
            body("application/octet-stream", &[], b"\x89PNG\x00\xff\x80bomb"),
            LIMITS,
        );
        assert_eq!(binary.unwrap().unreadable, Some(Unreadable::Binary));
    }

    #[test]
    fn every_encoding_layer_in_every_header_value_is_undone() {
        let inner = br#"{"content":"bomb"}"#;
        let twice = gzip(&gzip(inner));
        let got = scan(body("application/json", &["gzip", "gzip"], &twice), LIMITS).unwrap();
        assert!(got.text.contains("bomb") && got.unreadable.is_none());
        let got = scan(body("application/json", &["gzip, gzip"], &twice), LIMITS).unwrap();
        assert!(got.text.contains("bomb"));
        // Two gzip members in one body: the second is read too.
        let mut members = gzip(br#"{"a":"fine","#);
        members.extend(gzip(br#""b":"bomb"}"#));
        let got = scan(body("application/json", &["gzip"], &members), LIMITS).unwrap();
        assert!(got.text.contains("bomb"), "{got:?}");
        let unknown = scan(body("application/json", &["zstd"], b"x"), LIMITS).unwrap();
        assert_eq!(unknown.unreadable, Some(Unreadable::UnknownEncoding));
        let many = ["gzip"; MAX_LAYERS + 1];
        // (more layers than the gateway undoes: said, not read)
        let deep = scan(body("application/json", &many, b"x"), LIMITS).unwrap();
        assert_eq!(deep.unreadable, Some(Unreadable::UnknownEncoding));
        assert_eq!(
            scan(body("application/json", &["gzip"], b"not gzip"), LIMITS),
            Err(ScanError::InvalidEncoding("gzip"))
        );
    }

    #[test]
    fn a_bomb_is_refused_and_a_long_body_is_read_up_to_the_limit() {
        let mut bomb = b"[".to_vec();
        bomb.extend(std::iter::repeat_n(&b"0,"[..], 4 << 20).flatten());
        bomb.extend(b"0]");
        let packed = gzip(&bomb);
        assert!(packed.len() < 64 * 1024);
        assert_eq!(
            scan(body("application/json", &["gzip"], &packed), LIMITS),
            Err(ScanError::TooLarge)
        );
        // Within the body limit but past the scan limit: read in part, said.
        let roomy = Limits {
            max_scan_bytes: 1 << 20,
            max_body_bytes: 16 << 20,
        };
        let got = scan(body("application/json", &["gzip"], &packed), roomy).unwrap();
        assert_eq!(got.unreadable, Some(Unreadable::ScanLimit));
        let mut start =
            gzip(format!("{{\"a\":\"bomb\",\"b\":\"{}\"}}", "x".repeat(1 << 20)).as_bytes());
        start.truncate(start.len() / 2);
        let cut = Body {
            complete: false,
            ..body("application/json", &["gzip"], &start)
        };
        let got = scan(cut, LIMITS).unwrap();
        assert!(got.text.contains("bomb"));
        assert_eq!(got.unreadable, Some(Unreadable::ScanLimit));
    }

    #[test]
    fn what_a_lenient_parser_accepts_is_read_too() {
        // NaN is not JSON, but Python takes it: the escapes are still undone.
        let nan = br#"{"x":NaN,"messages":[{"role":"user","content":"b\u006fmb"}]}"#;
        assert!(json_text(nan).contains("bomb"));
        let odd = br#"{"x": undefined, "c": "b\u006fmb"}"#;
        assert!(json_text(odd).contains("bomb"));
        let bom = b"\xEF\xBB\xBF{\"c\":\"b\\u006fmb\"}";
        assert!(json_text(bom).contains("bomb"));
        for little in [true, false] {
            let utf16: Vec<u8> = r#"{"c":"b\u006fmb"}"#
                .encode_utf16()
                .flat_map(|u| match little {
                    true => u.to_le_bytes(),
                    false => u.to_be_bytes(),
                })
                .collect();
            let got = scan(body("application/json", &[], &utf16), LIMITS).unwrap();
            assert!(got.text.contains("bomb"), "{got:?}");
        }
        let nul = scan(
            body("application/json", &[], b"{\"c\":\"bo\0\0mb\"}"),
            LIMITS,
        )
        .unwrap();
        assert_eq!(nul.unreadable, Some(Unreadable::Binary));
    }

    #[test]
    fn a_layer_that_inflates_to_nothing_still_counts() {
        // Gigabytes of empty gzip members would decode to nothing at all.
        let empty = gzip(b"");
        let members = empty.repeat((LIMITS.max_body_bytes / empty.len()) + 10);
        let packed = gzip(&members);
        assert_eq!(
            scan(body("application/json", &["gzip, gzip"], &packed), LIMITS),
            Err(ScanError::TooLarge)
        );
    }

    #[test]
    fn multipart_text_parts_are_read_and_binary_parts_said() {
        let body_bytes = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
Content-Type: application/octet-stream\r\n\r\n{\"body\":{\"messages\":[{\"content\":\"b\\u006fmb\"}]}}\n\r\n--XyZ--\r\n";
        let got = scan(
            body("multipart/form-data; boundary=XyZ", &[], body_bytes),
            LIMITS,
        )
        .unwrap();
        assert!(
            got.text.contains("batch") && got.text.contains("bomb"),
            "{got:?}"
        );
        assert_eq!(got.unreadable, None);
        let binary =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\r\n\x89PNG\xff\xfe\r\n--XyZ--\r\n";
        let got = scan(
            body("multipart/form-data; boundary=XyZ", &[], binary),
            LIMITS,
        )
        .unwrap();
        assert_eq!(got.unreadable, Some(Unreadable::Binary));
        let broken = scan(
            body("multipart/form-data; boundary=XyZ", &[], b"garbage"),
            LIMITS,
        );
        assert_eq!(
            broken.unwrap().unreadable,
            Some(Unreadable::MalformedMultipart)
        );
        // Two boundaries: parsers disagree on which one counts.
        let twice = scan(
            body(
                "multipart/form-data; boundary=XyZ; boundary=other",
                &[],
                body_bytes,
            ),
            LIMITS,
        );
        assert_eq!(
            twice.unwrap().unreadable,
            Some(Unreadable::MalformedMultipart)
        );
        // A boundary that says "boundary" is one boundary.
        let webkit = String::from_utf8(body_bytes.to_vec())
            .unwrap()
            .replace("XyZ", "----WebKitFormBoundaryQ");
        let got = scan(
            body(
                "multipart/form-data; boundary=----WebKitFormBoundaryQ",
                &[],
                webkit.as_bytes(),
            ),
            LIMITS,
        )
        .unwrap();
        assert_eq!(got.unreadable, None);
    }
}
