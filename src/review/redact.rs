//! Personal data hidden from contractors: e-mail addresses, phone numbers,
//! card-like numbers and key-like strings become `[redacted:<kind>]`. Pure.
//! Redaction works on decoded text (JSON escapes undone) and knows Unicode
//! digits, spaces and dashes, so neither an escape nor a no-break space or
//! a fullwidth digit lets a number through.

use std::sync::LazyLock;

use regex::Regex;

/// Each kind with its pattern, applied in order (keys before phones, so a
/// long digit run inside a key is not half-replaced).
static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("email", r"(?i)[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.\w{2,}\b"),
        // Provider keys and bearer tokens: a known prefix, or a long run of
        // key alphabet characters with digits in it.
        (
            "key",
            r"\b(?:sk|pk|rk|cst|cstp|xox[abpr]|ghp|gho|AKIA)[A-Za-z0-9_\-]{12,}\b|\b[A-Za-z0-9_\-]*\d[A-Za-z0-9_\-]*[A-Za-z][A-Za-z0-9_\-]{30,}\b",
        ),
        // 13 to 19 digits (any script's), optionally grouped by a space or a
        // dash of any kind.
        ("card", r"\b\d(?:[\s\p{Pd}\x{2212}]?\d){12,18}\b"),
        // With a country code, with an area code in parentheses, or three
        // separated groups of digits.
        (
            "phone",
            r"(?:[+＋]\d{1,3}[\s.\p{Pd}]?)?\(\d{1,4}\)[\s.\p{Pd}]?\d{2,4}(?:[\s.\p{Pd}]?\d{2,6}){1,2}\b|[+＋]\d{1,3}[\s.\p{Pd}]?\d{2,4}(?:[\s.\p{Pd}]?\d{2,6}){1,3}\b|\b\d{2,4}[\s.\p{Pd}]\d{2,4}[\s.\p{Pd}]\d{2,6}\b",
        ),
    ]
    .into_iter()
    .filter_map(|(kind, pattern)| Regex::new(pattern).ok().map(|r| (kind, r)))
    .collect()
});

/// A captured body as a contractor may see it: a JSON body has every
/// string (keys too) redacted on its decoded text and stays JSON; any other
/// body, or JSON cut short by the capture cap, has its JSON escapes undone
/// first.
pub fn redact_body(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        Err(_) => redact(&crate::abuse::scan::unescape_json(bytes)),
    }
}

fn redact_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = redact(s),
        // A card number can be a JSON number too.
        Value::Number(n) => {
            let text = n.to_string();
            let shown = redact(&text);
            if shown != text {
                *value = Value::String(shown);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut v) in entries {
                redact_value(&mut v);
                map.insert(redact(&key), v);
            }
        }
        _ => {}
    }
}

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

    /// Each class, hidden behind JSON escapes, Unicode digits or Unicode
    /// separators, in a whole body and in one the capture cut short.
    #[test]
    fn escapes_and_unicode_hide_nothing() {
        let hidden = [
            ("email", r#"jane\u002edoe\u0040example\u002ecom"#, "jane"),
            ("email", r#"jösé@exämple.de"#, "exämple"),
            (
                "key",
                r#"sk-proj-\u0061bcdefghijklmnop1234"#,
                "bcdefghijklmnop",
            ),
            ("card", r#"card:\n4111 1111 1111 1111"#, "4111"),
            ("card", r#"4111\t1111\t1111\t1111"#, "4111"),
            ("card", r#"4111\u00a01111\u00a01111\u00a01111"#, "4111"),
            ("card", r#"4111\u002d1111\u002d1111\u002d1111"#, "4111"),
            ("card", "４１１１ １１１１ １１１１ １１１１", "４１１１"),
            ("card", "٤١١١-١١١١-١١١١-١١١١", "٤١١١"),
            ("card", "4111\u{2013}1111\u{2013}1111\u{2013}1111", "4111"),
            ("phone", r#"call\u00a0415-555-0132"#, "555"),
            ("phone", r#"call 415\u2011555\u20110132"#, "555"),
            ("phone", r#"\u002b44 20 7946 0958"#, "7946"),
            ("phone", "＋44 20 7946 0958", "7946"),
        ];
        for (kind, text, secret) in hidden {
            let whole = format!(r#"{{"messages":[{{"content":"{text}"}}]}}"#);
            let cut = &whole[..whole.len() - 4];
            for body in [whole.as_str(), cut] {
                let shown = redact_body(body.as_bytes());
                assert!(!shown.contains(secret), "{kind} in {body}: {shown}");
                assert!(
                    shown.contains(&format!("[redacted:{kind}]")),
                    "{kind}: {shown}"
                );
            }
        }
        // Keys of objects are text too; the JSON stays JSON.
        let shown = redact_body(br#"{"jane@example.com":{"ok":"fine"}}"#);
        let value: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert!(value.get("[redacted:email]").is_some(), "{shown}");
        assert_eq!(value["[redacted:email]"]["ok"], "fine");
        let shown = redact_body(br#"{"card":4111111111111111,"n":3}"#);
        assert!(
            !shown.contains("4111") && shown.contains("\"n\":3"),
            "{shown}"
        );
    }
}
