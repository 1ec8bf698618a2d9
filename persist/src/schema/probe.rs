//! What each field allows, found by trying the type itself: a sample value of the shape, built
//! as JSON, must deserialize; then, for every struct (and struct variant) the sample can reach,
//! each field is left out (still loads: it may be missing on read), given its empty value and
//! written back (left out of the output: a save may skip it), and an unknown member is added
//! (refused: `deny_unknown_fields`). A struct the sample cannot reach, or whose sample does not
//! load (a `Deserialize` impl that validates, a type that cannot be empty), keeps the facts of a
//! plain field: required unless an `Option`, always written.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::model::{Container, Fields, Payload, Shape, Ty, Variant};
use super::trace::PendingAlias;

/// One step from a value into a part of it.
#[derive(Debug, Clone, Copy)]
enum Hop {
    /// The value inside an `Option`.
    Some,
    /// The item `i` of a sequence, tuple or array (a sequence holds one item).
    Item(usize),
    /// The value of a map's one entry.
    Value,
    /// The value inside a newtype struct.
    Inner,
    /// The field `i` of a struct or struct variant.
    Field(usize),
    /// The variant `i` of an enum.
    Variant(usize),
}

/// A member name no type has: the probe for `deny_unknown_fields`.
const UNKNOWN_MEMBER: &str = "persist probe: an unknown member";

/// Fills in what each field of `shape` allows, probing `V` (whose shape it is), and places
/// each alias of `pending` on the field it belongs to (one the probe cannot place is left
/// out: the lock then does not know it, which is the safe side).
pub(crate) fn probe<V: Serialize + DeserializeOwned>(shape: &mut Shape, pending: &[PendingAlias]) {
    let routes = routes(shape);
    let mut targets = Vec::new();
    for (name, container) in &shape.containers {
        let Some(route) = routes.get(name) else {
            continue;
        };
        match container {
            Container::Struct(_) => targets.push((name.clone(), None, route.clone())),
            Container::Enum(variants) => {
                for (i, variant) in variants.iter().enumerate() {
                    if matches!(variant.payload, Payload::Struct(_)) {
                        let mut route = route.clone();
                        route.push(Hop::Variant(i));
                        targets.push((name.clone(), Some(i), route));
                    }
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (name, variant, route) in targets {
        let variant_name = variant.and_then(|i| match shape.container(&name) {
            Some(Container::Enum(variants)) => Some(variants[i].name.clone()),
            _ => None,
        });
        let aliases: Vec<(&str, [usize; 2])> = pending
            .iter()
            .filter(|p| p.container == name && p.variant == variant_name)
            .map(|p| (p.alias.as_str(), p.fields))
            .collect();
        if let Some(facts) = probe_target::<V>(shape, &route, &aliases) {
            found.push((name, variant, facts));
        }
    }
    for (name, variant, facts) in found {
        let fields = shape
            .containers
            .iter_mut()
            .find(|(n, _)| *n == name)
            .and_then(|(_, container)| match (container, variant) {
                (Container::Struct(fields), None) => Some(fields),
                (Container::Enum(variants), Some(i)) => match &mut variants[i].payload {
                    Payload::Struct(fields) => Some(fields),
                    _ => None,
                },
                _ => None,
            });
        if let Some(fields) = fields {
            fields.deny_unknown = facts.deny_unknown;
            for (field, (optional, may_skip)) in fields.fields.iter_mut().zip(facts.fields) {
                field.optional = optional;
                field.may_skip = may_skip;
            }
            for (alias, at) in facts.aliases {
                if let Some(field) = fields.fields.get_mut(at) {
                    field.aliases.push(alias);
                    field.aliases.sort();
                }
            }
        }
    }
}

/// What the probes of one struct found.
struct Facts {
    /// `(optional, may_skip)` per field.
    fields: Vec<(bool, bool)>,
    deny_unknown: bool,
    /// Aliases placed, with the index of their field.
    aliases: Vec<(String, usize)>,
}

/// Values tried for `any` fields, whose type the shape does not tell.
const ANY_SAMPLES: [fn() -> Value; 5] = [
    || Value::Null,
    || Value::Object(Map::new()),
    || Value::Array(Vec::new()),
    || Value::String(String::new()),
    || Value::from(0),
];

fn probe_target<V: Serialize + DeserializeOwned>(
    shape: &Shape,
    route: &[Hop],
    aliases: &[(&str, [usize; 2])],
) -> Option<Facts> {
    let loads = |value: &Value| serde_json::from_value::<V>(value.clone()).ok();
    let (sampler, base, pointer) = ANY_SAMPLES.iter().find_map(|any| {
        let sampler = Sampler {
            shape,
            any: any(),
            stack: Vec::new(),
        };
        let mut pointer = Vec::new();
        let base = sampler.clone().focus(&shape.root, route, &mut pointer)?;
        loads(&base)?;
        Some((sampler, base, pointer))
    })?;
    let fields = fields_at(shape, route)?;
    let mut facts = Facts {
        fields: Vec::new(),
        deny_unknown: false,
        aliases: Vec::new(),
    };
    for field in &fields.fields {
        let mut without = base.clone();
        object_at(&mut without, &pointer)?.remove(&field.name);
        let optional = loads(&without).is_some();
        let mut may_skip = false;
        for empty in sampler.clone().empties(&field.ty) {
            let mut with = base.clone();
            object_at(&mut with, &pointer)?.insert(field.name.clone(), empty);
            let Some(value) = loads(&with) else {
                continue;
            };
            let Ok(mut written) = serde_json::to_value(&value) else {
                continue;
            };
            if object_at(&mut written, &pointer).is_some_and(|map| !map.contains_key(&field.name)) {
                may_skip = true;
                break;
            }
        }
        facts.fields.push((optional, may_skip));
    }
    let mut unknown = base.clone();
    object_at(&mut unknown, &pointer)?.insert(UNKNOWN_MEMBER.to_owned(), Value::Null);
    facts.deny_unknown = loads(&unknown).is_none();
    // An alias stands in for its field: in place of the field it belongs to, the value loads;
    // in place of the other, serde refuses the value for holding its field twice.
    for &(alias, candidates) in aliases {
        let belongs = |at: usize| {
            let field = &fields.fields.get(at)?.name;
            let mut with = base.clone();
            let map = object_at(&mut with, &pointer)?;
            let value = map.remove(field)?;
            map.insert(alias.to_owned(), value);
            loads(&with)
        };
        let owners: Vec<usize> = candidates
            .into_iter()
            .filter(|&at| belongs(at).is_some())
            .collect();
        if let [at] = owners[..] {
            facts.aliases.push((alias.to_owned(), at));
        }
    }
    Some(facts)
}

/// The object at `pointer` in `value`.
fn object_at<'v>(value: &'v mut Value, pointer: &[String]) -> Option<&'v mut Map<String, Value>> {
    let mut at = value;
    for key in pointer {
        at = match at {
            Value::Object(map) => map.get_mut(key)?,
            Value::Array(items) => items.get_mut(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    at.as_object_mut()
}

/// The fields at the end of `route`: a struct's, or the struct variant's its last hop picks.
fn fields_at<'a>(shape: &'a Shape, route: &[Hop]) -> Option<&'a Fields> {
    fields_in_ty(shape, &shape.root, route)
}

/// [`fields_at`] from inside `container`, `route` starting at its first hop.
fn fields_after<'a>(
    shape: &'a Shape,
    container: &'a Container,
    route: &[Hop],
) -> Option<&'a Fields> {
    let Some((hop, rest)) = route.split_first() else {
        return match container {
            Container::Struct(fields) => Some(fields),
            _ => None,
        };
    };
    let next: &Ty = match (container, *hop) {
        (Container::Newtype(inner), Hop::Inner) => inner,
        (Container::Tuple(items), Hop::Item(i)) => items.get(i)?,
        (Container::Struct(fields), Hop::Field(i)) => &fields.fields.get(i)?.ty,
        (Container::Enum(variants), Hop::Variant(i)) => {
            let variant = variants.get(i)?;
            match (&variant.payload, rest.split_first()) {
                (Payload::Struct(fields), None) => return Some(fields),
                (Payload::Struct(fields), Some((Hop::Field(j), rest))) => {
                    return fields_in_ty(shape, &fields.fields.get(*j)?.ty, rest);
                }
                (Payload::Newtype(inner), _) => return fields_in_ty(shape, inner, rest),
                (Payload::Tuple(items), Some((Hop::Item(j), rest))) => {
                    return fields_in_ty(shape, items.get(*j)?, rest);
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    fields_in_ty(shape, next, rest)
}

fn fields_in_ty<'a>(shape: &'a Shape, ty: &'a Ty, route: &[Hop]) -> Option<&'a Fields> {
    match (ty, route.split_first()) {
        (Ty::Ref(name), _) => fields_after(shape, shape.container(name)?, route),
        (Ty::Option(inner), Some((Hop::Some, rest)))
        | (Ty::Seq(inner), Some((Hop::Item(_), rest)))
        | (Ty::Array(inner, _), Some((Hop::Item(_), rest)))
        | (Ty::Map(_, inner), Some((Hop::Value, rest))) => fields_in_ty(shape, inner, rest),
        (Ty::Tuple(items), Some((Hop::Item(i), rest))) => fields_in_ty(shape, items.get(*i)?, rest),
        _ => None,
    }
}

/// The shortest route from the root to each container that can be reached through values
/// (not through map keys).
fn routes(shape: &Shape) -> HashMap<String, Vec<Hop>> {
    let mut routes: HashMap<String, Vec<Hop>> = HashMap::new();
    let mut queue: VecDeque<(String, Vec<Hop>)> = VecDeque::new();
    let reach = |ty: &Ty, route: Vec<Hop>, queue: &mut VecDeque<_>| {
        for (hops, name) in refs_in(ty) {
            let mut route = route.clone();
            route.extend(hops);
            queue.push_back((name, route));
        }
    };
    reach(&shape.root, Vec::new(), &mut queue);
    while let Some((name, route)) = queue.pop_front() {
        if routes.contains_key(&name) {
            continue;
        }
        let Some(container) = shape.container(&name) else {
            continue;
        };
        routes.insert(name.clone(), route.clone());
        let with = |hops: &[Hop]| {
            let mut next = route.clone();
            next.extend_from_slice(hops);
            next
        };
        match container {
            Container::UnitStruct => {}
            Container::Newtype(inner) => reach(inner, with(&[Hop::Inner]), &mut queue),
            Container::Tuple(items) => {
                for (i, item) in items.iter().enumerate() {
                    reach(item, with(&[Hop::Item(i)]), &mut queue);
                }
            }
            Container::Struct(fields) => {
                for (i, field) in fields.fields.iter().enumerate() {
                    reach(&field.ty, with(&[Hop::Field(i)]), &mut queue);
                }
            }
            Container::Enum(variants) => {
                for (v, variant) in variants.iter().enumerate() {
                    match &variant.payload {
                        Payload::Unit => {}
                        Payload::Newtype(inner) => {
                            reach(inner, with(&[Hop::Variant(v)]), &mut queue);
                        }
                        Payload::Tuple(items) => {
                            for (i, item) in items.iter().enumerate() {
                                reach(item, with(&[Hop::Variant(v), Hop::Item(i)]), &mut queue);
                            }
                        }
                        Payload::Struct(fields) => {
                            for (i, field) in fields.fields.iter().enumerate() {
                                reach(
                                    &field.ty,
                                    with(&[Hop::Variant(v), Hop::Field(i)]),
                                    &mut queue,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    routes
}

/// The containers a type names directly (not through another container), each with the hops
/// that reach it.
fn refs_in(ty: &Ty) -> Vec<(Vec<Hop>, String)> {
    let inside = |hop: Hop, inner: &Ty| {
        refs_in(inner)
            .into_iter()
            .map(|(mut hops, name)| {
                hops.insert(0, hop);
                (hops, name)
            })
            .collect::<Vec<_>>()
    };
    match ty {
        Ty::Ref(name) => vec![(Vec::new(), name.clone())],
        Ty::Option(inner) => inside(Hop::Some, inner),
        Ty::Seq(inner) | Ty::Array(inner, _) => inside(Hop::Item(0), inner),
        Ty::Map(_, value) => inside(Hop::Value, value),
        Ty::Tuple(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| inside(Hop::Item(i), item))
            .collect(),
        _ => Vec::new(),
    }
}

/// Builds sample values of a shape as JSON.
#[derive(Clone)]
struct Sampler<'a> {
    shape: &'a Shape,
    /// What an `any` field holds.
    any: Value,
    /// The containers being built, to stop at recursion.
    stack: Vec<&'a str>,
}

impl<'a> Sampler<'a> {
    /// The smallest value: numbers 1 (so that `NonZero` types load), strings empty, options
    /// `null`, sequences and maps empty, enums their first variant that can be built.
    fn minimal(&mut self, ty: &'a Ty) -> Option<Value> {
        Some(match ty {
            Ty::Unknown | Ty::Unit => Value::Null,
            Ty::Any => self.any.clone(),
            Ty::Bool => Value::Bool(false),
            Ty::Int(_) => Value::from(1),
            Ty::F32 | Ty::F64 => Value::from(1.0),
            Ty::Char => Value::from("a"),
            Ty::Str => Value::from(""),
            Ty::Bytes | Ty::Seq(_) => Value::Array(Vec::new()),
            Ty::Option(_) => Value::Null,
            Ty::Map(..) => Value::Object(Map::new()),
            Ty::Tuple(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.minimal(item))
                    .collect::<Option<_>>()?,
            ),
            Ty::Array(item, size) => {
                let one = self.minimal(item)?;
                Value::Array(vec![one; *size])
            }
            Ty::Ref(name) => self.minimal_container(name)?,
        })
    }

    fn minimal_container(&mut self, name: &'a str) -> Option<Value> {
        if self.stack.contains(&name) {
            return None;
        }
        let container = self.shape.container(name)?;
        self.stack.push(name);
        let value = match container {
            Container::UnitStruct => Some(Value::Null),
            Container::Newtype(inner) => self.minimal(inner),
            Container::Tuple(items) => items
                .iter()
                .map(|item| self.minimal(item))
                .collect::<Option<_>>()
                .map(Value::Array),
            Container::Struct(fields) => self.minimal_fields(fields),
            Container::Enum(variants) => {
                (0..variants.len()).find_map(|i| self.variant(variants, i, &[], &mut Vec::new()))
            }
        };
        self.stack.pop();
        value
    }

    fn minimal_fields(&mut self, fields: &'a Fields) -> Option<Value> {
        let mut map = Map::new();
        for field in &fields.fields {
            map.insert(field.name.clone(), self.minimal(&field.ty)?);
        }
        Some(Value::Object(map))
    }

    /// The variant `i`, built along `route` (which starts inside it).
    fn variant(
        &mut self,
        variants: &'a [Variant],
        i: usize,
        route: &[Hop],
        pointer: &mut Vec<String>,
    ) -> Option<Value> {
        let variant = variants.get(i)?;
        pointer.push(variant.name.clone());
        let payload = match (&variant.payload, route.split_first()) {
            (Payload::Unit, None) => {
                pointer.pop();
                return Some(Value::from(variant.name.clone()));
            }
            (Payload::Newtype(inner), _) => self.focus(inner, route, pointer)?,
            (Payload::Tuple(items), None) => Value::Array(
                items
                    .iter()
                    .map(|item| self.minimal(item))
                    .collect::<Option<_>>()?,
            ),
            (Payload::Tuple(items), Some((Hop::Item(at), rest))) => {
                self.items(items.iter(), *at, rest, pointer)?
            }
            (Payload::Struct(fields), None) => self.minimal_fields(fields)?,
            (Payload::Struct(fields), Some((Hop::Field(at), rest))) => {
                self.fields_focused(fields, *at, rest, pointer)?
            }
            _ => return None,
        };
        let mut map = Map::new();
        map.insert(variant.name.clone(), payload);
        Some(Value::Object(map))
    }

    /// A value of `ty` whose part at the end of `route` is present (an option holds a value, a
    /// sequence one item, a map one entry, an enum the variant on the way), and minimal
    /// elsewhere; `pointer` gets the JSON path to that part.
    fn focus(&mut self, ty: &'a Ty, route: &[Hop], pointer: &mut Vec<String>) -> Option<Value> {
        let Some((hop, rest)) = route.split_first() else {
            return self.minimal(ty);
        };
        match (ty, *hop) {
            (Ty::Ref(name), _) => self.focus_container(name, route, pointer),
            (Ty::Option(inner), Hop::Some) => self.focus(inner, rest, pointer),
            (Ty::Seq(inner), Hop::Item(_)) => {
                pointer.push("0".to_owned());
                Some(Value::Array(vec![self.focus(inner, rest, pointer)?]))
            }
            (Ty::Array(item, size), Hop::Item(at)) => {
                self.items(std::iter::repeat_n(&**item, *size), at, rest, pointer)
            }
            (Ty::Tuple(items), Hop::Item(at)) => self.items(items.iter(), at, rest, pointer),
            (Ty::Map(key, value), Hop::Value) => {
                let key = match self.minimal(key)? {
                    Value::String(text) => text,
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => return None,
                };
                pointer.push(key.clone());
                let mut map = Map::new();
                map.insert(key, self.focus(value, rest, pointer)?);
                Some(Value::Object(map))
            }
            _ => None,
        }
    }

    fn focus_container(
        &mut self,
        name: &'a str,
        route: &[Hop],
        pointer: &mut Vec<String>,
    ) -> Option<Value> {
        let container = self.shape.container(name)?;
        let Some((hop, rest)) = route.split_first() else {
            return self.minimal_container(name);
        };
        match (container, *hop) {
            (Container::Newtype(inner), Hop::Inner) => self.focus(inner, rest, pointer),
            (Container::Tuple(items), Hop::Item(at)) => self.items(items.iter(), at, rest, pointer),
            (Container::Struct(fields), Hop::Field(at)) => {
                self.fields_focused(fields, at, rest, pointer)
            }
            (Container::Enum(variants), Hop::Variant(at)) => {
                self.variant(variants, at, rest, pointer)
            }
            _ => None,
        }
    }

    fn items(
        &mut self,
        items: impl Iterator<Item = &'a Ty>,
        at: usize,
        rest: &[Hop],
        pointer: &mut Vec<String>,
    ) -> Option<Value> {
        let mut values = Vec::new();
        for (i, item) in items.enumerate() {
            values.push(if i == at {
                pointer.push(i.to_string());
                self.focus(item, rest, pointer)?
            } else {
                self.minimal(item)?
            });
        }
        Some(Value::Array(values))
    }

    fn fields_focused(
        &mut self,
        fields: &'a Fields,
        at: usize,
        rest: &[Hop],
        pointer: &mut Vec<String>,
    ) -> Option<Value> {
        let mut map = Map::new();
        for (i, field) in fields.fields.iter().enumerate() {
            let value = if i == at {
                pointer.push(field.name.clone());
                self.focus(&field.ty, rest, pointer)?
            } else {
                self.minimal(&field.ty)?
            };
            map.insert(field.name.clone(), value);
        }
        Some(Value::Object(map))
    }

    /// The values a `skip_serializing_if` predicate is likely to skip: the minimal one, and
    /// zero for numbers.
    fn empties(&mut self, ty: &'a Ty) -> Vec<Value> {
        let mut values: Vec<Value> = self.minimal(ty).into_iter().collect();
        match ty {
            Ty::Int(_) => values.push(Value::from(0)),
            Ty::F32 | Ty::F64 => values.push(Value::from(0.0)),
            _ => {}
        }
        values
    }
}
