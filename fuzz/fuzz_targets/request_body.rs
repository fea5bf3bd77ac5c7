//! The body of `POST /api/v2/gdpr/requests` as the API parses it, then the identifiers of its
//! subject as request creation reads them: no input makes either panic, and every identifier
//! read from a subject normalizes, from its raw spelling, to the value that was read.

#![no_main]

use std::sync::OnceLock;

use gdprd::index::Normalizer;
use gdprd::index::record::spellings_of;
use gdprd::requests::model::NewRequest;
use gdprd::wire::parse_json;
use libfuzzer_sys::fuzz_target;

fn normalizer() -> &'static Normalizer {
    static NORMALIZER: OnceLock<Normalizer> = OnceLock::new();
    NORMALIZER.get_or_init(|| Normalizer::new("US").expect("US is a region"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_json::<NewRequest>(data) else {
        return;
    };
    let Some(subject) = &request.subject else {
        return;
    };
    let Ok(spellings) = spellings_of(subject, normalizer()) else {
        return;
    };
    for (kind, value, raw) in spellings {
        assert!(!value.as_str().is_empty(), "{kind}: empty value");
        let again = normalizer()
            .normalize(kind, &raw)
            .unwrap_or_else(|e| panic!("{kind}: {raw:?} was read but does not normalize: {e}"));
        assert_eq!(again, value, "{kind}: {raw:?} reads two ways");
    }
});
