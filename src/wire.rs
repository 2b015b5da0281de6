//! The APIs' wire formats, as far as the gateway reads them: SSE framing,
//! and the few fields the gateway records (model, token usage) from
//! request and response bodies it captured. Tolerant: anything unexpected
//! yields `None`, never an error; bodies are otherwise relayed untouched.

use serde::Deserialize;

use crate::domain::records::Usage;

#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct RawUsage {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    total_tokens: Option<i64>,
    // Anthropic's names.
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct ResponseFields<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    usage: Option<RawUsage>,
    /// Anthropic's `message_start` event nests both under `message`.
    message: Option<Box<ResponseFields<'a>>>,
    /// The Responses API's stream events nest both under `response`.
    response: Option<Box<ResponseFields<'a>>>,
}

/// What the record keeps from the bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub model: Option<String>,
    pub usage: Usage,
}

/// The `model` of a JSON request body.
pub fn request_model(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ModelOnly<'_>>(body)
        .ok()?
        .model
        .map(|m| truncate(&m))
}

/// Model and usage from a response: one JSON document, or an SSE stream whose
/// events carry them (OpenAI sends usage in the last chunk when asked;
/// Anthropic splits it over `message_start` and `message_delta`).
pub fn response_fields(body: &[u8], streamed: bool) -> Extracted {
    let mut out = Extracted::default();
    if streamed {
        for data in sse_data(body) {
            // Parsing every delta would cost more than the rest of the path;
            // only events that can carry what we keep are parsed.
            if out.model.is_some() && !contains(data, b"usage") {
                continue;
            }
            if let Ok(fields) = serde_json::from_slice::<ResponseFields<'_>>(data) {
                merge(&mut out, fields);
            }
        }
    } else if let Ok(fields) = serde_json::from_slice::<ResponseFields<'_>>(body) {
        merge(&mut out, fields);
    }
    if out.usage.total_tokens.is_none() {
        if let (Some(p), Some(c)) = (out.usage.prompt_tokens, out.usage.completion_tokens) {
            out.usage.total_tokens = p.checked_add(c);
        }
    }
    out
}

fn merge(out: &mut Extracted, fields: ResponseFields<'_>) {
    if out.model.is_none() {
        out.model = fields.model.map(|m| truncate(&m));
    }
    if let Some(u) = fields.usage {
        let u = &u;
        out.usage.prompt_tokens = u
            .prompt_tokens
            .or(u.input_tokens)
            .or(out.usage.prompt_tokens);
        out.usage.completion_tokens = u
            .completion_tokens
            .or(u.output_tokens)
            .or(out.usage.completion_tokens);
        out.usage.total_tokens = u.total_tokens.or(out.usage.total_tokens);
    }
    if let Some(message) = fields.message {
        merge(out, *message);
    }
    if let Some(response) = fields.response {
        merge(out, *response);
    }
}

/// The payloads of the `data:` lines of an SSE stream, without `[DONE]`.
pub fn sse_data(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let data = line.strip_prefix(b"data:")?;
        let data = data.strip_prefix(b" ").unwrap_or(data);
        (data != b"[DONE]" && !data.is_empty()).then_some(data)
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Model names are short; a hostile body must not put megabytes in a
/// column, nor a NUL that PostgreSQL text refuses.
fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    let mut end = s.len().min(MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace('\0', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_response_model_and_usage() {
        let body = br#"{"id":"x","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        let got = response_fields(body, false);
        assert_eq!(got.model.as_deref(), Some("gpt-4o"));
        assert_eq!(got.usage.total_tokens, Some(8));
    }

    #[test]
    fn openai_sse_with_usage_in_last_chunk() {
        let body = b"data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1,\"total_tokens\":3}}\n\n\
data: [DONE]\n\n";
        let got = response_fields(body, true);
        assert_eq!(got.model.as_deref(), Some("m1"));
        assert_eq!(got.usage.prompt_tokens, Some(2));
        assert_eq!(got.usage.total_tokens, Some(3));
    }

    #[test]
    fn anthropic_sse_usage_is_split_over_events() {
        let body = b"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\r\n\r\n";
        let got = response_fields(body, true);
        assert_eq!(got.model.as_deref(), Some("claude"));
        assert_eq!(got.usage.prompt_tokens, Some(10));
        assert_eq!(got.usage.completion_tokens, Some(7));
        assert_eq!(got.usage.total_tokens, Some(17));
    }

    #[test]
    fn garbage_yields_nothing() {
        for body in [
            &b"not json"[..],
            b"",
            b"\xff\xfe",
            b"data: {broken\n\n",
            b"[1,2]",
        ] {
            assert_eq!(response_fields(body, true), Extracted::default());
            assert_eq!(response_fields(body, false), Extracted::default());
            assert_eq!(request_model(body), None);
        }
    }

    #[test]
    fn request_model_is_read_and_bounded() {
        assert_eq!(
            request_model(br#"{"model":"gpt-4o-mini","messages":[]}"#).as_deref(),
            Some("gpt-4o-mini")
        );
        let long = format!(r#"{{"model":"{}"}}"#, "é".repeat(300));
        assert!(request_model(long.as_bytes()).unwrap().len() <= 200);
        assert_eq!(
            request_model(br#"{"model":"a\u0000b"}"#).as_deref(),
            Some("ab")
        );
    }
}
