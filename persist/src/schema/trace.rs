//! Tracing a type's `Deserialize` impl with serde-reflection, and turning what it found into a
//! [`Shape`] whose containers are named by where they are first used.

use std::collections::{BTreeSet, HashMap};

use serde_reflection::{
    ContainerFormat, Format, FormatHolder, Named, Registry, Samples, Tracer, TracerConfig,
    VariantFormat,
};

use super::model::{Container, Field, Fields, Int, Payload, ROOT, Shape, Ty, Variant};
use crate::Persisted;

/// A pass explores one more variant of every enum it reaches; this bounds the passes of one
/// attempt (a pass with no progress ends it sooner).
const MAX_PASSES: usize = 512;

/// A struct (by serde name) or struct variant (by serde name and variant name).
type Key = (String, Option<String>);

/// The aliases of each field of a struct or struct variant, in field order, and the aliases
/// whose field is one of two (by field index), to be told apart by probing.
#[derive(Default)]
struct Aliases {
    placed: HashMap<Key, Vec<Vec<String>>>,
    pending: Vec<(Key, String, [usize; 2])>,
}

/// An alias of one of two fields of a struct or struct variant, which only a probe tells.
pub(crate) struct PendingAlias {
    /// The container's lock name.
    pub container: String,
    /// The struct variant's name, for an enum.
    pub variant: Option<String>,
    pub alias: String,
    /// The indexes of the two fields it may belong to.
    pub fields: [usize; 2],
}

/// Traces `V` and describes it as a shape with plain fields (what each field allows on read and
/// write is probed later), with the aliases that need a probe. `Err` holds the reason tracing
/// failed.
pub(crate) fn shape_of<V: Persisted>() -> Result<(Shape, Vec<PendingAlias>), String> {
    let (root, registry, aliases) = trace::<V>()?;
    Ok(to_shape(&root, &registry, &aliases))
}

fn trace<V: Persisted>() -> Result<(Format, Registry, Aliases), String> {
    // Tracing marks an enum it reached but has not fully explored as incomplete, and then keeps
    // to its first variant; clearing the mark after each pass makes the next pass explore one
    // more variant. The names of nested enums are only known from a finished attempt, so each
    // attempt that finds new ones starts over knowing their names.
    let samples = Samples::new();
    let _tracing = crate::any::Tracing::start();
    let mut enums: Vec<String> = Vec::new();
    loop {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut root = None;
        let mut values: Vec<V> = Vec::new();
        let mut finished = false;
        for _ in 0..MAX_PASSES {
            let (format, value) = tracer
                .trace_type_once::<V>(&samples)
                .map_err(|e| e.to_string())?;
            root.get_or_insert(format);
            values.push(value);
            let mut progress = false;
            for name in &enums {
                progress |= tracer.check_incomplete_enum(name).is_some();
            }
            if let Some(Format::TypeName(name)) = &root {
                progress |= tracer.check_incomplete_enum(name).is_some();
            }
            if !progress {
                finished = true;
                break;
            }
        }
        let root = root.unwrap_or(Format::Unit);
        let mut registry = tracer.registry_unchecked();
        let root_name = match &root {
            Format::TypeName(name) => Some(name.as_str()),
            _ => None,
        };
        let mut found_new = false;
        for (name, container) in &registry {
            if matches!(container, ContainerFormat::Enum(_))
                && Some(name.as_str()) != root_name
                && !enums.contains(name)
            {
                enums.push(name.clone());
                found_new = true;
            }
        }
        if found_new {
            continue;
        }
        if !finished {
            return Err(format!(
                "an enum still had variants to explore after {MAX_PASSES} passes"
            ));
        }
        let aliases = separate_aliases(&mut registry, &values)?;
        for (name, container) in registry.iter_mut() {
            container
                .normalize()
                .map_err(|_| format!("Incomplete tracing detected inside container: {name}"))?;
        }
        let mut root = root;
        root.normalize().map_err(|e| e.to_string())?;
        return Ok((root, registry, aliases));
    }
}

/// serde lists each field's names (its name and its aliases, sorted) among the struct's
/// fields, while the values are traced one per field: the trace gives the first `n` names the
/// formats of the `n` fields, and leaves the last names without one. The names a save writes
/// are the fields, in order; every other name is an alias of the field before it or of the one
/// after it (a field's names are contiguous), which is certain when only one of them exists
/// and otherwise left to a probe.
fn separate_aliases<V: Persisted>(
    registry: &mut Registry,
    values: &[V],
) -> Result<Aliases, String> {
    let mut aliases = Aliases::default();
    let misaligned = |fields: &[Named<Format>]| fields.iter().any(|f| f.value.is_unknown());
    let needs_work = registry.values().any(|container| {
        match container {
        ContainerFormat::Struct(fields) => misaligned(fields),
        ContainerFormat::Enum(variants) => variants.values().any(|variant| {
            matches!(resolved(&variant.value), VariantFormat::Struct(fields) if misaligned(&fields))
        }),
        _ => false,
    }
    });
    if !needs_work {
        return Ok(aliases);
    }
    let written = written_names(values);
    for (name, container) in registry.iter_mut() {
        match container {
            ContainerFormat::Struct(fields) if misaligned(fields) => {
                let key = (name.clone(), None);
                realign(fields, written.get(&key), key, &mut aliases)
                    .ok_or_else(|| cannot_align(name, None))?;
            }
            ContainerFormat::Enum(variants) => {
                for variant in variants.values_mut() {
                    let VariantFormat::Struct(mut fields) = resolved(&variant.value) else {
                        continue;
                    };
                    if !misaligned(&fields) {
                        continue;
                    }
                    let key = (name.clone(), Some(variant.name.clone()));
                    realign(&mut fields, written.get(&key), key, &mut aliases)
                        .ok_or_else(|| cannot_align(name, Some(&variant.name)))?;
                    variant.value = VariantFormat::Struct(fields);
                }
            }
            _ => {}
        }
    }
    Ok(aliases)
}

fn cannot_align(name: &str, variant: Option<&str>) -> String {
    let what = match variant {
        Some(variant) => format!("the variant `{variant}` of `{name}`"),
        None => format!("`{name}`"),
    };
    format!(
        "{what} has `#[serde(alias = ...)]` fields, which persist tells from the fields by the \
         names a save of a traced sample writes (zeros, empty strings, `false`), and that save \
         left a field out (`skip_serializing_if` on such a value) or wrote one under another \
         name than it reads (`rename(serialize = ...)`); keep aliases and such fields in \
         separate structs (a nested struct is enough)"
    )
}

/// The variant format behind variables.
fn resolved(format: &VariantFormat) -> VariantFormat {
    match format {
        VariantFormat::Variable(variable) => match &*variable.borrow() {
            Some(inner) => resolved(inner),
            None => format.clone(),
        },
        other => other.clone(),
    }
}

/// Rewrites `fields` (the traced names, aliases included, with the formats of the real fields
/// first) as the real fields, given the names saves wrote, and records the aliases.
fn realign(
    fields: &mut Vec<Named<Format>>,
    written: Option<&BTreeSet<String>>,
    key: Key,
    aliases: &mut Aliases,
) -> Option<()> {
    let written = written?;
    let formats: Vec<Format> = fields
        .iter()
        .filter(|f| !f.value.is_unknown())
        .map(|f| f.value.clone())
        .collect();
    // The formats are those of the first fields, in order; the rest are unknown.
    if fields[..formats.len()].iter().any(|f| f.value.is_unknown()) {
        return None;
    }
    let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
    let mains: Vec<usize> = (0..names.len())
        .filter(|&i| written.contains(&names[i]))
        .collect();
    if mains.len() != formats.len() || mains.is_empty() {
        return None;
    }
    let mut placed = vec![Vec::new(); mains.len()];
    for (i, name) in names.iter().enumerate() {
        if mains.contains(&i) {
            continue;
        }
        // The field after it, and the one before it.
        let after = mains.iter().position(|&m| m > i);
        let before = after.unwrap_or(mains.len()).checked_sub(1);
        match (before, after) {
            (Some(field), None) | (None, Some(field)) => placed[field].push(name.clone()),
            (Some(before), Some(after)) => {
                aliases
                    .pending
                    .push((key.clone(), name.clone(), [before, after]));
            }
            (None, None) => return None,
        }
    }
    *fields = mains
        .iter()
        .zip(formats)
        .map(|(&i, format)| Named {
            name: names[i].clone(),
            value: format,
        })
        .collect();
    aliases.placed.insert(key, placed);
    Some(())
}

/// The field names saves of the traced values write, by struct and struct variant.
fn written_names<V: Persisted>(
    values: &[V],
) -> HashMap<(String, Option<String>), BTreeSet<String>> {
    let mut written: HashMap<(String, Option<String>), BTreeSet<String>> = HashMap::new();
    for value in values {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut samples = Samples::new();
        if tracer.trace_value(&mut samples, value).is_err() {
            continue;
        }
        for (name, container) in tracer.registry_unchecked() {
            match container {
                ContainerFormat::Struct(fields) => {
                    let names = written.entry((name, None)).or_default();
                    names.extend(fields.into_iter().map(|f| f.name));
                }
                ContainerFormat::Enum(variants) => {
                    for variant in variants.into_values() {
                        if let VariantFormat::Struct(fields) = resolved(&variant.value) {
                            let key = (name.clone(), Some(variant.name));
                            let names = written.entry(key).or_default();
                            names.extend(fields.into_iter().map(|f| f.name));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    written
}

/// What a lock calls each nested type: the path of its first use from the root (`$.window`,
/// `$.shapes[]`, `$.theme::Custom.accent`), never its Rust or serde name. A type renamed in
/// Rust, with the same serialized shape, keeps its lock; JSON never holds the names.
struct Names {
    by_type: HashMap<String, String>,
    /// Types in the order they were first reached, with their lock names.
    order: Vec<(String, String)>,
}

fn canonical_names(root: &Format, registry: &Registry) -> Names {
    fn visit(format: &Format, path: &str, registry: &Registry, names: &mut Names) {
        match format {
            Format::TypeName(name) => {
                if names.by_type.contains_key(name) {
                    return;
                }
                if name == crate::any::TRACED_NAME {
                    // `#[serde(with = "persist::any")]`: no block, just `any` where it is used.
                    names.by_type.insert(name.clone(), "any".to_owned());
                    return;
                }
                names.by_type.insert(name.clone(), path.to_owned());
                names.order.push((name.clone(), path.to_owned()));
                if let Some(container) = registry.get(name) {
                    visit_container(container, path, registry, names);
                }
            }
            Format::Option(inner) => visit(inner, path, registry, names),
            Format::Seq(inner) | Format::TupleArray { content: inner, .. } => {
                visit(inner, &format!("{path}[]"), registry, names);
            }
            Format::Map { key, value } => {
                visit(key, &format!("{path}{{key}}"), registry, names);
                visit(value, &format!("{path}{{}}"), registry, names);
            }
            Format::Tuple(items) => items_at(items, path, registry, names),
            _ => {}
        }
    }

    fn items_at(items: &[Format], path: &str, registry: &Registry, names: &mut Names) {
        for (i, item) in items.iter().enumerate() {
            visit(item, &format!("{path}.{i}"), registry, names);
        }
    }

    fn fields_at(fields: &[Named<Format>], path: &str, registry: &Registry, names: &mut Names) {
        for field in fields {
            visit(
                &field.value,
                &format!("{path}.{}", field.name),
                registry,
                names,
            );
        }
    }

    fn visit_container(
        container: &ContainerFormat,
        path: &str,
        registry: &Registry,
        names: &mut Names,
    ) {
        match container {
            ContainerFormat::UnitStruct => {}
            ContainerFormat::NewTypeStruct(inner) => {
                visit(inner, &format!("{path}.0"), registry, names);
            }
            ContainerFormat::TupleStruct(items) => items_at(items, path, registry, names),
            ContainerFormat::Struct(fields) => fields_at(fields, path, registry, names),
            ContainerFormat::Enum(variants) => {
                for variant in variants.values() {
                    let at = format!("{path}::{}", variant.name);
                    match &variant.value {
                        VariantFormat::Unit | VariantFormat::Variable(_) => {}
                        VariantFormat::NewType(inner) => visit(inner, &at, registry, names),
                        VariantFormat::Tuple(items) => items_at(items, &at, registry, names),
                        VariantFormat::Struct(fields) => fields_at(fields, &at, registry, names),
                    }
                }
            }
        }
    }

    let mut names = Names {
        by_type: HashMap::new(),
        order: Vec::new(),
    };
    visit(root, ROOT, registry, &mut names);
    // Anything the walk did not reach (not expected) keeps its serde name, so that it still
    // shows up in the lock.
    for name in registry.keys() {
        if !names.by_type.contains_key(name) && name != crate::any::TRACED_NAME {
            names.by_type.insert(name.clone(), name.clone());
            names.order.push((name.clone(), name.clone()));
        }
    }
    names
}

fn to_shape(root: &Format, registry: &Registry, aliases: &Aliases) -> (Shape, Vec<PendingAlias>) {
    let names = canonical_names(root, registry);
    let ty = |format: &Format| to_ty(format, &names);
    let fields = |serde_name: &str, variant: Option<&str>, list: &[Named<Format>]| {
        let key = (serde_name.to_owned(), variant.map(str::to_owned));
        let known = aliases.placed.get(&key);
        Fields {
            fields: list
                .iter()
                .enumerate()
                .map(|(i, field)| {
                    let mut field = Field::plain(field.name.clone(), ty(&field.value));
                    if let Some(list) = known.and_then(|known| known.get(i)) {
                        field.aliases = list.clone();
                    }
                    field
                })
                .collect(),
            deny_unknown: false,
        }
    };
    let mut containers = Vec::new();
    for (serde_name, lock_name) in &names.order {
        let Some(container) = registry.get(serde_name) else {
            continue;
        };
        let container = match container {
            ContainerFormat::UnitStruct => Container::UnitStruct,
            ContainerFormat::NewTypeStruct(inner) => Container::Newtype(ty(inner)),
            ContainerFormat::TupleStruct(items) => Container::Tuple(items.iter().map(ty).collect()),
            ContainerFormat::Struct(list) => Container::Struct(fields(serde_name, None, list)),
            ContainerFormat::Enum(variants) => Container::Enum(
                variants
                    .values()
                    .map(|variant| Variant {
                        name: variant.name.clone(),
                        payload: match &variant.value {
                            VariantFormat::Unit | VariantFormat::Variable(_) => Payload::Unit,
                            VariantFormat::NewType(inner) => Payload::Newtype(ty(inner)),
                            VariantFormat::Tuple(items) => {
                                Payload::Tuple(items.iter().map(ty).collect())
                            }
                            VariantFormat::Struct(list) => {
                                Payload::Struct(fields(serde_name, Some(&variant.name), list))
                            }
                        },
                    })
                    .collect(),
            ),
        };
        containers.push((lock_name.clone(), container));
    }
    // The root's block first, then the others in the order they were reached.
    if let Some(at) = containers.iter().position(|(name, _)| name == ROOT) {
        let root = containers.remove(at);
        containers.insert(0, root);
    }
    let pending = aliases
        .pending
        .iter()
        .filter_map(|((serde_name, variant), alias, fields)| {
            Some(PendingAlias {
                container: names.by_type.get(serde_name)?.clone(),
                variant: variant.clone(),
                alias: alias.clone(),
                fields: *fields,
            })
        })
        .collect();
    let shape = Shape {
        root: ty(root),
        containers,
    };
    (shape, pending)
}

fn to_ty(format: &Format, names: &Names) -> Ty {
    let ty = |format: &Format| Box::new(to_ty(format, names));
    match format {
        Format::Variable(_) => Ty::Unknown,
        Format::TypeName(name) => match names.by_type.get(name) {
            Some(lock_name) if lock_name == "any" && name == crate::any::TRACED_NAME => Ty::Any,
            Some(lock_name) => Ty::Ref(lock_name.clone()),
            None => Ty::Ref(name.clone()),
        },
        Format::Unit => Ty::Unit,
        Format::Bool => Ty::Bool,
        Format::I8 => Ty::Int(Int::I8),
        Format::I16 => Ty::Int(Int::I16),
        Format::I32 => Ty::Int(Int::I32),
        Format::I64 => Ty::Int(Int::I64),
        Format::I128 => Ty::Int(Int::I128),
        Format::U8 => Ty::Int(Int::U8),
        Format::U16 => Ty::Int(Int::U16),
        Format::U32 => Ty::Int(Int::U32),
        Format::U64 => Ty::Int(Int::U64),
        Format::U128 => Ty::Int(Int::U128),
        Format::F32 => Ty::F32,
        Format::F64 => Ty::F64,
        Format::Char => Ty::Char,
        Format::Str => Ty::Str,
        Format::Bytes => Ty::Bytes,
        Format::Option(inner) => Ty::Option(ty(inner)),
        Format::Seq(inner) => Ty::Seq(ty(inner)),
        Format::Map { key, value } => Ty::Map(ty(key), ty(value)),
        Format::Tuple(items) => Ty::Tuple(items.iter().map(|item| to_ty(item, names)).collect()),
        Format::TupleArray { content, size } => Ty::Array(ty(content), *size),
    }
}
