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
    /// OpenAI's end-user ids (`user` is the older spelling). Read
    /// leniently: a value of another type is no id, and never costs the
    /// record its model.
    #[serde(borrow, default, deserialize_with = "lenient::string")]
    safety_identifier: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::string")]
    user: Option<std::borrow::Cow<'a, str>>,
    /// Anthropic's: `metadata.user_id`.
    #[serde(borrow, default, deserialize_with = "lenient::user_id")]
    metadata: Option<std::borrow::Cow<'a, str>>,
}

/// Fields the gateway reads but the body's owner may spell oddly: anything
/// but the expected shape reads as absent.
mod lenient {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// Numbers, booleans and null are no text.
    macro_rules! ignore_scalars {
        () => {
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        };
    }

    struct Text;

    impl<'de> Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        ignore_scalars!();
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    pub(super) fn string<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Cow<'de, str>>, D::Error> {
        d.deserialize_any(Text)
    }

    /// `user_id` of an object; anything else is absent.
    struct UserId;

    impl<'de> Visitor<'de> for UserId {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == "user_id" {
                    found = map.next_value_seed(TextSeed)?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Text.visit_seq(seq)
        }
        fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        ignore_scalars!();
    }

    struct TextSeed;

    impl<'de> serde::de::DeserializeSeed<'de> for TextSeed {
        type Value = Option<Cow<'de, str>>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Text)
        }
    }

    pub(super) fn user_id<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Cow<'de, str>>, D::Error> {
        d.deserialize_any(UserId)
    }
}

/// What the record keeps from a request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFields {
    pub model: Option<String>,
    /// The caller's end user, as it named it (hashed before it is kept).
    pub end_user: Option<String>,
}

/// `model` and the end-user id of a JSON request body, in one parse.
pub fn request_fields(body: &[u8]) -> RequestFields {
    let Ok(fields) = serde_json::from_slice::<ModelOnly<'_>>(body) else {
        return RequestFields::default();
    };
    fn given(u: Option<std::borrow::Cow<'_, str>>) -> Option<std::borrow::Cow<'_, str>> {
        u.filter(|u| !u.is_empty())
    }
    let end_user = given(fields.safety_identifier)
        .or(given(fields.user))
        .or(given(fields.metadata))
        .map(|u| u.into_owned());
    RequestFields {
        model: fields.model.map(|m| truncate(&m)),
        end_user,
    }
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
    request_fields(body).model
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
    fn the_end_user_id_in_each_spelling() {
        let user = |body: &[u8]| request_fields(body).end_user;
        assert_eq!(user(br#"{"model":"m","user":"u1"}"#).as_deref(), Some("u1"));
        assert_eq!(
            user(br#"{"user":"old","safety_identifier":"new"}"#).as_deref(),
            Some("new")
        );
        assert_eq!(
            user(br#"{"model":"claude","metadata":{"user_id":"u\u0032"}}"#).as_deref(),
            Some("u2")
        );
        assert_eq!(user(br#"{"user":""}"#), None);
        assert_eq!(
            user(br#"{"safety_identifier":"","user":"u3"}"#).as_deref(),
            Some("u3")
        );
        assert_eq!(
            user(br#"{"user":7}"#),
            None,
            "not a string: nothing, no error"
        );
        let odd = request_fields(br#"{"model":"m","user":{"a":[1]},"metadata":"x"}"#);
        assert_eq!((odd.model.as_deref(), odd.end_user), (Some("m"), None));
        assert_eq!(
            user(br#"{"metadata":{"other":[{"user_id":"no"}],"user_id":null}}"#),
            None
        );
        assert_eq!(user(b"not json"), None);
    }

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
