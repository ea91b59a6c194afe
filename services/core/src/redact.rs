//! PII redaction (deep dive §2.2), as pure functions applied before anything is written.
//!
//! Two layers: payload keys that name PII (`email`, `phone`, `iban`, ...) are dropped whole, and
//! every string that is kept is scanned for emails, phone numbers, UK National Insurance numbers,
//! IBANs, sort codes and card numbers, each replaced by `[redacted:<kind>:<hash>]`. The hash is a
//! salted SHA-256 prefix, so the same value still joins across events without being readable.

use std::{borrow::Cow, collections::BTreeMap, sync::LazyLock};

use regex::{Regex, RegexSet};
use sha2::{Digest, Sha256};

/// What kind of PII a rule found; the label of the redaction metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    NiNumber,
    Iban,
    SortCode,
    CardNumber,
    /// A payload key that names PII (dropped whole).
    PiiField,
    /// A document body or stack trace replaced by its reference.
    Content,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::NiNumber => "ni_number",
            PiiKind::Iban => "iban",
            PiiKind::SortCode => "sort_code",
            PiiKind::CardNumber => "card_number",
            PiiKind::PiiField => "pii_field",
            PiiKind::Content => "content",
        }
    }
}

/// Counts of what was redacted in one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionReport {
    pub counts: BTreeMap<PiiKind, u32>,
}

impl RedactionReport {
    pub fn add(&mut self, kind: PiiKind) {
        *self.counts.entry(kind).or_default() += 1;
    }

    pub fn total(&self) -> u32 {
        self.counts.values().sum()
    }
}

/// Payload keys (compared after lower-casing and removing `_`) whose values are PII by name.
const PII_KEYS: &[&str] = &[
    "name",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "email",
    "emailaddress",
    "phone",
    "phonenumber",
    "mobile",
    "telephone",
    "address",
    "postcode",
    "dob",
    "dateofbirth",
    "ninumber",
    "nationalinsurance",
    "nationalinsurancenumber",
    "sortcode",
    "accountnumber",
    "bankaccount",
    "iban",
    "cardnumber",
    "pan",
];

/// Keys whose values are bulk content that must travel as a reference instead (stack traces,
/// file bytes, document text).
const CONTENT_KEYS: &[&str] = &["stack", "stacktrace", "trace", "content", "body", "bytes", "data", "file", "text"];

fn normalised_key(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

pub fn is_pii_key(key: &str) -> bool {
    PII_KEYS.contains(&normalised_key(key).as_str())
}

pub fn is_content_key(key: &str) -> bool {
    CONTENT_KEYS.contains(&normalised_key(key).as_str())
}

struct Pattern {
    kind: PiiKind,
    regex: Regex,
    check: fn(&str) -> bool,
}

fn always(_: &str) -> bool {
    true
}

/// The Luhn checksum, so long ids are not mistaken for card numbers.
fn luhn_valid(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { *d })
        .sum();
    sum.is_multiple_of(10)
}

/// A rule: what it finds, its pattern, and the check a match must also pass.
type Rule = (PiiKind, &'static str, fn(&str) -> bool);

/// The rules in the order they are applied.
const RULES: [Rule; 6] = [
    (PiiKind::Email, r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b", always),
    (PiiKind::Iban, r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", always),
    (PiiKind::NiNumber, r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", always),
    (PiiKind::CardNumber, r"\b(?:\d[ -]?){12,18}\d\b", luhn_valid),
    (PiiKind::SortCode, r"\b\d{2}-\d{2}-\d{2}\b", always),
    // International (+44 ...) or UK national (07..., 01..., 02...) numbers with separators.
    (PiiKind::Phone, r"(?:\+\d{1,3}[ -]?|\b0)(?:\(?\d{2,5}\)?[ -]?){2,4}\d{2,4}\b", always),
];

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|&(kind, re, check)| Pattern { kind, regex: Regex::new(re).expect("redaction regex"), check })
        .collect()
});

/// Every rule in one automaton: most strings match none, and one scan says so.
static ANY_RULE: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(RULES.iter().map(|(_, re, _)| re)).expect("redaction regexes"));

/// Applies the redaction rules with a salt for the joinable hashes.
#[derive(Debug, Clone)]
pub struct Redactor {
    salt: Vec<u8>,
}

impl Redactor {
    pub fn new(salt: impl Into<Vec<u8>>) -> Self {
        Self { salt: salt.into() }
    }

    fn token(&self, kind: PiiKind, value: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(&self.salt);
        hasher.update(value.as_bytes());
        let digest = hasher.finalize();
        format!("[redacted:{}:{}]", kind.as_str(), hex::encode(&digest[..4]))
    }

    /// Replaces every PII match in `text`, counting each in `report`.
    pub fn scrub<'a>(&self, text: &'a str, report: &mut RedactionReport) -> Cow<'a, str> {
        let mut current: Cow<'a, str> = Cow::Borrowed(text);
        if !ANY_RULE.is_match(text) {
            return current;
        }
        for pattern in PATTERNS.iter() {
            if !pattern.regex.is_match(&current) {
                continue;
            }
            let mut replaced = false;
            let next = pattern.regex.replace_all(&current, |caps: &regex::Captures<'_>| {
                let found = &caps[0];
                if (pattern.check)(found) {
                    report.add(pattern.kind);
                    replaced = true;
                    self.token(pattern.kind, found)
                } else {
                    found.to_owned()
                }
            });
            if replaced {
                current = Cow::Owned(next.into_owned());
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected_kinds: &[PiiKind], must_not_contain: &[&str]) {
        let mut report = RedactionReport::default();
        let out = Redactor::new("salt").scrub(input, &mut report);
        let kinds: Vec<_> = report.counts.keys().copied().collect();
        assert_eq!(kinds, expected_kinds, "kinds for {input:?} -> {out:?}");
        for secret in must_not_contain {
            assert!(!out.contains(secret), "{secret:?} survived in {out:?}");
        }
    }

    #[test]
    fn finds_each_kind_of_pii() {
        check("contact jane.doe@example.co.uk now", &[PiiKind::Email], &["jane.doe"]);
        check("call +44 7700 900123", &[PiiKind::Phone], &["900123"]);
        check("call 07700 900123", &[PiiKind::Phone], &["900123"]);
        check("NI AB 12 34 56 C", &[PiiKind::NiNumber], &["12 34 56"]);
        check("iban GB82 WEST 1234 5698 7654 32", &[PiiKind::Iban], &["WEST"]);
        check("sort 12-34-56 acct", &[PiiKind::SortCode], &["12-34-56"]);
        check("card 4111 1111 1111 1111", &[PiiKind::CardNumber], &["4111 1111"]);
    }

    #[test]
    fn leaves_ids_refs_and_urls_alone() {
        for clean in [
            "INV-2025-0912",
            "C123",
            "gs://bucket/contracts/K456.pdf",
            "https://github.com/swan/portal/actions/runs/1234567",
            "2025-W36",
            "run 1234567890123 failed",
        ] {
            check(clean, &[], &[]);
        }
    }

    #[test]
    fn hashes_join_without_revealing() {
        let redactor = Redactor::new("salt");
        let mut report = RedactionReport::default();
        let a = redactor.scrub("a@b.io", &mut report).into_owned();
        let b = redactor.scrub("a@b.io", &mut report).into_owned();
        let other_salt = Redactor::new("pepper").scrub("a@b.io", &mut report).into_owned();
        assert_eq!(a, b);
        assert_ne!(a, other_salt);
        assert!(a.starts_with("[redacted:email:"));
        assert_eq!(report.total(), 3);
    }

    #[test]
    fn pii_and_content_keys_are_recognised_in_any_case() {
        assert!(is_pii_key("firstName"));
        assert!(is_pii_key("EMAIL_ADDRESS"));
        assert!(is_pii_key("sort_code"));
        assert!(!is_pii_key("invoiceId"));
        assert!(is_content_key("stackTrace"));
        assert!(!is_content_key("stackRef"));
    }
}
