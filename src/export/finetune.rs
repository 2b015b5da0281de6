//! One stored exchange as one chat fine-tune JSONL line:
//! `{"messages": [...]}` with the request's messages and the assistant's
//! answer (reassembled from SSE deltas when the response streamed), plus
//! `"tools"` when the request declared tools. Pure: bytes in, line out.
//!
//! OpenAI chat completions pass through nearly as sent. Anthropic messages
//! are converted when they are plain text (a `system` prompt becomes the
//! first message); anything else is skipped with a reason, never guessed.

use serde_json::{json, Map, Value};

use super::SkipReason;
use crate::wire::sse_data;

/// A stored exchange, as the export sees it.
#[derive(Debug, Clone, Copy)]
pub struct Captured<'a> {
    pub path: &'a str,
    pub status: u16,
    /// The response was relayed to its end.
    pub completed: bool,
    pub streamed: bool,
    pub request: &'a [u8],
    pub response: &'a [u8],
    /// Either body was cut at the capture limit.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    ChatCompletions,
    AnthropicMessages,
    Responses,
}

fn api_of(path: &str) -> Option<Api> {
    if path.ends_with("/chat/completions") {
        Some(Api::ChatCompletions)
    } else if path.ends_with("/responses") {
        Some(Api::Responses)
    } else if path.ends_with("/messages") && !path.contains("/threads/") {
        Some(Api::AnthropicMessages)
    } else {
        None
    }
}

/// The fine-tune line for `c`, without the trailing newline.
pub fn finetune_line(c: &Captured<'_>) -> Result<String, SkipReason> {
    let api = api_of(c.path).ok_or(SkipReason::UnsupportedEndpoint)?;
    if c.truncated {
        return Err(SkipReason::TruncatedCapture);
    }
    if !c.completed || !(200..300).contains(&c.status) {
        return Err(SkipReason::UnsuccessfulExchange);
    }
    let request: Value =
        serde_json::from_slice(c.request).map_err(|_| SkipReason::InvalidRequest)?;
    let (mut messages, tools) = match api {
        Api::ChatCompletions => (openai_messages(&request)?, request.get("tools").cloned()),
        Api::AnthropicMessages => (anthropic_messages(&request)?, None),
        Api::Responses => (super::responses::messages(&request)?, None),
    };
    let answer = match (api, c.streamed) {
        (Api::Responses, streamed) => {
            let text = super::responses::answer(c.response, streamed)?;
            assistant(Some(&text), None)?
        }
        (Api::ChatCompletions, false) => openai_answer(c.response)?,
        (Api::ChatCompletions, true) => openai_streamed_answer(c.response)?,
        (Api::AnthropicMessages, false) => anthropic_answer(c.response)?,
        (Api::AnthropicMessages, true) => anthropic_streamed_answer(c.response)?,
    };
    messages.push(answer);
    let mut line = Map::new();
    line.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = tools.filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        line.insert("tools".into(), tools);
    }
    Ok(Value::Object(line).to_string())
}

/// The assistant's answer as readable text (streamed answers reassembled),
/// for reviewers; `None` when the exchange is not a chat or message call.
pub fn answer_text(path: &str, streamed: bool, response: &[u8]) -> Option<String> {
    let answer = match (api_of(path)?, streamed) {
        (Api::Responses, streamed) => super::responses::answer(response, streamed)
            .and_then(|text| assistant(Some(&text), None)),
        (Api::ChatCompletions, false) => openai_answer(response),
        (Api::ChatCompletions, true) => openai_streamed_answer(response),
        (Api::AnthropicMessages, false) => anthropic_answer(response),
        (Api::AnthropicMessages, true) => anthropic_streamed_answer(response),
    }
    .ok()?;
    let mut text = answer
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(calls) = answer.get("tool_calls") {
        text.push_str(&format!("\n[tool calls] {calls}"));
    }
    Some(text)
}

/// The keys a chat fine-tune message may carry.
const MESSAGE_KEYS: [&str; 6] = [
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "function_call",
];

fn openai_messages(request: &Value) -> Result<Vec<Value>, SkipReason> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(SkipReason::InvalidRequest)?;
    messages
        .iter()
        .map(|m| {
            let m = m.as_object().ok_or(SkipReason::InvalidRequest)?;
            if !m.get("role").is_some_and(Value::is_string) {
                return Err(SkipReason::InvalidRequest);
            }
            Ok(Value::Object(
                m.iter()
                    .filter(|(k, v)| MESSAGE_KEYS.contains(&k.as_str()) && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
        })
        .collect()
}

fn openai_answer(response: &[u8]) -> Result<Value, SkipReason> {
    let response: Value =
        serde_json::from_slice(response).map_err(|_| SkipReason::InvalidResponse)?;
    let message = response
        .pointer("/choices/0/message")
        .and_then(Value::as_object)
        .ok_or(SkipReason::InvalidResponse)?;
    let content = message.get("content").and_then(Value::as_str);
    let tool_calls = message
        .get("tool_calls")
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    assistant(content, tool_calls.cloned())
}

fn assistant(content: Option<&str>, tool_calls: Option<Value>) -> Result<Value, SkipReason> {
    let content = content.filter(|c| !c.is_empty());
    if content.is_none() && tool_calls.is_none() {
        return Err(SkipReason::NoAssistantMessage);
    }
    let mut m = Map::new();
    m.insert("role".into(), "assistant".into());
    m.insert("content".into(), content.map_or(Value::Null, Value::from));
    if let Some(calls) = tool_calls {
        m.insert("tool_calls".into(), calls);
    }
    Ok(Value::Object(m))
}

/// A tool call being reassembled from deltas.
#[derive(Default)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

fn openai_streamed_answer(response: &[u8]) -> Result<Value, SkipReason> {
    let mut content = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for data in sse_data(response) {
        let chunk: Value = serde_json::from_slice(data).map_err(|_| SkipReason::InvalidResponse)?;
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            continue;
        };
        // The first choice is the answer (n > 1 streams interleave indexes).
        let Some(delta) = choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            .and_then(|c| c.get("delta"))
        else {
            continue;
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            content.push_str(text);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            merge_tool_call(&mut calls, call)?;
        }
    }
    let tool_calls = (!calls.is_empty()).then(|| {
        Value::Array(
            calls
                .into_iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect(),
        )
    });
    assistant(Some(&content), tool_calls)
}

/// Tool-call deltas name their call by `index`; the id and name come once,
/// the arguments in pieces.
fn merge_tool_call(calls: &mut Vec<ToolCall>, delta: &Value) -> Result<(), SkipReason> {
    let index = delta
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|&i| i <= calls.len() + 64)
        .ok_or(SkipReason::InvalidResponse)?;
    if calls.len() <= index {
        calls.resize_with(index + 1, ToolCall::default);
    }
    let call = &mut calls[index];
    if let Some(id) = delta.get("id").and_then(Value::as_str) {
        call.id = id.to_owned();
    }
    if let Some(f) = delta.get("function") {
        if let Some(name) = f.get("name").and_then(Value::as_str) {
            call.name.push_str(name);
        }
        if let Some(args) = f.get("arguments").and_then(Value::as_str) {
            call.arguments.push_str(args);
        }
    }
    Ok(())
}

fn anthropic_messages(request: &Value) -> Result<Vec<Value>, SkipReason> {
    let mut out = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => out.push(json!({"role": "system", "content": anthropic_text(system)?})),
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(SkipReason::InvalidRequest)?;
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .filter(|r| matches!(*r, "user" | "assistant"))
            .ok_or(SkipReason::InvalidRequest)?;
        let content = m.get("content").ok_or(SkipReason::InvalidRequest)?;
        out.push(json!({"role": role, "content": anthropic_text(content)?}));
    }
    Ok(out)
}

/// A string, or text blocks joined; any other block (images, tools,
/// documents) cannot be expressed in a text fine-tune line.
fn anthropic_text(content: &Value) -> Result<String, SkipReason> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(
                        block
                            .get("text")
                            .and_then(Value::as_str)
                            .ok_or(SkipReason::InvalidRequest)?,
                    ),
                    Some(_) => return Err(SkipReason::UnsupportedContent),
                    None => return Err(SkipReason::InvalidRequest),
                }
            }
            Ok(text)
        }
        _ => Err(SkipReason::InvalidRequest),
    }
}

fn anthropic_answer(response: &[u8]) -> Result<Value, SkipReason> {
    let response: Value =
        serde_json::from_slice(response).map_err(|_| SkipReason::InvalidResponse)?;
    let blocks = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or(SkipReason::InvalidResponse)?;
    let mut text = String::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            // Reasoning is not part of the answer a fine-tune line teaches.
            Some("thinking" | "redacted_thinking") => {}
            _ => return Err(SkipReason::UnsupportedContent),
        }
    }
    assistant(Some(&text), None)
}

fn anthropic_streamed_answer(response: &[u8]) -> Result<Value, SkipReason> {
    let mut text = String::new();
    for data in sse_data(response) {
        let event: Value = serde_json::from_slice(data).map_err(|_| SkipReason::InvalidResponse)?;
        match event.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                let kind = event.pointer("/content_block/type").and_then(Value::as_str);
                if !matches!(kind, Some("text" | "thinking" | "redacted_thinking")) {
                    return Err(SkipReason::UnsupportedContent);
                }
            }
            Some("content_block_delta")
                if event.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
            {
                if let Some(t) = event.pointer("/delta/text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            _ => {}
        }
    }
    assistant(Some(&text), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured<'a>(path: &'a str, streamed: bool, req: &'a str, resp: &'a str) -> Captured<'a> {
        Captured {
            path,
            status: 200,
            completed: true,
            streamed,
            request: req.as_bytes(),
            response: resp.as_bytes(),
            truncated: false,
        }
    }

    fn line(c: &Captured<'_>) -> Value {
        serde_json::from_str(&finetune_line(c).unwrap()).unwrap()
    }

    const CHAT_REQ: &str = r#"{"model":"m","temperature":0.2,"messages":[
        {"role":"system","content":"be brief"},{"role":"user","content":"hi","extra":1}]}"#;

    #[test]
    fn chat_json_keeps_messages_and_adds_the_answer() {
        let resp = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hello","refusal":null}}]}"#;
        assert_eq!(
            line(&captured("/v1/chat/completions", false, CHAT_REQ, resp)),
            json!({"messages": [
                {"role":"system","content":"be brief"},
                {"role":"user","content":"hi"},
                {"role":"assistant","content":"hello"}]})
        );
    }

    #[test]
    fn chat_sse_deltas_are_reassembled_including_tool_calls() {
        let resp = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other choice\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n",
            "data: [DONE]\n\n"
        );
        let got = line(&captured("/v1/chat/completions", true, CHAT_REQ, resp));
        assert_eq!(
            got["messages"][2],
            json!({"role":"assistant","content":"Hello","tool_calls":[
                {"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]})
        );
    }

    #[test]
    fn anthropic_text_is_converted_with_the_system_prompt_first() {
        let req = r#"{"model":"c","max_tokens":5,"system":[{"type":"text","text":"sys"}],
            "messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#;
        let json_resp =
            r#"{"content":[{"type":"thinking","thinking":"…"},{"type":"text","text":"ok"}]}"#;
        let sse_resp = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"o\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"k\"}}\n\n",
        );
        let want = json!({"messages": [
            {"role":"system","content":"sys"},
            {"role":"user","content":"ab"},
            {"role":"assistant","content":"ok"}]});
        assert_eq!(
            line(&captured("/anthropic/v1/messages", false, req, json_resp)),
            want
        );
        assert_eq!(
            line(&captured("/anthropic/v1/messages", true, req, sse_resp)),
            want
        );
    }

    #[test]
    fn what_cannot_be_a_faithful_line_is_skipped_with_its_reason() {
        let ok_resp = r#"{"choices":[{"message":{"content":"x"}}]}"#;
        let cases: Vec<(Captured<'_>, SkipReason)> = vec![
            (
                captured("/v1/embeddings", false, CHAT_REQ, ok_resp),
                SkipReason::UnsupportedEndpoint,
            ),
            (
                captured("/v1/threads/t/messages", false, CHAT_REQ, ok_resp),
                SkipReason::UnsupportedEndpoint,
            ),
            (
                Captured {
                    truncated: true,
                    ..captured("/v1/chat/completions", false, CHAT_REQ, ok_resp)
                },
                SkipReason::TruncatedCapture,
            ),
            (
                Captured {
                    status: 429,
                    ..captured("/v1/chat/completions", false, CHAT_REQ, ok_resp)
                },
                SkipReason::UnsuccessfulExchange,
            ),
            (
                Captured {
                    completed: false,
                    ..captured("/v1/chat/completions", false, CHAT_REQ, ok_resp)
                },
                SkipReason::UnsuccessfulExchange,
            ),
            (
                captured("/v1/chat/completions", false, "{not json", ok_resp),
                SkipReason::InvalidRequest,
            ),
            (
                captured("/v1/chat/completions", false, r#"{"messages":[]}"#, ok_resp),
                SkipReason::InvalidRequest,
            ),
            (
                captured("/v1/chat/completions", false, CHAT_REQ, "<html>"),
                SkipReason::InvalidResponse,
            ),
            (
                captured(
                    "/v1/chat/completions",
                    false,
                    CHAT_REQ,
                    r#"{"choices":[{"message":{"content":null}}]}"#,
                ),
                SkipReason::NoAssistantMessage,
            ),
            (
                captured(
                    "/anthropic/v1/messages",
                    false,
                    r#"{"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}"#,
                    r#"{"content":[{"type":"text","text":"x"}]}"#,
                ),
                SkipReason::UnsupportedContent,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(finetune_line(&c), Err(want), "{}", c.path);
        }
    }

    #[test]
    fn hostile_tool_call_indexes_do_not_allocate() {
        let resp = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":4000000000}]}}]}\n\n";
        assert_eq!(
            finetune_line(&captured("/v1/chat/completions", true, CHAT_REQ, resp)),
            Err(SkipReason::InvalidResponse)
        );
    }
}
