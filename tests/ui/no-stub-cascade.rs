// One mistake in the attribute gives one error, not a second one at every use of the type.
use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, colour = "blue")]
struct Settings {
    theme: String,
}

fn main() {
    let _ = Settings::load("settings.json");
}
