//! Phone numbers as tables and free text spell them. The subject's numbers are known in E.164;
//! a table may hold the same number in national format, with a trunk prefix or an
//! international call prefix, and a transcript with any separators at all.

/// Up to three characters that are neither letters nor digits: spaces, dashes, dots,
/// parentheses, slashes, in any mix.
const SEP: &str = "[^[:alnum:]]{0,3}";

/// The digit strings a table may hold for `e164`: country code and national number, the
/// national number alone, with the trunk prefix 0, and after the call prefixes 00 and 011.
/// Compared with `gdpr_digits(column)`.
pub(super) fn variants(e164: &str) -> Vec<String> {
    match split(e164) {
        Some((cc, nsn)) => vec![
            format!("{cc}{nsn}"),
            nsn.clone(),
            format!("0{nsn}"),
            format!("00{cc}{nsn}"),
            format!("011{cc}{nsn}"),
        ],
        None => {
            let digits = digits(e164);
            if digits.is_empty() {
                Vec::new()
            } else {
                vec![digits]
            }
        }
    }
}

/// A regular expression (PostgreSQL's advanced syntax) finding `e164` in free text: the
/// national number with any separators between its digits, optionally after a trunk prefix or
/// the country code (with `+`, `00`, `011` or nothing), e.g. `(555) 010-0001`, `555.010.0001`,
/// `+1 555 010 0001`, `+44 (0)20 7946 0018`. A match starts at a digit, `+` or `(`, so the
/// text around it keeps its spaces.
pub(super) fn pattern(e164: &str) -> Option<String> {
    let (cc, nsn) = split(e164)?;
    Some(format!(
        "(?<![0-9])(?:(?:(?:\\+|00|011){SEP})?{cc}{SEP})?\\(?(?:0{SEP})?{}(?![0-9])",
        spaced(&nsn)
    ))
}

/// A regular expression finding a number written without a country code, whose digits are all
/// that is known of it, with any separators between them.
pub(super) fn digits_pattern(raw: &str) -> Option<String> {
    let digits = digits(raw);
    (digits.len() >= 7).then(|| format!("(?<![0-9])\\(?{}(?![0-9])", spaced(&digits)))
}

/// Country code and national significant number.
fn split(e164: &str) -> Option<(String, String)> {
    let digits = e164.strip_prefix('+')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = phonenumber::parse(None, e164).ok()?;
    let cc = number.code().value().to_string();
    let nsn = digits.strip_prefix(cc.as_str())?;
    (!nsn.is_empty()).then(|| (cc, nsn.to_owned()))
}

fn digits(raw: &str) -> String {
    raw.chars().filter(char::is_ascii_digit).collect()
}

fn spaced(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() * (SEP.len() + 1));
    for (i, d) in digits.chars().enumerate() {
        if i > 0 {
            out.push_str(SEP);
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_cover_national_and_international_spellings() {
        assert_eq!(
            variants("+15550100001"),
            [
                "15550100001",
                "5550100001",
                "05550100001",
                "0015550100001",
                "01115550100001"
            ]
        );
        assert_eq!(variants("+442079460018")[1], "2079460018");
    }

    #[test]
    fn a_value_that_is_no_e164_number_is_compared_by_its_digits() {
        assert_eq!(variants("555-0100"), ["5550100"]);
        assert!(variants("none").is_empty());
        assert_eq!(pattern("555-0100"), None);
    }

    #[test]
    fn digits_patterns_need_a_plausible_number() {
        assert!(digits_pattern("12-34").is_none());
        assert!(digits_pattern("555 0100").is_some());
    }
}
