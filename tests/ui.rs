//! Compile errors of `#[derive(Persisted)]`: one mistake per file under `tests/ui/`, each with
//! the committed `.stderr` it must produce; `tests/ui-pass/` holds what must compile. Regenerate with `TRYBUILD=overwrite cargo test
//! --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
    t.pass(readme_live_block());
}

/// The README's Live block as written (its visible lines), in a program with the quickstart's
/// types as written (the quickstart block without its `main`), inside an async function that
/// `main` never calls: it must compile, not run.
fn readme_live_block() -> std::path::PathBuf {
    let readme = include_str!("../README.md");
    // Every Rust block, `ignore` or not: what follows its fence line, up to the closing fence.
    let blocks: Vec<&str> = readme
        .split("```rust")
        .skip(1)
        .filter_map(|rest| rest.split_once('\n'))
        .map(|(_, body)| body.split("\n```").next().unwrap())
        .collect();
    let quickstart = blocks
        .iter()
        .find(|block| block.contains("struct Settings {"))
        .expect("the quickstart block");
    let types = &quickstart[..quickstart.find("fn main()").unwrap()];
    let live = blocks
        .iter()
        .find(|block| block.contains("Settings::live("))
        .expect("the Live block");
    // What a reader sees: without the doc test's hidden lines (its own copy of the types, its
    // `main`), which rustdoc leaves out the same way.
    let live: Vec<&str> = live
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line == "#" || line.starts_with("# "))
        })
        .collect();
    let live = live.join("\n");
    let program = format!(
        "{types}\n#[allow(dead_code, unused_variables)]\n\
         async fn live_block() -> Result<(), Box<dyn std::error::Error>> {{\n{live}\nOk(())\n}}\n\
         fn main() {{}}\n"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("readme_live_block.rs");
    std::fs::write(&path, program).unwrap();
    path
}
