//! A shape as a JSON Schema (draft 2020-12) of a whole file of its version.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::model::{Container, Fields, Int, Payload, ROOT, Shape, Ty};

/// The schema of a file `{"version": version, "data": <shape>}` (with the checksum member a
/// save may add).
pub(crate) fn file_schema(shape: &Shape, title: &str, version: u32) -> Value {
    let names = def_names(shape);
    let writer = Writer {
        shape,
        names: &names,
    };
    let mut defs = Map::new();
    for (name, container) in &shape.containers {
        let mut schema = writer.container(container);
        if let Value::Object(map) = &mut schema {
            map.insert("title".to_owned(), Value::from(name.clone()));
        }
        defs.insert(names[name].clone(), schema);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {
            "version": { "const": version },
            "data": writer.ty(&shape.root),
            "crc32c": { "type": "string", "pattern": "^[0-9a-f]{8}$" },
        },
        "required": ["version", "data"],
        "$defs": defs,
    })
}

/// A `$defs` key for each container: its lock name with `$` as `root` and the characters a
/// JSON pointer or URI fragment would need escaped replaced (`$.shapes[]` is `root.shapes.item`).
fn def_names(shape: &Shape) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let mut taken = std::collections::HashSet::new();
    for (name, _) in &shape.containers {
        let mut key = String::from("root");
        let rest = name.strip_prefix(ROOT).unwrap_or(name);
        let rest = rest
            .replace("[]", ".item")
            .replace("{key}", ".key")
            .replace("{}", ".value")
            .replace("::", ".");
        for c in rest.chars() {
            key.push(
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                },
            );
        }
        if !name.starts_with(ROOT) {
            key = format!("other.{key}");
        }
        let mut unique = key.clone();
        let mut n = 2;
        while !taken.insert(unique.clone()) {
            unique = format!("{key}.{n}");
            n += 1;
        }
        names.insert(name.clone(), unique);
    }
    names
}

struct Writer<'a> {
    shape: &'a Shape,
    names: &'a HashMap<String, String>,
}

impl Writer<'_> {
    fn ty(&self, ty: &Ty) -> Value {
        match ty {
            Ty::Unknown | Ty::Any => json!({}),
            Ty::Ref(name) => match self.names.get(name) {
                Some(key) => json!({ "$ref": format!("#/$defs/{key}") }),
                None => json!({}),
            },
            Ty::Unit => json!({ "type": "null" }),
            Ty::Bool => json!({ "type": "boolean" }),
            Ty::Int(int) => integer(*int),
            Ty::F32 | Ty::F64 => json!({ "type": "number" }),
            Ty::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
            Ty::Str => json!({ "type": "string" }),
            Ty::Bytes => json!({ "type": "array", "items": integer(Int::U8) }),
            Ty::Option(inner) => json!({ "anyOf": [self.ty(inner), { "type": "null" }] }),
            Ty::Seq(item) => json!({ "type": "array", "items": self.ty(item) }),
            Ty::Map(key, value) => {
                let mut map = json!({ "type": "object", "additionalProperties": self.ty(value) });
                if let Some(names) = self.key_names(key) {
                    map["propertyNames"] = names;
                }
                map
            }
            Ty::Tuple(items) => self.tuple(items),
            Ty::Array(item, size) => json!({
                "type": "array",
                "items": self.ty(item),
                "minItems": size,
                "maxItems": size,
            }),
        }
    }

    fn tuple(&self, items: &[Ty]) -> Value {
        json!({
            "type": "array",
            "prefixItems": items.iter().map(|item| self.ty(item)).collect::<Vec<_>>(),
            "items": false,
            "minItems": items.len(),
            "maxItems": items.len(),
        })
    }

    /// What the member names of a map with keys of type `key` look like (serde_json writes
    /// keys as strings), when that can be said.
    fn key_names(&self, key: &Ty) -> Option<Value> {
        match key {
            Ty::Int(int) if int.range().0 < 0 => Some(json!({ "pattern": "^-?[0-9]+$" })),
            Ty::Int(_) => Some(json!({ "pattern": "^[0-9]+$" })),
            Ty::Bool => Some(json!({ "enum": ["true", "false"] })),
            Ty::Char => Some(json!({ "minLength": 1, "maxLength": 1 })),
            Ty::Ref(name) => match self.shape.container(name)? {
                Container::Newtype(inner) => self.key_names(inner),
                Container::Enum(variants)
                    if variants.iter().all(|v| matches!(v.payload, Payload::Unit)) =>
                {
                    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                    Some(json!({ "enum": names }))
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn container(&self, container: &Container) -> Value {
        match container {
            Container::UnitStruct => json!({ "type": "null" }),
            Container::Newtype(inner) => self.ty(inner),
            Container::Tuple(items) => self.tuple(items),
            Container::Struct(fields) => self.object(fields),
            Container::Enum(variants) => {
                let one_of: Vec<Value> = variants
                    .iter()
                    .map(|variant| {
                        let payload = match &variant.payload {
                            Payload::Unit => return json!({ "const": variant.name }),
                            Payload::Newtype(inner) => self.ty(inner),
                            Payload::Tuple(items) => self.tuple(items),
                            Payload::Struct(fields) => self.object(fields),
                        };
                        let mut properties = Map::new();
                        properties.insert(variant.name.clone(), payload);
                        json!({
                            "type": "object",
                            "properties": properties,
                            "required": [variant.name],
                            "additionalProperties": false,
                        })
                    })
                    .collect();
                json!({ "oneOf": one_of })
            }
        }
    }

    fn object(&self, fields: &Fields) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in &fields.fields {
            properties.insert(field.name.clone(), self.ty(&field.ty));
            if !field.optional {
                required.push(Value::from(field.name.clone()));
            }
        }
        let mut object = json!({
            "type": "object",
            "properties": properties,
            "required": required,
        });
        if fields.deny_unknown {
            object["additionalProperties"] = Value::Bool(false);
        }
        object
    }
}

/// An integer of that width. 128-bit bounds are left out: a JSON Schema document here holds
/// numbers up to 64 bits.
fn integer(int: Int) -> Value {
    let mut schema = json!({ "type": "integer" });
    let (min, max) = int.range();
    if let Ok(min) = i64::try_from(min) {
        schema["minimum"] = Value::from(min);
    }
    if let Ok(max) = u64::try_from(max) {
        schema["maximum"] = Value::from(max);
    }
    schema
}
