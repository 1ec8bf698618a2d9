//! The serialized shape of a type, as text: what serde expects to read, traced through the
//! type's `Deserialize` impl with serde-reflection. Nested types are included, so a change inside
//! an enum used three levels down shows up too. Types are named by where they are used
//! (`$.window`), not by their Rust names, which JSON never holds: renaming a type is not a
//! schema change.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde_reflection::{
    ContainerFormat, Format, Named, Registry, Samples, Tracer, TracerConfig, VariantFormat,
};

use crate::Persisted;

/// A pass explores one more variant of every enum it reaches; this bounds the passes of one
/// attempt (a pass with no progress ends it sooner).
const MAX_PASSES: usize = 512;

/// Why a type's shape could not be described.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot describe the serialized shape of `{type_name}`: {reason}. persist traces shapes \
     through `Deserialize`, which does not work for untagged or internally tagged enums \
     (`#[serde(untagged)]`, `#[serde(tag = ...)]`), `#[serde(flatten)]`, self-describing values \
     such as `serde_json::Value`, or `Deserialize` impls that call `deserialize_any`; mark such a \
     field `#[serde(with = \"persist::any\")]` and the lock describes it as `any`"
)]
pub struct ShapeError {
    type_name: String,
    reason: String,
}

/// The name of a type without its module path.
pub(crate) fn short_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    let short = base.rsplit("::").next().unwrap_or(base);
    format!("{short}{}", &full[base.len()..])
}

/// The shape of `V` as text, one container per block, the root first, then the others by name.
pub fn describe<V: Persisted>() -> Result<String, ShapeError> {
    let error = |reason: String| ShapeError {
        type_name: short_name::<V>(),
        reason,
    };
    // Tracing marks an enum it reached but has not fully explored as incomplete, and then keeps
    // to its first variant; clearing the mark after each pass makes the next pass explore one
    // more variant. The names of nested enums are only known from a failed attempt, so each
    // attempt that finds new incomplete enums starts over knowing their names.
    let samples = Samples::new();
    let _tracing = crate::any::Tracing::start();
    let mut enums: Vec<String> = Vec::new();
    let (root, registry) = loop {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut root = None;
        for _ in 0..MAX_PASSES {
            let (format, _) = tracer
                .trace_type_once::<V>(&samples)
                .map_err(|e| error(e.to_string()))?;
            root.get_or_insert(format);
            let mut progress = false;
            for name in &enums {
                progress |= tracer.check_incomplete_enum(name).is_some();
            }
            if let Some(Format::TypeName(name)) = &root {
                progress |= tracer.check_incomplete_enum(name).is_some();
            }
            if !progress {
                break;
            }
        }
        match tracer.registry() {
            Ok(registry) => break (root.unwrap_or(Format::Unit), registry),
            Err(serde_reflection::Error::MissingVariants(missing))
                if missing.iter().any(|name| !enums.contains(name)) =>
            {
                for name in missing {
                    if !enums.contains(&name) {
                        enums.push(name);
                    }
                }
            }
            Err(e) => return Err(error(e.to_string())),
        }
    };
    let names = canonical_names(&root, &registry);
    let mut text = String::new();
    match root_name(&root).and_then(|name| registry.get(name)) {
        Some(container) => container_block(&mut text, ROOT, container, &names),
        None => {
            let _ = writeln!(text, "{ROOT} = {}", FormatText(&root, &names));
        }
    }
    for (name, canonical) in &names.order {
        if Some(name) != root_name(&root)
            && let Some(container) = registry.get(name)
        {
            container_block(&mut text, canonical, container, &names);
        }
    }
    Ok(text)
}

/// The root's name in a lock.
const ROOT: &str = "$";

fn root_name(root: &Format) -> Option<&String> {
    match root {
        Format::TypeName(name) => Some(name),
        _ => None,
    }
}

/// What a lock calls each nested type: the path of its first use from the root (`$.window`,
/// `$.shapes[]`, `$.theme::Custom.accent`), never its Rust or serde name. A type renamed in
/// Rust, with the same serialized shape, keeps its lock; JSON never holds the names.
struct Names {
    by_type: HashMap<String, String>,
    /// Types in the order they were first reached, with their lock names.
    order: Vec<(String, String)>,
}

impl Names {
    fn of<'a>(&'a self, name: &'a str) -> &'a str {
        self.by_type.get(name).map_or(name, String::as_str)
    }
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

fn container_block(out: &mut String, name: &str, container: &ContainerFormat, names: &Names) {
    let _ = match container {
        ContainerFormat::UnitStruct => writeln!(out, "{name} = unit struct"),
        ContainerFormat::NewTypeStruct(inner) => {
            writeln!(out, "{name} = newtype({})", FormatText(inner, names))
        }
        ContainerFormat::TupleStruct(items) => {
            writeln!(out, "{name} = tuple({})", List(items, names))
        }
        ContainerFormat::Struct(fields) => {
            let _ = writeln!(out, "{name} = struct {{");
            fields_block(out, fields, "  ", names);
            writeln!(out, "}}")
        }
        ContainerFormat::Enum(variants) => {
            let _ = writeln!(out, "{name} = enum {{");
            for variant in variants.values() {
                let _ = match &variant.value {
                    VariantFormat::Unit | VariantFormat::Variable(_) => {
                        writeln!(out, "  {},", variant.name)
                    }
                    VariantFormat::NewType(inner) => {
                        writeln!(out, "  {}({}),", variant.name, FormatText(inner, names))
                    }
                    VariantFormat::Tuple(items) => {
                        writeln!(out, "  {}({}),", variant.name, List(items, names))
                    }
                    VariantFormat::Struct(fields) => {
                        let _ = writeln!(out, "  {} {{", variant.name);
                        fields_block(out, fields, "    ", names);
                        writeln!(out, "  }},")
                    }
                };
            }
            writeln!(out, "}}")
        }
    };
}

fn fields_block(out: &mut String, fields: &[Named<Format>], indent: &str, names: &Names) {
    for field in fields {
        let _ = writeln!(
            out,
            "{indent}{}: {},",
            field.name,
            FormatText(&field.value, names)
        );
    }
}

struct List<'a>(&'a [Format], &'a Names);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, format) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", FormatText(format, self.1))?;
        }
        Ok(())
    }
}

struct FormatText<'a>(&'a Format, &'a Names);

impl fmt::Display for FormatText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Format::Variable(_) => f.write_str("?"),
            Format::TypeName(name) => f.write_str(self.1.of(name)),
            Format::Unit => f.write_str("()"),
            Format::Bool => f.write_str("bool"),
            Format::I8 => f.write_str("i8"),
            Format::I16 => f.write_str("i16"),
            Format::I32 => f.write_str("i32"),
            Format::I64 => f.write_str("i64"),
            Format::I128 => f.write_str("i128"),
            Format::U8 => f.write_str("u8"),
            Format::U16 => f.write_str("u16"),
            Format::U32 => f.write_str("u32"),
            Format::U64 => f.write_str("u64"),
            Format::U128 => f.write_str("u128"),
            Format::F32 => f.write_str("f32"),
            Format::F64 => f.write_str("f64"),
            Format::Char => f.write_str("char"),
            Format::Str => f.write_str("string"),
            Format::Bytes => f.write_str("bytes"),
            Format::Option(inner) => write!(f, "option<{}>", FormatText(inner, self.1)),
            Format::Seq(inner) => write!(f, "seq<{}>", FormatText(inner, self.1)),
            Format::Map { key, value } => write!(
                f,
                "map<{}, {}>",
                FormatText(key, self.1),
                FormatText(value, self.1)
            ),
            Format::Tuple(items) => write!(f, "({})", List(items, self.1)),
            Format::TupleArray { content, size } => {
                write!(f, "[{}; {size}]", FormatText(content, self.1))
            }
        }
    }
}
