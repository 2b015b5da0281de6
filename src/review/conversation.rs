//! A stored exchange read as a conversation, for reviewers: who said what,
//! the tool calls and their results, the answer reassembled when it
//! streamed. Chat completions, Anthropic messages and the Responses API.
//! Pure and lenient: unlike the fine-tune export (`export::finetune`), which
//! skips anything it cannot express, a reviewer must see everything, so a
//! block it does not know is shown by its kind, and a body it cannot read
//! at all is left to the raw view.

use serde_json::Value;

use crate::wire::sse_data;

/// The API an exchange spoke, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    AnthropicMessages,
    Responses,
    Other,
}

impl Api {
    pub fn of(path: &str) -> Self {
        if path.ends_with("/chat/completions") {
            Self::ChatCompletions
        } else if path.ends_with("/responses") {
            Self::Responses
        } else if path.ends_with("/messages") && !path.contains("/threads/") {
            Self::AnthropicMessages
        } else {
            Self::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "Chat Completions",
            Self::AnthropicMessages => "Anthropic Messages",
            Self::Responses => "Responses",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub api: Api,
    /// The instructions and messages the caller sent; `None` when the
    /// request could not be read as this API's (see the raw body).
    pub request: Option<Vec<Turn>>,
    /// What the model answered; `None` when it could not be read.
    pub answer: Option<Vec<Turn>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// A call the model asked for, with its arguments as sent (JSON text).
    ToolCall {
        name: String,
        arguments: String,
    },
    /// A tool's result the caller sent back.
    ToolResult {
        call: String,
        content: String,
    },
    /// Something not shown as text (an image, a file, reasoning): its kind.
    Other(String),
}

impl Conversation {
    /// Apply `f` to every text a caller or model wrote, roles included
    /// (a caller may write anything there).
    pub fn map_text(&mut self, f: impl Fn(&str) -> String) {
        let turns = self.request.iter_mut().chain(self.answer.iter_mut());
        for turn in turns.flatten() {
            turn.role = f(&turn.role);
        }
        let turns = self.request.iter_mut().chain(self.answer.iter_mut());
        for part in turns.flatten().flat_map(|t| t.parts.iter_mut()) {
            match part {
                Part::Text(t) | Part::Other(t) => *t = f(t),
                Part::ToolCall { name, arguments } => {
                    *name = f(name);
                    *arguments = f(arguments);
                }
                Part::ToolResult { call, content } => {
                    *call = f(call);
                    *content = f(content);
                }
            }
        }
    }
}

/// Read an exchange of `path`.
pub fn read(path: &str, streamed: bool, request: &[u8], response: &[u8]) -> Conversation {
    let api = Api::of(path);
    let request_json = serde_json::from_slice::<Value>(request).ok();
    let (request, answer) = match api {
        Api::ChatCompletions => (
            request_json.as_ref().and_then(chat_request),
            chat_answer(response, streamed),
        ),
        Api::AnthropicMessages => (
            request_json.as_ref().and_then(anthropic_request),
            anthropic_answer(response, streamed),
        ),
        Api::Responses => (
            request_json.as_ref().and_then(responses_request),
            responses_answer(response, streamed),
        ),
        Api::Other => (None, None),
    };
    Conversation {
        api,
        request,
        answer,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn turn(role: &str, parts: Vec<Part>) -> Turn {
    Turn {
        role: role.to_owned(),
        parts,
    }
}

/// Content parts: a string, or an array of typed blocks (OpenAI chat and
/// Responses parts, Anthropic blocks).
fn parts(content: &Value) -> Vec<Part> {
    match content {
        Value::Null => Vec::new(),
        Value::String(s) => vec![Part::Text(s.clone())],
        Value::Array(blocks) => blocks.iter().map(block).collect(),
        other => vec![Part::Text(other.to_string())],
    }
}

fn block(b: &Value) -> Part {
    let kind = str_at(b, "type").unwrap_or("");
    match kind {
        "text" | "input_text" | "output_text" => {
            Part::Text(text_of(b.get("text").unwrap_or(&Value::Null)))
        }
        "refusal" => Part::Text(format!("[refusal] {}", str_at(b, "refusal").unwrap_or(""))),
        "tool_use" | "server_tool_use" => Part::ToolCall {
            name: str_at(b, "name").unwrap_or("").to_owned(),
            arguments: b.get("input").map(Value::to_string).unwrap_or_default(),
        },
        "tool_result" => Part::ToolResult {
            call: str_at(b, "tool_use_id").unwrap_or("").to_owned(),
            content: match b.get("content") {
                Some(Value::Array(inner)) => joined(&inner.iter().map(block).collect::<Vec<_>>()),
                Some(v) => text_of(v),
                None => String::new(),
            },
        },
        "thinking" => Part::Other(format!("thinking: {}", str_at(b, "thinking").unwrap_or(""))),
        "" => Part::Text(b.to_string()),
        other => Part::Other(other.to_owned()),
    }
}

/// Parts as one text (a tool result's blocks).
fn joined(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Other(kind) => format!("[{kind}]"),
            Part::ToolCall { name, arguments } => format!("[{name}] {arguments}"),
            Part::ToolResult { content, .. } => content.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn chat_request(body: &Value) -> Option<Vec<Turn>> {
    let messages = body.get("messages")?.as_array()?;
    Some(messages.iter().map(chat_message).collect())
}

fn chat_message(m: &Value) -> Turn {
    let role = str_at(m, "role").unwrap_or("unknown");
    let mut parts = Vec::new();
    let content = m.get("content").map(self::parts).unwrap_or_default();
    if role == "tool" {
        parts.push(Part::ToolResult {
            call: str_at(m, "tool_call_id").unwrap_or("").to_owned(),
            content: joined(&content),
        });
    } else {
        parts.extend(content);
    }
    if let Some(refusal) = str_at(m, "refusal") {
        parts.push(Part::Text(format!("[refusal] {refusal}")));
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        parts.push(Part::ToolCall {
            name: call
                .pointer("/function/name")
                .map(text_of)
                .unwrap_or_default(),
            arguments: call
                .pointer("/function/arguments")
                .map(text_of)
                .unwrap_or_default(),
        });
    }
    if let Some(call) = m.get("function_call") {
        parts.push(Part::ToolCall {
            name: call.get("name").map(text_of).unwrap_or_default(),
            arguments: call.get("arguments").map(text_of).unwrap_or_default(),
        });
    }
    turn(role, parts)
}

fn chat_answer(response: &[u8], streamed: bool) -> Option<Vec<Turn>> {
    if !streamed {
        let body: Value = serde_json::from_slice(response).ok()?;
        let message = body.pointer("/choices/0/message")?;
        return Some(vec![chat_message(message)]);
    }
    let mut content = String::new();
    let mut refusal = String::new();
    // Tool calls come in pieces named by their index.
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut seen = false;
    for data in sse_data(response) {
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let Some(delta) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
                    .and_then(|c| c.get("delta"))
            })
        else {
            continue;
        };
        seen = true;
        content.push_str(str_at(delta, "content").unwrap_or(""));
        refusal.push_str(str_at(delta, "refusal").unwrap_or(""));
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(index) = call.get("index").and_then(Value::as_u64) else {
                continue;
            };
            let Some(index) = usize::try_from(index)
                .ok()
                .filter(|&i| i <= calls.len() + 64)
            else {
                continue;
            };
            if calls.len() <= index {
                calls.resize_with(index + 1, Default::default);
            }
            calls[index].0.push_str(
                call.pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            calls[index].1.push_str(
                call.pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
        }
    }
    if !seen {
        return None;
    }
    let mut parts = Vec::new();
    if !content.is_empty() {
        parts.push(Part::Text(content));
    }
    if !refusal.is_empty() {
        parts.push(Part::Text(format!("[refusal] {refusal}")));
    }
    parts.extend(
        calls
            .into_iter()
            .map(|(name, arguments)| Part::ToolCall { name, arguments }),
    );
    Some(vec![turn("assistant", parts)])
}

fn anthropic_request(body: &Value) -> Option<Vec<Turn>> {
    let messages = body.get("messages")?.as_array()?;
    let mut turns = Vec::new();
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        turns.push(turn("system", parts(system)));
    }
    for m in messages {
        let role = str_at(m, "role").unwrap_or("unknown");
        turns.push(turn(role, m.get("content").map(parts).unwrap_or_default()));
    }
    Some(turns)
}

fn anthropic_answer(response: &[u8], streamed: bool) -> Option<Vec<Turn>> {
    if !streamed {
        let body: Value = serde_json::from_slice(response).ok()?;
        let content = body.get("content")?;
        return Some(vec![turn("assistant", parts(content))]);
    }
    // Blocks by index: started whole, then grown by deltas.
    let mut blocks: Vec<Value> = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    for data in sse_data(response) {
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let index = event
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i <= blocks.len() + 64);
        match (str_at(&event, "type"), index) {
            (Some("content_block_start"), Some(i)) => {
                if blocks.len() <= i {
                    blocks.resize(i + 1, Value::Null);
                    inputs.resize(i + 1, String::new());
                }
                blocks[i] = event.get("content_block").cloned().unwrap_or(Value::Null);
            }
            (Some("content_block_delta"), Some(i)) if i < blocks.len() => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                let grow = |block: &mut Value, key: &str, more: &str| {
                    let before = str_at(block, key).unwrap_or("").to_owned();
                    if let Some(map) = block.as_object_mut() {
                        map.insert(key.into(), Value::String(before + more));
                    }
                };
                match str_at(delta, "type") {
                    Some("text_delta") => {
                        grow(&mut blocks[i], "text", str_at(delta, "text").unwrap_or(""))
                    }
                    Some("thinking_delta") => grow(
                        &mut blocks[i],
                        "thinking",
                        str_at(delta, "thinking").unwrap_or(""),
                    ),
                    Some("input_json_delta") => {
                        inputs[i].push_str(str_at(delta, "partial_json").unwrap_or(""))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if blocks.is_empty() {
        return None;
    }
    let parts = blocks
        .iter()
        .zip(&inputs)
        .filter(|(b, _)| !b.is_null())
        .map(|(b, input)| {
            let mut part = block(b);
            // A tool call starts with an empty input; its JSON comes in pieces.
            if let Part::ToolCall { arguments, .. } = &mut part {
                if !input.is_empty() {
                    arguments.clone_from(input);
                }
            }
            part
        })
        .collect();
    Some(vec![turn("assistant", parts)])
}

fn responses_request(body: &Value) -> Option<Vec<Turn>> {
    let mut turns = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        turns.push(turn(
            "instructions",
            vec![Part::Text(instructions.to_owned())],
        ));
    }
    match body.get("input")? {
        Value::String(s) => turns.push(turn("user", vec![Part::Text(s.clone())])),
        Value::Array(items) => turns.extend(items.iter().map(responses_item)),
        _ => return None,
    }
    Some(turns)
}

/// One item of a Responses input or output.
fn responses_item(item: &Value) -> Turn {
    match str_at(item, "type") {
        Some("function_call" | "custom_tool_call") => turn(
            "assistant",
            vec![Part::ToolCall {
                name: str_at(item, "name").unwrap_or("").to_owned(),
                arguments: item
                    .get("arguments")
                    .or_else(|| item.get("input"))
                    .map(text_of)
                    .unwrap_or_default(),
            }],
        ),
        Some("function_call_output" | "custom_tool_call_output") => turn(
            "tool",
            vec![Part::ToolResult {
                call: str_at(item, "call_id").unwrap_or("").to_owned(),
                content: item.get("output").map(text_of).unwrap_or_default(),
            }],
        ),
        None | Some("message") => turn(
            str_at(item, "role").unwrap_or("user"),
            item.get("content").map(parts).unwrap_or_default(),
        ),
        Some(other) => turn(
            str_at(item, "role").unwrap_or("item"),
            vec![Part::Other(other.to_owned())],
        ),
    }
}

fn responses_answer(response: &[u8], streamed: bool) -> Option<Vec<Turn>> {
    if !streamed {
        let body: Value = serde_json::from_slice(response).ok()?;
        return responses_output(&body);
    }
    // The completed response carries the whole output. Cut short, each
    // output position shows its finished item, or else the text streamed
    // into it so far (a reasoning item can finish before the message).
    let mut items: std::collections::BTreeMap<u64, Turn> = std::collections::BTreeMap::new();
    let mut texts: std::collections::BTreeMap<u64, String> = std::collections::BTreeMap::new();
    for data in sse_data(response) {
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let index = event
            .get("output_index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match str_at(&event, "type") {
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                if let Some(turns) = event.get("response").and_then(responses_output) {
                    return Some(turns);
                }
            }
            Some("response.output_item.done") => {
                if let Some(item) = event.get("item") {
                    items.insert(index, responses_item(item));
                }
            }
            Some("response.output_text.delta") => texts
                .entry(index)
                .or_default()
                .push_str(str_at(&event, "delta").unwrap_or("")),
            _ => {}
        }
    }
    for (index, text) in texts {
        items
            .entry(index)
            .or_insert_with(|| turn("assistant", vec![Part::Text(text)]));
    }
    (!items.is_empty()).then(|| items.into_values().collect())
}

fn responses_output(body: &Value) -> Option<Vec<Turn>> {
    let output = body.get("output")?.as_array()?;
    Some(output.iter().map(responses_item).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn sse(events: &[Value]) -> Vec<u8> {
        let mut out = String::new();
        for e in events {
            out.push_str(&format!("data: {e}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
        out.into_bytes()
    }

    fn text(s: &str) -> Part {
        Part::Text(s.into())
    }

    #[test]
    fn chat_completions_with_tool_calls_and_results() {
        let request = bytes(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image_url", "image_url": {"url": "data:"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"}
        ]}));
        let response = bytes(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "It rains."}}]}),
        );
        let c = read("/v1/chat/completions", false, &request, &response);
        assert_eq!(c.api, Api::ChatCompletions);
        let turns = c.request.unwrap();
        assert_eq!(turns.len(), 4);
        assert_eq!(
            turns[1].parts,
            vec![text("weather?"), Part::Other("image_url".into())]
        );
        assert_eq!(
            turns[2].parts,
            vec![Part::ToolCall {
                name: "weather".into(),
                arguments: "{\"city\":\"Oslo\"}".into()
            }]
        );
        assert_eq!(
            turns[3].parts,
            vec![Part::ToolResult {
                call: "c1".into(),
                content: "rain".into()
            }]
        );
        assert_eq!(
            c.answer.unwrap(),
            vec![turn("assistant", vec![text("It rains.")])]
        );
    }

    #[test]
    fn a_streamed_chat_answer_is_reassembled_with_its_tool_calls() {
        let response = sse(&[
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
        ]);
        let c = read("/v1/chat/completions", true, b"{}", &response);
        assert_eq!(
            c.answer.unwrap()[0].parts,
            vec![
                text("Hello"),
                Part::ToolCall {
                    name: "f".into(),
                    arguments: "{\"a\":1}".into()
                }
            ]
        );
        // `{}` has no messages: not a chat request the view can show.
        assert_eq!(c.request, None);
    }

    #[test]
    fn anthropic_messages_plain_and_streamed() {
        let request = bytes(
            json!({"system": [{"type": "text", "text": "sys"}], "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "lookup", "input": {"q": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "found"}]}]}
            ]}),
        );
        let plain = bytes(
            json!({"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hello"}]}),
        );
        let c = read("/anthropic/v1/messages", false, &request, &plain);
        let turns = c.request.unwrap();
        assert_eq!(turns[0], turn("system", vec![text("sys")]));
        assert_eq!(
            turns[2].parts,
            vec![Part::ToolCall {
                name: "lookup".into(),
                arguments: "{\"q\":1}".into()
            }]
        );
        assert_eq!(
            turns[3].parts,
            vec![Part::ToolResult {
                call: "t".into(),
                content: "found".into()
            }]
        );
        assert_eq!(
            c.answer.unwrap()[0].parts,
            vec![Part::Other("thinking: hmm".into()), text("Hello")]
        );

        let streamed = sse(&[
            json!({"type": "message_start", "message": {}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "2}"}}),
        ]);
        let c = read("/anthropic/v1/messages", true, &request, &streamed);
        assert_eq!(
            c.answer.unwrap()[0].parts,
            vec![
                text("Hello"),
                Part::ToolCall {
                    name: "f".into(),
                    arguments: "{\"x\":2}".into()
                }
            ]
        );
    }

    #[test]
    fn responses_api_input_items_and_streamed_output() {
        let request = bytes(json!({"instructions": "be kind", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "k"},
            {"type": "function_call_output", "call_id": "k", "output": "42"}
        ]}));
        let done = json!({"type": "response.completed", "response": {"output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "The answer is 42"}]}
        ]}});
        let streamed = sse(&[
            json!({"type": "response.output_text.delta", "delta": "The "}),
            done,
        ]);
        let c = read("/v1/responses", true, &request, &streamed);
        let turns = c.request.unwrap();
        assert_eq!(turns[0], turn("instructions", vec![text("be kind")]));
        assert_eq!(
            turns[3].parts,
            vec![Part::ToolResult {
                call: "k".into(),
                content: "42".into()
            }]
        );
        let answer = c.answer.unwrap();
        assert_eq!(answer[1], turn("assistant", vec![text("The answer is 42")]));

        // Cut short before the completed event: the deltas are what there is.
        let cut = sse(&[
            json!({"type": "response.output_text.delta", "delta": "The "}),
            json!({"type": "response.output_text.delta", "delta": "ans"}),
        ]);
        let c = read("/v1/responses", true, br#"{"input": "q"}"#, &cut);
        assert_eq!(c.request.unwrap(), vec![turn("user", vec![text("q")])]);
        assert_eq!(
            c.answer.unwrap(),
            vec![turn("assistant", vec![text("The ans")])]
        );
    }

    #[test]
    fn a_responses_stream_cut_short_keeps_what_each_output_position_got() {
        // The reasoning item finished; the message was cut mid-stream.
        let cut = sse(&[
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "summary": []}}),
            json!({"type": "response.output_text.delta", "output_index": 1, "delta": "Half an "}),
            json!({"type": "response.output_text.delta", "output_index": 1, "delta": "answer"}),
        ]);
        let answer = read("/v1/responses", true, br#"{"input": "q"}"#, &cut)
            .answer
            .unwrap();
        assert_eq!(answer.len(), 2);
        assert_eq!(answer[0].parts, vec![Part::Other("reasoning".into())]);
        assert_eq!(answer[1], turn("assistant", vec![text("Half an answer")]));
        // A message that finished is shown whole, not as its deltas.
        let done = sse(&[
            json!({"type": "response.output_text.delta", "output_index": 0, "delta": "Hel"}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}}),
        ]);
        let answer = read("/v1/responses", true, br#"{"input": "q"}"#, &done)
            .answer
            .unwrap();
        assert_eq!(answer, vec![turn("assistant", vec![text("Hello")])]);
    }

    #[test]
    fn a_plain_responses_answer_with_a_function_call_and_a_refusal() {
        let body = bytes(json!({"output": [
            {"type": "function_call", "name": "lookup", "arguments": "{\"q\":1}", "call_id": "c"},
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
        ]}));
        let answer = read("/v1/responses", false, br#"{"input": "q"}"#, &body)
            .answer
            .unwrap();
        assert_eq!(
            answer[0].parts,
            vec![Part::ToolCall {
                name: "lookup".into(),
                arguments: "{\"q\":1}".into()
            }]
        );
        assert_eq!(answer[1].parts, vec![text("[refusal] no")]);
    }

    #[test]
    fn unreadable_bodies_are_left_to_the_raw_view() {
        let c = read(
            "/v1/chat/completions",
            false,
            b"{\"messages\": [tru",
            b"<html>",
        );
        assert_eq!((c.request, c.answer), (None, None));
        let c = read("/v1/embeddings", false, b"{}", b"{}");
        assert_eq!(c.api, Api::Other);
        // Odd shapes are shown, not dropped.
        let c = read(
            "/v1/chat/completions",
            false,
            br#"{"messages": [{"role": "user", "content": 7}, 3]}"#,
            b"",
        );
        let turns = c.request.unwrap();
        assert_eq!(turns[0].parts, vec![text("7")]);
        assert_eq!(turns[1].role, "unknown");
    }

    #[test]
    fn map_text_reaches_every_text_roles_included() {
        let request = bytes(
            json!({"messages": [{"role": "user", "content": "a@b.example"}, {"role": "tool", "tool_call_id": "x", "content": "secret"}]}),
        );
        let mut c = read("/v1/chat/completions", false, &request, b"");
        c.map_text(|t| t.to_uppercase());
        let turns = c.request.unwrap();
        assert_eq!(turns[0], turn("USER", vec![text("A@B.EXAMPLE")]));
        assert_eq!(
            turns[1].parts,
            vec![Part::ToolResult {
                call: "X".into(),
                content: "SECRET".into()
            }]
        );
    }
}
