//! Personal data hidden from contractors: e-mail addresses, phone numbers,
//! card-like numbers and key-like strings become `[redacted:<kind>]`. Pure.

use std::sync::LazyLock;

use regex::Regex;

/// Each kind with its pattern, applied in order (keys before phones, so a
/// long digit run inside a key is not half-replaced).
static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("email", r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}\b"),
        // Provider keys and bearer tokens: a known prefix, or a long run of
        // key alphabet characters with digits in it.
        (
            "key",
            r"\b(?:sk|pk|rk|cst|cstp|xox[abpr]|ghp|gho|AKIA)[A-Za-z0-9_\-]{12,}\b|\b[A-Za-z0-9_\-]*\d[A-Za-z0-9_\-]*[A-Za-z][A-Za-z0-9_\-]{30,}\b",
        ),
        // 13 to 19 digits, optionally grouped by spaces or dashes.
        ("card", r"\b\d(?:[ \-]?\d){12,18}\b"),
        // With a country code, with an area code in parentheses, or three
        // separated groups of digits.
        (
            "phone",
            r"(?:\+\d{1,3}[ .\-]?)?\(\d{1,4}\)[ .\-]?\d{2,4}(?:[ .\-]?\d{2,6}){1,2}\b|\+\d{1,3}[ .\-]?\d{2,4}(?:[ .\-]?\d{2,6}){1,3}\b|\b\d{2,4}[ .\-]\d{2,4}[ .\-]\d{2,6}\b",
        ),
    ]
    .into_iter()
    .filter_map(|(kind, pattern)| Regex::new(pattern).ok().map(|r| (kind, r)))
    .collect()
});

pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for (kind, pattern) in PATTERNS.iter() {
        let replacement = format!("[redacted:{kind}]");
        out = pattern.replace_all(&out, replacement.as_str()).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_replaced_and_the_rest_kept() {
        let text = "Mail jane.doe+x@example.co.uk or call +1 (415) 555-0132 / 020 7946 0958. \
                    Card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnop1234, \
                    token cstp_0123456789abcdef0123456789abcdef. Order 12345 ships 2026-01-02.";
        let got = redact(text);
        for secret in [
            "jane.doe",
            "example.co.uk",
            "555-0132",
            "7946",
            "4111",
            "sk-proj",
            "cstp_0123",
        ] {
            assert!(!got.contains(secret), "{secret} left in: {got}");
        }
        for kept in ["Order 12345 ships", "Mail", "call"] {
            assert!(got.contains(kept), "{kept} lost: {got}");
        }
        assert!(got.contains("[redacted:email]") && got.contains("[redacted:card]"));
    }
}
