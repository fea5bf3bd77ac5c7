//! Every way a subject's identifiers may be written in free text, gathered into one regular
//! expression (PostgreSQL's advanced syntax) for `regexp_replace(text, pattern, .., 'gi')`.

use std::collections::BTreeSet;

use super::phone;

/// What free-text redaction writes in place of an identifier.
pub(super) const REDACTED: &str = "[redacted]";

#[derive(Default)]
pub(super) struct Spellings {
    literals: BTreeSet<String>,
    phones: BTreeSet<String>,
}

impl Spellings {
    /// A value as it was written. Single characters are no identifier, and replacing them would
    /// leave nothing readable.
    pub fn literal(&mut self, raw: &str) {
        let raw = raw.trim();
        if raw.chars().count() >= 2 && !raw.eq_ignore_ascii_case(REDACTED) {
            self.literals.insert(raw.to_owned());
        }
    }

    /// A phone number as written or in E.164: its literal spelling, and a pattern that finds it
    /// with other separators.
    pub fn phone(&mut self, raw: &str) {
        self.literal(raw);
        let international = raw.trim_start().starts_with('+');
        let e164 = format!(
            "+{}",
            raw.chars().filter(char::is_ascii_digit).collect::<String>()
        );
        let found = international
            .then(|| phone::pattern(&e164))
            .flatten()
            .or_else(|| phone::digits_pattern(raw));
        self.phones.extend(found);
    }

    /// One alternation of every spelling, longest literals first so that a full name is
    /// replaced whole rather than piece by piece; `None` when nothing is known.
    pub fn pattern(&self) -> Option<String> {
        let mut literals: Vec<&String> = self.literals.iter().collect();
        literals.sort_by_key(|l| std::cmp::Reverse(l.chars().count()));
        let branches: Vec<String> = literals
            .into_iter()
            .map(|l| literal_pattern(l))
            .chain(self.phones.iter().cloned())
            .map(|b| format!("(?:{b})"))
            .collect();
        (!branches.is_empty()).then(|| branches.join("|"))
    }
}

/// The literal with any run of white space where it has one, not inside a longer word.
fn literal_pattern(literal: &str) -> String {
    let body = literal
        .split_whitespace()
        .map(regex_syntax::escape)
        .collect::<Vec<_>>()
        .join("[[:space:]]+");
    let before = if literal.starts_with(char::is_alphanumeric) {
        "(?<![[:alnum:]])"
    } else {
        ""
    };
    let after = if literal.ends_with(char::is_alphanumeric) {
        "(?![[:alnum:]])"
    } else {
        ""
    };
    format!("{before}{body}{after}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped_and_longest_first() {
        let mut s = Spellings::default();
        s.literal("Ana");
        s.literal("ana.garcia+work@example.com");
        s.literal("x");
        s.literal("[redacted]");
        let pattern = s.pattern().unwrap();
        assert!(pattern.starts_with("(?:(?<![[:alnum:]])ana\\.garcia\\+work@example\\.com"));
        assert!(pattern.ends_with("|(?:(?<![[:alnum:]])Ana(?![[:alnum:]]))"));
        assert!(!pattern.contains("redacted"));
    }

    #[test]
    fn nothing_known_gives_no_pattern() {
        assert_eq!(Spellings::default().pattern(), None);
    }
}
