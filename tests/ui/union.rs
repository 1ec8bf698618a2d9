use persist::Persisted;

#[derive(Persisted)]
#[persist(version = 1)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
