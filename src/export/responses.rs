//! A Responses API exchange (`POST /v1/responses`) as chat fine-tune
//! messages: the `instructions` become the system message, the input items
//! the user and assistant turns, the output message the answer (from
//! `response.completed` when streamed, else reassembled from the text
//! deltas). Only text converts faithfully; anything else (images, files,
//! tool calls, state kept upstream by `previous_response_id` or a
//! conversation) is skipped with its reason, never guessed.

use serde_json::{json, Value};

use super::SkipReason;
use crate::wire::sse_data;

/// The conversation a request sends, as chat messages.
pub(super) fn messages(request: &Value) -> Result<Vec<Value>, SkipReason> {
    if ["previous_response_id", "conversation"]
        .iter()
        .any(|k| request.get(*k).is_some_and(|v| !v.is_null()))
    {
        // Part of the conversation is upstream, not in the capture.
        return Err(SkipReason::StoredContext);
    }
    let mut out = Vec::new();
    if let Some(instructions) = request.get("instructions").filter(|v| !v.is_null()) {
        let text = instructions
            .as_str()
            .ok_or(SkipReason::UnsupportedContent)?;
        out.push(json!({"role": "system", "content": text}));
    }
    match request.get("input") {
        Some(Value::String(text)) => out.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                out.push(input_item(item)?);
            }
        }
        _ => return Err(SkipReason::InvalidRequest),
    }
    Ok(out)
}

/// One input item: a message with a role and text content.
fn input_item(item: &Value) -> Result<Value, SkipReason> {
    if item.get("type").is_some_and(|t| t != "message") {
        return Err(SkipReason::UnsupportedContent);
    }
    let role = match item.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant" | "system")) => r,
        Some("developer") => "system",
        _ => return Err(SkipReason::InvalidRequest),
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => text_of(parts)?,
        _ => return Err(SkipReason::InvalidRequest),
    };
    Ok(json!({"role": role, "content": content}))
}

/// The text of content parts (`input_text`, `output_text`).
fn text_of(parts: &[Value]) -> Result<String, SkipReason> {
    let mut text = String::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                text.push_str(
                    part.get("text")
                        .and_then(Value::as_str)
                        .ok_or(SkipReason::InvalidRequest)?,
                );
            }
            _ => return Err(SkipReason::UnsupportedContent),
        }
    }
    Ok(text)
}

/// The answer's text: the output message of a response document, or of a
/// stream (its `response.completed` event, or its text deltas).
pub(super) fn answer(response: &[u8], streamed: bool) -> Result<String, SkipReason> {
    if !streamed {
        let response: Value =
            serde_json::from_slice(response).map_err(|_| SkipReason::InvalidResponse)?;
        return output_text(&response);
    }
    let mut deltas = String::new();
    for data in sse_data(response) {
        let event: Value = serde_json::from_slice(data).map_err(|_| SkipReason::InvalidResponse)?;
        match event.get("type").and_then(Value::as_str) {
            Some("response.completed") => {
                return output_text(event.get("response").ok_or(SkipReason::InvalidResponse)?)
            }
            Some("response.output_text.delta") => {
                deltas.push_str(event.get("delta").and_then(Value::as_str).unwrap_or(""));
            }
            Some("response.failed" | "response.incomplete" | "error") => {
                return Err(SkipReason::UnsuccessfulExchange)
            }
            _ => {}
        }
    }
    match deltas.is_empty() {
        true => Err(SkipReason::NoAssistantMessage),
        false => Ok(deltas),
    }
}

fn output_text(response: &Value) -> Result<String, SkipReason> {
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .ok_or(SkipReason::InvalidResponse)?;
    let mut text = String::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let parts = item
                    .get("content")
                    .and_then(Value::as_array)
                    .ok_or(SkipReason::InvalidResponse)?;
                text.push_str(&text_of(parts)?);
            }
            // Reasoning summaries are not the answer.
            Some("reasoning") => {}
            _ => return Err(SkipReason::UnsupportedContent),
        }
    }
    match text.is_empty() {
        true => Err(SkipReason::NoAssistantMessage),
        false => Ok(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_converts_and_streams_reassemble() {
        let image = json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "what is this"}, {"type": "input_image", "image_url": "x"}]}]});
        assert_eq!(messages(&image), Err(SkipReason::UnsupportedContent));
        let tool = json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]});
        assert_eq!(messages(&tool), Err(SkipReason::UnsupportedContent));
        let developer = json!({"input": [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}]});
        assert_eq!(
            messages(&developer).unwrap(),
            [
                json!({"role": "system", "content": "rules"}),
                json!({"role": "user", "content": "hi"})
            ]
        );
        // A stream cut before response.completed: its deltas.
        let deltas = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"he\"}\n\n\
data: {\"type\":\"response.output_text.delta\",\"delta\":\"llo\"}\n\n";
        assert_eq!(answer(deltas, true).unwrap(), "hello");
        let failed = b"data: {\"type\":\"response.failed\",\"response\":{}}\n\n";
        assert_eq!(answer(failed, true), Err(SkipReason::UnsuccessfulExchange));
        let call = json!({"output": [{"type": "function_call", "name": "f", "arguments": "{}"}]});
        assert_eq!(
            answer(call.to_string().as_bytes(), false),
            Err(SkipReason::UnsupportedContent)
        );
    }
}
