//! The serialized shape of a type, as text: what serde expects to read, traced through the
//! type's `Deserialize` impl with serde-reflection. Nested types are included, so a change inside
//! an enum used three levels down shows up too.

use std::fmt::{self, Write as _};

use serde_reflection::{
    ContainerFormat, Format, Named, Samples, Tracer, TracerConfig, VariantFormat,
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
     such as `serde_json::Value`, or `Deserialize` impls that call `deserialize_any`"
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
    let mut text = String::new();
    let root_name = match &root {
        Format::TypeName(name) => Some(name.clone()),
        _ => None,
    };
    match &root_name {
        Some(name) => {
            if let Some(container) = registry.get(name) {
                container_block(&mut text, name, container);
            }
        }
        None => {
            let _ = writeln!(text, "root = {}", FormatText(&root));
        }
    }
    for (name, container) in &registry {
        if Some(name) != root_name.as_ref() {
            container_block(&mut text, name, container);
        }
    }
    Ok(text)
}

fn container_block(out: &mut String, name: &str, container: &ContainerFormat) {
    let _ = match container {
        ContainerFormat::UnitStruct => writeln!(out, "{name} = unit struct"),
        ContainerFormat::NewTypeStruct(inner) => {
            writeln!(out, "{name} = newtype({})", FormatText(inner))
        }
        ContainerFormat::TupleStruct(items) => {
            writeln!(out, "{name} = tuple({})", List(items))
        }
        ContainerFormat::Struct(fields) => {
            let _ = writeln!(out, "{name} = struct {{");
            fields_block(out, fields, "  ");
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
                        writeln!(out, "  {}({}),", variant.name, FormatText(inner))
                    }
                    VariantFormat::Tuple(items) => {
                        writeln!(out, "  {}({}),", variant.name, List(items))
                    }
                    VariantFormat::Struct(fields) => {
                        let _ = writeln!(out, "  {} {{", variant.name);
                        fields_block(out, fields, "    ");
                        writeln!(out, "  }},")
                    }
                };
            }
            writeln!(out, "}}")
        }
    };
}

fn fields_block(out: &mut String, fields: &[Named<Format>], indent: &str) {
    for field in fields {
        let _ = writeln!(out, "{indent}{}: {},", field.name, FormatText(&field.value));
    }
}

struct List<'a>(&'a [Format]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, format) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", FormatText(format))?;
        }
        Ok(())
    }
}

struct FormatText<'a>(&'a Format);

impl fmt::Display for FormatText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Format::Variable(_) => f.write_str("?"),
            Format::TypeName(name) => f.write_str(name),
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
            Format::Option(inner) => write!(f, "option<{}>", FormatText(inner)),
            Format::Seq(inner) => write!(f, "seq<{}>", FormatText(inner)),
            Format::Map { key, value } => {
                write!(f, "map<{}, {}>", FormatText(key), FormatText(value))
            }
            Format::Tuple(items) => write!(f, "({})", List(items)),
            Format::TupleArray { content, size } => write!(f, "[{}; {size}]", FormatText(content)),
        }
    }
}
