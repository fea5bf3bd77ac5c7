//! `openapi.yaml` at the root of the repository is the OpenAPI description the code generates:
//! this test fails when the two differ, and says how to regenerate the file.

use std::path::PathBuf;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test --test openapi";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml")
}

#[test]
fn committed_openapi_yaml_is_what_the_code_generates() {
    let generated = gdprd::http::openapi::to_yaml(&gdprd::http::openapi::spec());
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v != "0") {
        std::fs::write(&path, &generated).expect("write openapi.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        panic!(
            "openapi.yaml differs from the description the code generates{}\n\
             If the change is intended, regenerate the file and commit it:\n\n    {REGENERATE}\n",
            first_difference(&committed, &generated)
        );
    }
}

/// Where the two texts part, with a few lines of each.
fn first_difference(committed: &str, generated: &str) -> String {
    let committed: Vec<&str> = committed.lines().collect();
    let generated: Vec<&str> = generated.lines().collect();
    let at = committed
        .iter()
        .zip(&generated)
        .position(|(a, b)| a != b)
        .unwrap_or(committed.len().min(generated.len()));
    let show = |lines: &[&str]| -> String {
        lines
            .iter()
            .skip(at)
            .take(6)
            .map(|l| format!("\n    | {l}"))
            .collect()
    };
    format!(
        ", from line {}:\n  committed:{}\n  generated:{}\n",
        at + 1,
        show(&committed),
        show(&generated)
    )
}
