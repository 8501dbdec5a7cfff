//! The slug sweep: for every code point of the Basic Multilingual Plane and the emoji blocks,
//! the stock plugin's slugs of `a<c>b` (a Job name prefix and a label value) are the ones
//! prefect-kubernetes' own `_slugify_name` and `_slugify_label_value` make (run in the
//! project's venv by tests/oracle/differential.py).
//!
//! Characters Unicode assigned after the version of Python's own database (Python 3.11: 14.0)
//! are the one documented exception: Python cannot decompose what it does not know, this
//! plugin's Unicode tables can, so such a character may slug to its letters here and to a dash
//! there. They are counted, not compared.

use plugin_default::slug;
use std::collections::BTreeMap;

type Slugs = (Option<String>, String, String);

fn prefects_slugs(first: u32, last: u32) -> BTreeMap<u32, Slugs> {
    let output = std::process::Command::new(agent_tests::python())
        .arg(agent_tests::tests_path("oracle/differential.py"))
        .args(["--slugs", &format!("{first:x}"), &format!("{last:x}")])
        .output()
        .expect("running the oracle");
    assert!(
        output.status.success(),
        "the oracle failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let slugs: BTreeMap<String, Slugs> =
        serde_json::from_slice(&output.stdout).expect("the oracle prints JSON");
    slugs
        .into_iter()
        .map(|(cp, slugs)| (cp.parse().expect("a code point"), slugs))
        .collect()
}

fn sweep(first: u32, last: u32) {
    let expected = prefects_slugs(first, last);
    assert!(expected.len() > 1000, "the oracle answered for the block");
    let mut differences = Vec::new();
    let mut newer = 0;
    for (cp, (name, label, category)) in &expected {
        let text = format!("a{}b", char::from_u32(*cp).expect("not a surrogate"));
        let ours = (slug::name(&text), slug::label_value(&text));
        if ours != (name.clone(), label.clone()) && category == "Cn" {
            newer += 1;
        } else if ours != (name.clone(), label.clone()) {
            differences.push(format!(
                "U+{cp:04X} {text:?}: Prefect {:?} / {:?}, ours {:?} / {:?}",
                name, label, ours.0, ours.1
            ));
        }
    }
    assert!(
        newer < 50,
        "{newer} characters newer than Python's Unicode slug differently"
    );
    assert!(
        differences.is_empty(),
        "{} code points slug differently:\n{}",
        differences.len(),
        differences
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_basic_multilingual_plane_slugs_as_prefects_worker_slugs_it() {
    sweep(0x0001, 0xFFFF);
}

#[test]
fn emoji_and_symbols_slug_as_prefects_worker_slugs_them() {
    sweep(0x1F000, 0x1FAFF);
}
