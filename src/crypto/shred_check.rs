//! Checking crypto-shredding on a database (a live one, or a backup
//! restored somewhere): every stored body is opened with the live key
//! store, and a body whose content-expiry day has ended must not open, nor
//! one of a tenant erased since.

use serde::Serialize;
use time::OffsetDateTime;

use super::{key_day, ContentKeys, Opened};
use crate::domain::records::StoredContent;
use crate::domain::TenantId;
use crate::store::{Store, StoreError};

const PAGE: i64 = 1_000;

/// What opening every stored body gave.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ShredCheck {
    pub rows: u64,
    /// Decrypts with the live key store.
    pub readable: u64,
    /// Its key is destroyed: noise in every copy.
    pub expired: u64,
    /// Its tenant's key is destroyed (the tenant was erased): noise too.
    pub erased: u64,
    /// Sealed, but does not open (tampered, or another key store).
    pub unreadable: u64,
    /// Stored in clear (before encryption was turned on).
    pub plain: u64,
    /// Its day has ended and it still opens: shredding has not reached it
    /// (no sweep since the day ended, a legal hold, or stored in clear).
    pub past_expiry_readable: u64,
    /// No key, though its day has not ended: not the key store that sealed
    /// it (or a key lost). A check against the wrong store proves nothing.
    pub key_missing_early: u64,
    /// Bodies of the tenant said to be erased, and how many still open.
    pub erased_tenant_rows: u64,
    pub erased_readable: u64,
}

impl ShredCheck {
    /// True when nothing past its expiry day can be read, and the key store
    /// is the one the content was sealed with.
    pub fn holds(&self) -> bool {
        self.past_expiry_readable == 0 && self.key_missing_early == 0 && self.erased_readable == 0
    }

    fn count(
        &mut self,
        keys: &ContentKeys,
        row: &StoredContent,
        now: OffsetDateTime,
        erased: Option<&TenantId>,
    ) {
        let open = |field, bytes: &[u8]| match row.content.sealed {
            true => keys.open_field(row.record, &row.tenant, field, bytes),
            false => Opened::Plain(Vec::new()),
        };
        let fields = [
            open("request", &row.content.request_body),
            open("response", &row.content.response_body),
        ];
        self.rows += 1;
        let ended = key_day(row.content.expires_at) < key_day(now);
        let opens = if fields.contains(&Opened::Erased) {
            self.erased += 1;
            false
        } else if fields.contains(&Opened::Expired) {
            self.expired += 1;
            if !ended {
                self.key_missing_early += 1;
            }
            false
        } else if fields.contains(&Opened::Unreadable) {
            self.unreadable += 1;
            false
        } else if fields.iter().any(|f| matches!(f, Opened::Plain(_))) {
            self.plain += 1;
            true
        } else {
            self.readable += 1;
            true
        };
        if opens && ended {
            self.past_expiry_readable += 1;
        }
        if erased == Some(&row.tenant) {
            self.erased_tenant_rows += 1;
            self.erased_readable += u64::from(opens);
        }
    }
}

/// Open every body `store` holds with `keys`, as of `now`; none of
/// `erased` (a tenant erased since) may open.
pub async fn check(
    store: &dyn Store,
    keys: &ContentKeys,
    now: OffsetDateTime,
    erased: Option<&TenantId>,
) -> Result<ShredCheck, StoreError> {
    let mut report = ShredCheck::default();
    let mut after = None;
    loop {
        let page = store.content_page(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(report);
        };
        after = Some(last.record);
        for row in &page {
            report.count(keys, row, now, erased);
        }
    }
}
