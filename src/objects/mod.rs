//! Upstream objects owned by tenants: files, batches, stored responses,
//! conversations, fine-tuning jobs, vector stores, uploads, stored chat
//! completions, Anthropic message batches. When tenants share the route's
//! upstream credential (managed keys), the provider sees one account: the
//! gateway keeps who created what (the registry) and lets a tenant name,
//! list and delete only its own objects.
//!
//! This module is pure: which paths and bodies name an object, which ids an
//! answer creates, how a list page is cut to one tenant's objects. The
//! store keeps the registry; the proxy enforces it before forwarding.

pub mod copies;
pub mod list;

use serde_json::Value;

use crate::config::Flavor;

/// A kind of upstream object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    File,
    Upload,
    Batch,
    Response,
    Conversation,
    VectorStore,
    FineTuningJob,
    ChatCompletion,
    MessageBatch,
    Container,
    /// A fine-tuned model (`ft:…`), made by its tenant's fine-tuning job.
    Model,
    /// An item of a stored response or conversation (`item_reference`):
    /// never registered, so known to nobody.
    Item,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Upload => "upload",
            Self::Batch => "batch",
            Self::Response => "response",
            Self::Conversation => "conversation",
            Self::VectorStore => "vector_store",
            Self::FineTuningJob => "fine_tuning_job",
            Self::ChatCompletion => "chat_completion",
            Self::MessageBatch => "message_batch",
            Self::Container => "container",
            Self::Model => "model",
            Self::Item => "item",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        KINDS.iter().copied().find(|k| k.as_str() == s)
    }

    /// Its collection's path after `v1/`.
    pub fn collection(self) -> &'static str {
        match self {
            Self::File => "files",
            Self::Upload => "uploads",
            Self::Batch => "batches",
            Self::Response => "responses",
            Self::Conversation => "conversations",
            Self::VectorStore => "vector_stores",
            Self::FineTuningJob => "fine_tuning/jobs",
            Self::ChatCompletion => "chat/completions",
            Self::MessageBatch => "messages/batches",
            Self::Container => "containers",
            Self::Model => "models",
            Self::Item => "items",
        }
    }

    /// Objects of this kind hold payloads (prompts, answers, uploaded
    /// data); a profile may let them expire with the content retention.
    /// Fine-tune files are kept until deleted whatever the profile says.
    pub fn holds_payloads(self, purpose: Option<&str>) -> bool {
        match self {
            Self::File => purpose != Some(crate::objects::copies::FINE_TUNE),
            Self::Response | Self::ChatCompletion | Self::Conversation | Self::Container => true,
            _ => false,
        }
    }

    /// Lists of this kind answer only the caller's objects.
    pub fn is_listed(self) -> bool {
        matches!(
            self,
            Self::File
                | Self::Batch
                | Self::VectorStore
                | Self::FineTuningJob
                | Self::ChatCompletion
                | Self::MessageBatch
                | Self::Container
                | Self::Model
        )
    }
}

const KINDS: [Kind; 12] = [
    Kind::File,
    Kind::Upload,
    Kind::Batch,
    Kind::Response,
    Kind::Conversation,
    Kind::VectorStore,
    Kind::FineTuningJob,
    Kind::ChatCompletion,
    Kind::MessageBatch,
    Kind::Container,
    Kind::Model,
    Kind::Item,
];

/// An object a request names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub id: String,
}

impl ObjectRef {
    fn new(kind: Kind, id: &str) -> Self {
        Self {
            kind,
            id: id.to_owned(),
        }
    }
}

/// What a request's path addresses on a stateful endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The collection itself: a create (POST) or a list (GET).
    Collection(Kind),
    /// One or more objects (`/vector_stores/{vs}/files/{file}` names two),
    /// the first the one addressed.
    Objects(Vec<ObjectRef>),
    /// Not a stateful endpoint.
    Stateless,
}

/// The collections, by flavor: path segments after `v1/`, and the kind.
const OPENAI: &[(&[&str], Kind)] = &[
    (&["files"], Kind::File),
    (&["uploads"], Kind::Upload),
    (&["batches"], Kind::Batch),
    (&["responses"], Kind::Response),
    (&["conversations"], Kind::Conversation),
    (&["vector_stores"], Kind::VectorStore),
    (&["fine_tuning", "jobs"], Kind::FineTuningJob),
    (&["chat", "completions"], Kind::ChatCompletion),
    (&["containers"], Kind::Container),
    (&["models"], Kind::Model),
];

const ANTHROPIC: &[(&[&str], Kind)] = &[
    (&["messages", "batches"], Kind::MessageBatch),
    (&["files"], Kind::File),
    (&["models"], Kind::Model),
];

/// Stateless endpoints a caller on a shared credential may use (nothing of
/// another tenant's can be reached through them, once the body's objects
/// are checked). Anything else is refused there: an endpoint the gateway
/// does not model could expose the account's state.
const OPENAI_STATELESS: &[&str] = &[
    "completions",
    "embeddings",
    "moderations",
    "audio/transcriptions",
    "audio/translations",
    "audio/speech",
    "images/generations",
    "images/edits",
    "images/variations",
    "responses/input_tokens",
];
const ANTHROPIC_STATELESS: &[&str] = &["messages", "messages/count_tokens", "complete"];

/// Endpoints whose body is an upload (multipart), not JSON.
const UPLOADS: &[&str] = &[
    "files",
    "audio/transcriptions",
    "audio/translations",
    "images/edits",
    "images/variations",
];

/// How the gateway knows an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A stateful collection or object (`Target` says which).
    Stateful,
    /// A stateless endpoint it knows.
    Stateless,
    /// One it does not model.
    Unknown,
}

/// The path after the route's prefix as segments, without a leading `v1`
/// and with the collection names compared in lowercase.
fn segments(path: &str) -> Vec<&str> {
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("v1"))
    {
        segments.remove(0);
    }
    segments
}

fn same(segments: &[&str], names: &[&str]) -> bool {
    segments.len() == names.len()
        && segments
            .iter()
            .zip(names)
            .all(|(s, n)| s.eq_ignore_ascii_case(n))
}

/// Which kind of endpoint `path` is.
pub fn endpoint(flavor: Flavor, path: &str) -> Endpoint {
    if !matches!(target(flavor, path), Target::Stateless) {
        return Endpoint::Stateful;
    }
    let segments = segments(path);
    // A base model (`models/gpt-4o`): everyone's.
    if segments.len() == 2 && segments[0].eq_ignore_ascii_case("models") {
        return Endpoint::Stateless;
    }
    let known = match flavor {
        Flavor::Openai => OPENAI_STATELESS,
        Flavor::Anthropic => ANTHROPIC_STATELESS,
    };
    let names: Vec<Vec<&str>> = known.iter().map(|k| k.split('/').collect()).collect();
    match names.iter().any(|n| same(&segments, n)) {
        true => Endpoint::Stateless,
        false => Endpoint::Unknown,
    }
}

/// Whether a POST to `path` carries an upload (multipart) rather than JSON.
pub fn is_upload(flavor: Flavor, path: &str) -> bool {
    let segments = segments(path);
    let parts = segments.len() == 3
        && segments[0].eq_ignore_ascii_case("uploads")
        && segments[2].eq_ignore_ascii_case("parts");
    flavor == Flavor::Openai
        && (parts
            || UPLOADS
                .iter()
                .any(|u| same(&segments, &u.split('/').collect::<Vec<_>>())))
        || (flavor == Flavor::Anthropic && same(&segments, &["files"]))
}

/// What `path` (the part after the route's prefix, e.g. `files/file-1`
/// or `v1/messages/batches`) addresses.
pub fn target(flavor: Flavor, path: &str) -> Target {
    let segments = segments(path);
    let table = match flavor {
        Flavor::Openai => OPENAI,
        Flavor::Anthropic => ANTHROPIC,
    };
    for (collection, kind) in table {
        let named =
            segments.len() >= collection.len() && same(&segments[..collection.len()], collection);
        if !named {
            continue;
        }
        let rest = &segments[collection.len()..];
        let Some((id, sub)) = rest.split_first() else {
            return Target::Collection(*kind);
        };
        // Actions on the collection, not objects of it.
        if *kind == Kind::Response && sub.is_empty() && ["input_tokens", "compact"].contains(id) {
            return Target::Stateless;
        }
        // Base models are everyone's; a fine-tuned one is its maker's.
        if *kind == Kind::Model && !id.starts_with("ft:") {
            return Target::Stateless;
        }
        let mut refs = vec![ObjectRef::new(*kind, id)];
        // A file named inside a vector store is a file too.
        if *kind == Kind::VectorStore && sub.first() == Some(&"files") {
            if let Some(file) = sub.get(1) {
                refs.push(ObjectRef::new(Kind::File, file));
            }
        }
        return Target::Objects(refs);
    }
    Target::Stateless
}

/// Whether `path` addresses an object itself (`files/{id}`), not one of
/// its parts (`conversations/{id}/items/{item}`): what a DELETE removes.
pub fn is_object_itself(flavor: Flavor, path: &str) -> bool {
    let segments = segments(path);
    let table = match flavor {
        Flavor::Openai => OPENAI,
        Flavor::Anthropic => ANTHROPIC,
    };
    table.iter().any(|(collection, _)| {
        segments.len() == collection.len() + 1 && same(&segments[..collection.len()], collection)
    })
}

/// Whether a request body on `path` (after the route's prefix) can name
/// objects: on the stateful endpoints and the generation endpoints that
/// take files and stored state (chat completions, responses, messages).
pub fn body_may_name_objects(flavor: Flavor, path: &str) -> bool {
    // Every known endpoint's body may name a file or a fine-tuned model.
    endpoint(flavor, path) != Endpoint::Unknown
}

/// Body fields that name an object, and the kind they name. A field may
/// sit at any depth (a file part in a message, a tool's vector stores).
const BODY_FIELDS: &[(&str, Kind)] = &[
    ("previous_response_id", Kind::Response),
    ("conversation", Kind::Conversation),
    ("conversation_id", Kind::Conversation),
    ("input_file_id", Kind::File),
    ("training_file", Kind::File),
    ("validation_file", Kind::File),
    ("file_id", Kind::File),
    ("file_ids", Kind::File),
    ("vector_store_id", Kind::VectorStore),
    ("vector_store_ids", Kind::VectorStore),
    ("container", Kind::Container),
    ("container_id", Kind::Container),
    // Only a fine-tuned model (`ft:…`) is anyone's.
    ("model", Kind::Model),
];

/// The objects a JSON request body names. `None` when the body is not
/// JSON: the caller decides (it cannot name anything a JSON API reads).
pub fn body_refs(body: &[u8]) -> Option<Vec<ObjectRef>> {
    // Fast path, exact: without a backslash no key can be escaped, so a
    // body that spells none of the fields names nothing.
    let spelled = QUOTED_FIELDS
        .as_ref()
        .is_none_or(|fields| fields.is_match(body));
    if !body.contains(&b'\\') && !spelled {
        return Some(Vec::new());
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::new();
    collect_refs(&value, &mut out);
    out.sort();
    out.dedup();
    Some(out)
}

/// What a body naming an object must spell, searched for all at once: the
/// fields, quoted, except `model`, which every chat body has and which
/// names an object only as a fine-tuned model, whose id starts `ft:`; and
/// the type of an item reference.
/// (Fixed patterns cannot fail to build; were they to, every body would
/// be parsed: slower, never wrong.)
static QUOTED_FIELDS: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        let quoted = BODY_FIELDS
            .iter()
            .filter(|(_, kind)| *kind != Kind::Model)
            .map(|(field, _)| format!("\"{field}\""))
            .chain([FINE_TUNED_VALUE.to_owned(), ITEM_REFERENCE.to_owned()]);
        aho_corasick::AhoCorasick::new(quoted).ok()
    });

/// How a fine-tuned model's id begins, as a JSON string.
const FINE_TUNED_VALUE: &str = "\"ft:";
/// The type of an input item that points at a stored one, as a JSON string.
const ITEM_REFERENCE: &str = "\"item_reference\"";

fn collect_refs(value: &Value, out: &mut Vec<ObjectRef>) {
    match value {
        Value::Object(map) => {
            // An input item that points at a stored one.
            if map.get("type").and_then(Value::as_str) == Some("item_reference") {
                if let Some(id) = map.get("id").and_then(Value::as_str) {
                    out.push(ObjectRef::new(Kind::Item, id));
                }
            }
            for (key, v) in map {
                if let Some((_, kind)) = BODY_FIELDS.iter().find(|(f, _)| f == key) {
                    named_in(*kind, v, out);
                }
                collect_refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The ids a field's value names: a string, a list of strings, or an
/// object with an `id` (`"conversation": {"id": "conv_1"}`).
fn named_in(kind: Kind, value: &Value, out: &mut Vec<ObjectRef>) {
    // Only a fine-tuned model is anyone's, in whatever form it is named.
    let owned = |id: &str| !id.is_empty() && (kind != Kind::Model || id.starts_with("ft:"));
    match value {
        Value::String(id) if owned(id) => out.push(ObjectRef::new(kind, id)),
        Value::Array(items) => items.iter().for_each(|v| named_in(kind, v, out)),
        Value::Object(map) => {
            if let Some(Value::String(id)) =
                map.get("id").filter(|id| id.as_str().is_some_and(owned))
            {
                out.push(ObjectRef::new(kind, id));
            }
        }
        _ => {}
    }
}

/// Whether a JSON request body asks the upstream to keep state:
/// `store` (true by default on `/responses`), `background`, a previous
/// response or a conversation. For zero-data-retention tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatefulAsks {
    /// `store` as sent (`None`: the endpoint's default).
    pub store: Option<bool>,
    pub background: bool,
    pub previous_response: bool,
    pub conversation: bool,
}

pub fn stateful_asks(body: &Value) -> StatefulAsks {
    let truthy = |key: &str| {
        body.get(key)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
    };
    StatefulAsks {
        store: body.get("store").and_then(Value::as_bool),
        background: body.get("background").and_then(Value::as_bool) == Some(true),
        previous_response: truthy("previous_response_id"),
        conversation: truthy("conversation"),
    }
}

/// The ids an upstream answer created, with their kind: the object a
/// create returned (`id`), a completed upload's file, the output and error
/// files a batch reports, the result files of a fine-tuning job. `answer`
/// is one JSON document, or for a stream the events that carry an id.
pub fn created(target: &Target, answer: &Value) -> Vec<ObjectRef> {
    let mut out = Vec::new();
    let kind = match target {
        Target::Collection(kind) => Some(*kind),
        Target::Objects(refs) => refs.first().map(|r| r.kind),
        Target::Stateless => None,
    };
    let Some(kind) = kind else { return out };
    // A streamed Responses answer carries the response under `response`.
    let object = answer
        .get("response")
        .filter(|r| r.is_object())
        .unwrap_or(answer);
    if matches!(target, Target::Collection(_)) {
        if let Some(id) = object
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| valid_id(id))
        {
            out.push(ObjectRef::new(kind, id));
        }
    }
    let file_fields = ["output_file_id", "error_file_id"];
    for field in file_fields {
        if let Some(id) = object
            .get(field)
            .and_then(Value::as_str)
            .filter(|id| valid_id(id))
        {
            out.push(ObjectRef::new(Kind::File, id));
        }
    }
    if let Some(id) = object
        .get("file")
        .and_then(|f| f.get("id"))
        .and_then(Value::as_str)
        .filter(|id| valid_id(id))
    {
        out.push(ObjectRef::new(Kind::File, id));
    }
    // A fine-tuning job's model (and checkpoints) are its maker's.
    for field in ["fine_tuned_model", "fine_tuned_model_checkpoint"] {
        if let Some(id) = object
            .get(field)
            .and_then(Value::as_str)
            .filter(|id| valid_id(id))
        {
            out.push(ObjectRef::new(Kind::Model, id));
        }
    }
    if let Some(files) = object.get("result_files").and_then(Value::as_array) {
        for id in files
            .iter()
            .filter_map(Value::as_str)
            .filter(|id| valid_id(id))
        {
            out.push(ObjectRef::new(Kind::File, id));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Ids are short tokens; anything else is not kept (nor looked up).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refs(list: &[(Kind, &str)]) -> Target {
        Target::Objects(list.iter().map(|(k, id)| ObjectRef::new(*k, id)).collect())
    }

    #[test]
    fn paths_name_collections_and_objects() {
        use Flavor::{Anthropic, Openai};
        let cases = [
            (Openai, "files", Target::Collection(Kind::File)),
            (Openai, "v1/files/", Target::Collection(Kind::File)),
            (Openai, "files/file-1", refs(&[(Kind::File, "file-1")])),
            (
                Openai,
                "files/file-1/content",
                refs(&[(Kind::File, "file-1")]),
            ),
            (
                Openai,
                "batches/batch_1/cancel",
                refs(&[(Kind::Batch, "batch_1")]),
            ),
            (
                Openai,
                "responses/resp_1/input_items",
                refs(&[(Kind::Response, "resp_1")]),
            ),
            (
                Openai,
                "conversations/conv_1/items/msg_1",
                refs(&[(Kind::Conversation, "conv_1")]),
            ),
            (
                Openai,
                "fine_tuning/jobs/ftjob-1/events",
                refs(&[(Kind::FineTuningJob, "ftjob-1")]),
            ),
            (
                Openai,
                "fine_tuning/jobs",
                Target::Collection(Kind::FineTuningJob),
            ),
            (
                Openai,
                "vector_stores/vs_1/files/file-2",
                refs(&[(Kind::VectorStore, "vs_1"), (Kind::File, "file-2")]),
            ),
            (
                Openai,
                "chat/completions",
                Target::Collection(Kind::ChatCompletion),
            ),
            (
                Openai,
                "chat/completions/chatcmpl-1/messages",
                refs(&[(Kind::ChatCompletion, "chatcmpl-1")]),
            ),
            (
                Openai,
                "uploads/upload_1/parts",
                refs(&[(Kind::Upload, "upload_1")]),
            ),
            // The models list is cut to base models and the caller's own.
            (Openai, "models", Target::Collection(Kind::Model)),
            (Openai, "models/gpt-4o", Target::Stateless),
            (
                Openai,
                "models/ft:gpt-4o:org::abc",
                refs(&[(Kind::Model, "ft:gpt-4o:org::abc")]),
            ),
            (Openai, "embeddings", Target::Stateless),
            (
                Anthropic,
                "v1/messages/batches",
                Target::Collection(Kind::MessageBatch),
            ),
            (
                Anthropic,
                "v1/messages/batches/msgbatch_1/results",
                refs(&[(Kind::MessageBatch, "msgbatch_1")]),
            ),
            (Anthropic, "v1/messages", Target::Stateless),
            (
                Anthropic,
                "v1/files/file_1",
                refs(&[(Kind::File, "file_1")]),
            ),
        ];
        for (flavor, path, want) in cases {
            assert_eq!(target(flavor, path), want, "{path}");
        }
        assert!(body_may_name_objects(Anthropic, "v1/messages"));
        assert!(body_may_name_objects(Openai, "chat/completions"));
        // Any known body may name a fine-tuned model.
        assert!(body_may_name_objects(Openai, "embeddings"));
        assert!(!body_may_name_objects(
            Openai,
            "organization/admin_api_keys"
        ));
    }

    #[test]
    fn bodies_name_objects_at_any_depth_and_behind_escapes() {
        let body = br#"{"model":"m","previous_response_id":"resp_a","conversation":{"id":"conv_b"},
            "input":[{"role":"user","content":[{"type":"input_file","file_id":"file-c"}]}],
            "tools":[{"type":"file_search","vector_store_ids":["vs_d","vs_e"]}]}"#;
        let got = body_refs(body).unwrap();
        let want = [
            (Kind::File, "file-c"),
            (Kind::Response, "resp_a"),
            (Kind::Conversation, "conv_b"),
            (Kind::VectorStore, "vs_d"),
            (Kind::VectorStore, "vs_e"),
        ];
        for (kind, id) in want {
            assert!(
                got.contains(&ObjectRef::new(kind, id)),
                "{kind:?} {id}: {got:?}"
            );
        }
        // An escaped key is the same key to the upstream's parser.
        let hidden = br#"{"previous_resp\u006fnse_id":"resp_x"}"#;
        assert_eq!(
            body_refs(hidden).unwrap(),
            [ObjectRef::new(Kind::Response, "resp_x")]
        );
        let batch = br#"{"input_file_id":"file-in","endpoint":"/v1/chat/completions"}"#;
        assert_eq!(
            body_refs(batch).unwrap(),
            [ObjectRef::new(Kind::File, "file-in")]
        );
        let job = br#"{"training_file":"file-t","validation_file":"file-v","model":"m"}"#;
        assert_eq!(body_refs(job).unwrap().len(), 2);
        assert_eq!(body_refs(br#"{"messages":[]}"#).unwrap(), []);
        assert_eq!(body_refs(b"not json \\ at all"), None);
        let item = br#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#;
        assert_eq!(
            body_refs(item).unwrap(),
            [ObjectRef::new(Kind::Item, "msg_1")]
        );
        // `model` names an object only when it is fine-tuned, spaced or not.
        let chat = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(body_refs(chat).unwrap(), []);
        let as_object = br#"{"model":{"id":"gpt-4o"},"file_ids":[]}"#;
        assert_eq!(body_refs(as_object).unwrap(), []);
        for tuned in [
            &br#"{"model":"ft:gpt-4o:org::abc","messages":[]}"#[..],
            br#"{"messages":[], "model" :  "ft:gpt-4o:org::abc"}"#,
            br#"{"m\u006fdel":"\u0066t:gpt-4o:org::abc"}"#,
        ] {
            assert_eq!(
                body_refs(tuned).unwrap(),
                [ObjectRef::new(Kind::Model, "ft:gpt-4o:org::abc")],
                "{}",
                String::from_utf8_lossy(tuned)
            );
        }
    }

    #[test]
    fn answers_create_ids() {
        let create = Target::Collection(Kind::File);
        assert_eq!(
            created(&create, &json!({"id": "file-1", "object": "file"})),
            [ObjectRef::new(Kind::File, "file-1")]
        );
        let stream = Target::Collection(Kind::Response);
        let event = json!({"type": "response.created", "response": {"id": "resp_1"}});
        assert_eq!(
            created(&stream, &event),
            [ObjectRef::new(Kind::Response, "resp_1")]
        );
        let batch = refs(&[(Kind::Batch, "batch_1")]);
        let read = json!({"id": "batch_1", "output_file_id": "file-out", "error_file_id": null});
        assert_eq!(
            created(&batch, &read),
            [ObjectRef::new(Kind::File, "file-out")]
        );
        let upload = refs(&[(Kind::Upload, "upload_1")]);
        let done = json!({"id": "upload_1", "status": "completed", "file": {"id": "file-up"}});
        assert_eq!(
            created(&upload, &done),
            [ObjectRef::new(Kind::File, "file-up")]
        );
        let hostile = json!({"id": "file-1'; DROP TABLE x; --"});
        assert!(created(&create, &hostile).is_empty());
    }

    #[test]
    fn stateful_asks_are_read_as_sent() {
        let asks = stateful_asks(
            &json!({"store": false, "background": true, "previous_response_id": "r"}),
        );
        assert_eq!(
            asks,
            StatefulAsks {
                store: Some(false),
                background: true,
                previous_response: true,
                conversation: false
            }
        );
        assert_eq!(
            stateful_asks(&json!({"conversation": null})),
            StatefulAsks::default()
        );
    }
}
