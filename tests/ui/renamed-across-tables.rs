use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml", renamed("window.width" => "size.width"))]
struct Settings {
    theme: String,
}

fn main() {}
