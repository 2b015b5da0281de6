//! A record's content as a reader may see it: opened (decrypted and
//! decompressed) by the one reader, and for contractors redacted. The raw
//! bytes never leave this module: every face reads the payload through
//! these methods, so a contractor's view is redacted the same way on the
//! API and in the console.

use super::conversation::{self, Conversation};
use super::redact::{redact, redact_body};
use crate::crypto::{open_content, ContentKeys, ContentView};
use crate::domain::records::Record;
use crate::export::finetune::answer_text;

/// The state of a record's content.
pub enum Content {
    Readable(Payload),
    /// Swept, or its key destroyed: as gone as a swept row.
    Expired,
    /// Stored but cannot be opened (a key that is not the tenant's, a damaged value).
    Unreadable,
    /// A zero-data-retention record: never stored.
    NotKept,
}

impl Content {
    pub fn open(record: &Record, redacted: bool, keys: Option<&ContentKeys>) -> Self {
        let m = &record.meta;
        let Some(stored) = &record.content else {
            return match m.zero_data_retention {
                true => Self::NotKept,
                false => Self::Expired,
            };
        };
        match open_content(keys, m.id, &m.tenant, stored) {
            ContentView::Readable { request, response } => Self::Readable(Payload {
                redacted,
                path: m.path.clone(),
                streamed: m.streamed,
                request,
                response,
                request_truncated: stored.request_truncated,
                response_truncated: stored.response_truncated,
                kept_for_safety_review: m.zero_data_retention,
            }),
            ContentView::Expired => Self::Expired,
            ContentView::Unreadable => Self::Unreadable,
        }
    }

    /// The state's name, as the API spells it.
    pub fn state(&self) -> &'static str {
        match self {
            // A ZDR record with content: kept only because a rule flagged it.
            Self::Readable(p) if p.kept_for_safety_review => "kept_for_safety_review",
            Self::Readable(_) => "present",
            Self::Expired => "expired",
            Self::Unreadable => "unreadable",
            Self::NotKept => "not_kept",
        }
    }
}

/// Readable content (see the module's comment).
pub struct Payload {
    redacted: bool,
    path: String,
    streamed: bool,
    request: Vec<u8>,
    response: Vec<u8>,
    pub request_truncated: bool,
    pub response_truncated: bool,
    /// A ZDR record's content, kept only because a rule flagged it.
    pub kept_for_safety_review: bool,
}

impl Payload {
    pub fn redacted(&self) -> bool {
        self.redacted
    }

    /// The request body as text.
    pub fn request_text(&self) -> String {
        self.shown(&self.request)
    }

    /// The answer as readable text (streams reassembled), else the body.
    pub fn response_text(&self) -> String {
        match answer_text(&self.path, self.streamed, &self.response) {
            Some(text) if self.redacted => redact(&text),
            Some(text) => text,
            None => self.shown(&self.response),
        }
    }

    /// The response body as the upstream sent it (SSE included); for a
    /// redacted view, what [`Payload::response_text`] shows.
    pub fn response_raw(&self) -> String {
        match self.redacted {
            true => self.response_text(),
            false => String::from_utf8_lossy(&self.response).into_owned(),
        }
    }

    /// The exchange as a conversation, every text redacted for a redacted view.
    pub fn conversation(&self) -> Conversation {
        let mut c = conversation::read(&self.path, self.streamed, &self.request, &self.response);
        if self.redacted {
            c.map_text(redact);
        }
        c
    }

    fn shown(&self, bytes: &[u8]) -> String {
        match self.redacted {
            true => redact_body(bytes),
            false => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}
