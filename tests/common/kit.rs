//! The migration kit run as `cargo test` runs it on a developer's machine.

use persist::Persisted;
use persist::testing::{Fixture, Fixtures};

/// Writes missing schema locks (as `assert_schemas` does outside CI; spelled out so that the
/// caller also runs under `CI`), then checks the locks and every fixture, and returns them.
/// An existing lock that changed fails: no workflow that calls this may change one.
pub fn run_the_kit<T: Persisted>(fixtures: &Fixtures<T>) -> Vec<Fixture<T>> {
    for change in fixtures.schema_changes().unwrap() {
        assert!(
            change.locked.is_none(),
            "an existing lock changed, which the workflow must not do:\n{change}"
        );
        std::fs::create_dir_all(change.lock.parent().unwrap()).unwrap();
        std::fs::write(&change.lock, &change.current).unwrap();
    }
    fixtures.assert_schemas();
    let loaded = fixtures.load_all().unwrap();
    fixtures.assert_every_version_has_a_fixture(&loaded);
    fixtures.assert_outcomes(&loaded);
    fixtures.assert_round_trips(&loaded);
    loaded
}
