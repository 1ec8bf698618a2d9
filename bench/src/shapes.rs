//! Workloads of the shapes real state files have, about 1 MiB of JSON each, so that a result on
//! the record workload is not mistaken for one on every shape:
//!
//! - [`Geometry`]: float-heavy (a CAD or game scene: vertices, normals, transforms);
//! - [`Catalogue`]: map-heavy (a shop's products keyed by SKU, each with maps of attributes,
//!   prices per currency and stock per warehouse);
//! - [`Social`]: string- and unicode-heavy (posts with emoji, accents, CJK, quotes and escapes).

use std::collections::BTreeMap;

use persist::Persisted;
use serde::{Deserialize, Serialize};

use crate::Rng;

/// A scene of meshes: mostly `f64` and `f32` of every magnitude.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct Geometry {
    /// The meshes.
    pub meshes: Vec<Mesh>,
}

/// One mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mesh {
    /// Its name.
    pub name: String,
    /// Vertex positions.
    pub vertices: Vec<[f64; 3]>,
    /// Vertex normals.
    pub normals: Vec<[f32; 3]>,
    /// Texture coordinates.
    pub uvs: Vec<[f32; 2]>,
    /// A 4x4 transform, row-major.
    pub transform: [f64; 16],
    /// Bounding box: minimum and maximum corner.
    pub bounds: ([f64; 3], [f64; 3]),
}

impl Geometry {
    /// About 1 MiB of JSON.
    pub fn sample() -> Geometry {
        let mut rng = Rng::new(0x6E0);
        let meshes = (0..40)
            .map(|m| {
                let count = 120 + rng.below(40) as usize;
                let scale = [1e-3, 1.0, 250.0, 4e4][m % 4];
                let vertices: Vec<[f64; 3]> = (0..count)
                    .map(|_| [0; 3].map(|_| (rng.unit() - 0.5) * scale))
                    .collect();
                let normals = (0..count)
                    .map(|_| {
                        let [x, y, z] = [0; 3].map(|_| rng.unit() as f32 - 0.5);
                        let length = (x * x + y * y + z * z).sqrt().max(f32::EPSILON);
                        [x / length, y / length, z / length]
                    })
                    .collect();
                let uvs = (0..count)
                    .map(|_| [rng.unit() as f32, rng.unit() as f32])
                    .collect();
                let mut transform = [0.0; 16];
                for (i, cell) in transform.iter_mut().enumerate() {
                    *cell = if i % 5 == 0 { 1.0 } else { rng.unit() * 1e-2 };
                }
                let low = vertices.iter().fold([f64::MAX; 3], |acc, v| {
                    [acc[0].min(v[0]), acc[1].min(v[1]), acc[2].min(v[2])]
                });
                let high = vertices.iter().fold([f64::MIN; 3], |acc, v| {
                    [acc[0].max(v[0]), acc[1].max(v[1]), acc[2].max(v[2])]
                });
                Mesh {
                    name: format!("mesh-{m:03}"),
                    vertices,
                    normals,
                    uvs,
                    transform,
                    bounds: (low, high),
                }
            })
            .collect();
        Geometry { meshes }
    }
}

/// Products keyed by SKU: maps inside maps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct Catalogue {
    /// Products by SKU.
    pub products: BTreeMap<String, Product>,
}

/// One product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Display name.
    pub title: String,
    /// Free-form attributes (colour, size, material, ...).
    pub attributes: BTreeMap<String, String>,
    /// Price in minor units, by currency.
    pub prices: BTreeMap<String, u64>,
    /// Units in stock, by warehouse.
    pub stock: BTreeMap<String, i32>,
    /// Category path.
    pub categories: Vec<String>,
}

const ATTRIBUTES: [&str; 10] = [
    "colour", "size", "material", "fit", "season", "origin", "care", "pattern", "brand", "line",
];
const VALUES: [&str; 8] = [
    "navy",
    "XL",
    "organic cotton",
    "slim",
    "winter",
    "Portugal",
    "30°C",
    "herringbone",
];
const CURRENCIES: [&str; 6] = ["EUR", "USD", "GBP", "JPY", "CHF", "SEK"];
const WAREHOUSES: [&str; 5] = ["ber-1", "ams-2", "lhr-1", "nrt-3", "iad-2"];

impl Catalogue {
    /// About 1 MiB of JSON.
    pub fn sample() -> Catalogue {
        let mut rng = Rng::new(0xCA7);
        let products = (0..2_200)
            .map(|i| {
                let attributes = (0..3 + rng.below(6))
                    .map(|_| {
                        (
                            ATTRIBUTES[rng.below(10) as usize].to_owned(),
                            VALUES[rng.below(8) as usize].to_owned(),
                        )
                    })
                    .collect();
                let prices = CURRENCIES
                    .iter()
                    .take(2 + rng.below(5) as usize)
                    .map(|c| ((*c).to_owned(), 500 + rng.below(100_000)))
                    .collect();
                let stock = WAREHOUSES
                    .iter()
                    .map(|w| ((*w).to_owned(), rng.below(500) as i32 - 20))
                    .collect();
                let product = Product {
                    title: format!("Product {i} {}", VALUES[rng.below(8) as usize]),
                    attributes,
                    prices,
                    stock,
                    categories: vec!["apparel".into(), format!("line-{}", rng.below(30))],
                };
                (format!("SKU-{:08X}", rng.next_u64() as u32), product)
            })
            .collect();
        Catalogue { products }
    }
}

/// A feed of posts: long strings full of non-ASCII characters and characters JSON escapes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct Social {
    /// The posts.
    pub posts: Vec<Post>,
}

/// One post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    /// Author's display name.
    pub author: String,
    /// The text.
    pub text: String,
    /// Hashtags.
    pub tags: Vec<String>,
    /// Language code.
    pub lang: String,
    /// Replies.
    pub replies: Vec<Reply>,
}

/// A reply to a post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Author's display name.
    pub author: String,
    /// The text.
    pub text: String,
}

const NAMES: [&str; 8] = [
    "Zoë Ångström",
    "李小龙",
    "José Ñúñez",
    "Ада Лавлейс",
    "محمد",
    "Grace \"Amazing\" Hopper",
    "Søren Kierkegaard",
    "佐藤 花子",
];
const PHRASES: [&str; 12] = [
    "Just shipped it 🚀🎉",
    "naïve café déjà vu — résumé",
    "今日はいい天気ですね。",
    "Привет, мир!",
    "a line\nanother line\ttabbed",
    "quote: \"to be or not to be\"",
    "path C:\\Users\\me\\notes.txt",
    "emoji family 👩‍👩‍👧‍👦 and flags 🇩🇪🇯🇵",
    "مرحبا بالعالم",
    "math: ∀x ∈ ℝ, x² ≥ 0",
    "plain ascii words for balance",
    "control \u{1} and bell \u{7}",
];
const LANGS: [&str; 6] = ["en", "ja", "ru", "ar", "de", "fr"];

impl Social {
    /// About 1 MiB of JSON.
    pub fn sample() -> Social {
        let mut rng = Rng::new(0x50C1A1);
        let text = |rng: &mut Rng, most: u64| {
            let parts = 1 + rng.below(most);
            (0..parts)
                .map(|_| PHRASES[rng.below(12) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let posts = (0..1_500)
            .map(|_| Post {
                author: NAMES[rng.below(8) as usize].to_owned(),
                text: text(&mut rng, 7),
                tags: (0..rng.below(4))
                    .map(|_| {
                        format!(
                            "#{}",
                            PHRASES[rng.below(12) as usize]
                                .split(' ')
                                .next()
                                .unwrap_or("x")
                        )
                    })
                    .collect(),
                lang: LANGS[rng.below(6) as usize].to_owned(),
                replies: (0..rng.below(4))
                    .map(|_| Reply {
                        author: NAMES[rng.below(8) as usize].to_owned(),
                        text: text(&mut rng, 3),
                    })
                    .collect(),
            })
            .collect();
        Social { posts }
    }
}
