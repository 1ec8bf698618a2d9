//! A shape as data: the containers of a lock by name, each struct field with what it allows on
//! read and write. [`Shape::render`] writes the lock text, [`Shape::parse`] reads it back (a
//! lock written before persist recorded annotations reads as fields with none).
//!
//! The text, one block per container, the root `$` first:
//!
//! ```text
//! $ = struct {                      a struct; `struct deny_unknown_fields {` if it refuses
//!   theme: $.theme,                   unknown members
//!   size: u32 = default,            a field, then what it allows, if anything
//!   window: option<$.window>,
//! }
//! $.theme = enum {
//!   light,                          a unit variant
//!   custom(string),                 a newtype variant; `pair(u8, u8)` a tuple variant
//!   named {                         a struct variant (`named deny_unknown_fields {`)
//!     accent: string,
//!   },
//! }
//! $.window = newtype(u32)           also `tuple(u8, u8)` and `unit struct`
//! ```
//!
//! Field annotations, after ` = `, separated by `, `: `default` (may be missing on read; implied
//! for an `option<...>`, so written only for other types), `required` (an `option<...>` that may
//! not be missing), `skipped when empty` (may be left out on write), `alias NAME` (also read
//! under `NAME`).

use std::fmt::{self, Write as _};

/// A type, as the lock writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ty {
    /// `?`: not traced.
    Unknown,
    /// `any`: a `#[serde(with = "persist::any")]` field.
    Any,
    /// A container, by its lock name (`$.window`).
    Ref(String),
    /// `()`.
    Unit,
    Bool,
    Int(Int),
    F32,
    F64,
    Char,
    Str,
    Bytes,
    Option(Box<Ty>),
    Seq(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// `(a, b)`: a tuple of different types.
    Tuple(Vec<Ty>),
    /// `[t; n]`: a tuple or array of `n` items of one type.
    Array(Box<Ty>, usize),
}

/// An integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int {
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
}

impl Int {
    const ALL: [Int; 10] = [
        Int::I8,
        Int::I16,
        Int::I32,
        Int::I64,
        Int::I128,
        Int::U8,
        Int::U16,
        Int::U32,
        Int::U64,
        Int::U128,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Int::I8 => "i8",
            Int::I16 => "i16",
            Int::I32 => "i32",
            Int::I64 => "i64",
            Int::I128 => "i128",
            Int::U8 => "u8",
            Int::U16 => "u16",
            Int::U32 => "u32",
            Int::U64 => "u64",
            Int::U128 => "u128",
        }
    }

    /// The smallest and the largest value.
    pub(crate) fn range(self) -> (i128, u128) {
        match self {
            Int::I8 => (i8::MIN.into(), i8::MAX as u128),
            Int::I16 => (i16::MIN.into(), i16::MAX as u128),
            Int::I32 => (i32::MIN.into(), i32::MAX as u128),
            Int::I64 => (i64::MIN.into(), i64::MAX as u128),
            Int::I128 => (i128::MIN, i128::MAX as u128),
            Int::U8 => (0, u8::MAX.into()),
            Int::U16 => (0, u16::MAX.into()),
            Int::U32 => (0, u32::MAX.into()),
            Int::U64 => (0, u64::MAX.into()),
            Int::U128 => (0, u128::MAX),
        }
    }

    /// Every value of `self` is a value of `other`.
    pub(crate) fn fits_in(self, other: Int) -> bool {
        let (min, max) = self.range();
        let (other_min, other_max) = other.range();
        min >= other_min && max <= other_max
    }
}

/// A named type of a shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Container {
    UnitStruct,
    Newtype(Ty),
    Tuple(Vec<Ty>),
    Struct(Fields),
    Enum(Vec<Variant>),
}

/// The fields of a struct or of a struct variant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Fields {
    pub fields: Vec<Field>,
    /// `#[serde(deny_unknown_fields)]`: an unknown member fails the load.
    pub deny_unknown: bool,
}

/// One field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// Its name in JSON.
    pub name: String,
    pub ty: Ty,
    /// A value without it loads (`#[serde(default)]`, or an `Option`).
    pub optional: bool,
    /// A save may leave it out (`skip_serializing_if`).
    pub may_skip: bool,
    /// The other names it is read under (`#[serde(alias = ...)]`).
    pub aliases: Vec<String>,
}

impl Field {
    /// A field with what a plain field of its type allows: an `Option` may be missing.
    pub(crate) fn plain(name: String, ty: Ty) -> Field {
        Field {
            optional: matches!(ty, Ty::Option(_)),
            name,
            ty,
            may_skip: false,
            aliases: Vec::new(),
        }
    }
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variant {
    pub name: String,
    pub payload: Payload,
}

/// What a variant holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    Unit,
    Newtype(Ty),
    Tuple(Vec<Ty>),
    Struct(Fields),
}

/// A whole shape: the root and every container, the root's block first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    /// `Ty::Ref("$")` when the root is a container (it nearly always is).
    pub root: Ty,
    pub containers: Vec<(String, Container)>,
}

/// The root's name in a lock.
pub(crate) const ROOT: &str = "$";

/// What [`Shape::parse`] could not read.
#[derive(Debug)]
pub(crate) struct ParseError {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

impl Shape {
    pub(crate) fn container(&self, name: &str) -> Option<&Container> {
        self.containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, container)| container)
    }

    /// The lock text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if !matches!(&self.root, Ty::Ref(name) if name == ROOT && self.container(ROOT).is_some()) {
            let _ = writeln!(out, "{ROOT} = {}", self.root);
        }
        for (name, container) in &self.containers {
            render_container(&mut out, name, container);
        }
        out
    }

    /// Reads a lock's text.
    pub(crate) fn parse(text: &str) -> Result<Shape, ParseError> {
        Parser {
            lines: text.lines().enumerate().peekable(),
        }
        .shape()
    }
}

fn render_container(out: &mut String, name: &str, container: &Container) {
    let _ = match container {
        Container::UnitStruct => writeln!(out, "{name} = unit struct"),
        Container::Newtype(inner) => writeln!(out, "{name} = newtype({inner})"),
        Container::Tuple(items) => writeln!(out, "{name} = tuple({})", List(items)),
        Container::Struct(fields) => {
            let _ = writeln!(out, "{name} = struct{} {{", Deny(fields.deny_unknown));
            render_fields(out, fields, "  ");
            writeln!(out, "}}")
        }
        Container::Enum(variants) => {
            let _ = writeln!(out, "{name} = enum {{");
            for variant in variants {
                let _ = match &variant.payload {
                    Payload::Unit => writeln!(out, "  {},", variant.name),
                    Payload::Newtype(inner) => writeln!(out, "  {}({inner}),", variant.name),
                    Payload::Tuple(items) => writeln!(out, "  {}({}),", variant.name, List(items)),
                    Payload::Struct(fields) => {
                        let _ = writeln!(out, "  {}{} {{", variant.name, Deny(fields.deny_unknown));
                        render_fields(out, fields, "    ");
                        writeln!(out, "  }},")
                    }
                };
            }
            writeln!(out, "}}")
        }
    };
}

/// The marker of `#[serde(deny_unknown_fields)]` after `struct` or a struct variant's name.
const DENY: &str = "deny_unknown_fields";

struct Deny(bool);

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 {
            write!(f, " {DENY}")?;
        }
        Ok(())
    }
}

const DEFAULT: &str = "default";
const REQUIRED: &str = "required";
const SKIPPED: &str = "skipped when empty";
const ALIAS: &str = "alias ";

/// The annotations of a field, without the ` = ` before them.
pub(crate) fn annotations(field: &Field) -> Vec<String> {
    let mut notes = Vec::new();
    let option = matches!(field.ty, Ty::Option(_));
    if field.optional && !option {
        notes.push(DEFAULT.to_owned());
    }
    if !field.optional && option {
        notes.push(REQUIRED.to_owned());
    }
    if field.may_skip {
        notes.push(SKIPPED.to_owned());
    }
    for alias in &field.aliases {
        notes.push(format!("{ALIAS}{alias}"));
    }
    notes
}

fn render_fields(out: &mut String, fields: &Fields, indent: &str) {
    for field in &fields.fields {
        let notes = annotations(field);
        if notes.is_empty() {
            let _ = writeln!(out, "{indent}{}: {},", field.name, field.ty);
        } else {
            let _ = writeln!(
                out,
                "{indent}{}: {} = {},",
                field.name,
                field.ty,
                notes.join(", ")
            );
        }
    }
}

struct List<'a>(&'a [Ty]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ty) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{ty}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Unknown => f.write_str("?"),
            Ty::Any => f.write_str("any"),
            Ty::Ref(name) => f.write_str(name),
            Ty::Unit => f.write_str("()"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int(int) => f.write_str(int.name()),
            Ty::F32 => f.write_str("f32"),
            Ty::F64 => f.write_str("f64"),
            Ty::Char => f.write_str("char"),
            Ty::Str => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Option(inner) => write!(f, "option<{inner}>"),
            Ty::Seq(inner) => write!(f, "seq<{inner}>"),
            Ty::Map(key, value) => write!(f, "map<{key}, {value}>"),
            Ty::Tuple(items) => write!(f, "({})", List(items)),
            Ty::Array(item, size) => write!(f, "[{item}; {size}]"),
        }
    }
}

/// Text to [`Shape`], line by line.
struct Parser<'a> {
    lines: std::iter::Peekable<std::iter::Enumerate<std::str::Lines<'a>>>,
}

fn fail<T>(line: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line: line + 1,
        reason: reason.into(),
    })
}

impl Parser<'_> {
    fn shape(mut self) -> Result<Shape, ParseError> {
        let mut root = None;
        let mut containers = Vec::new();
        while let Some((at, line)) = self.lines.next() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((name, rest)) = line.split_once(" = ") else {
                return fail(at, "expected `NAME = ...`");
            };
            let container = if let Some(marker) = rest
                .strip_prefix("struct")
                .and_then(|rest| rest.strip_suffix('{'))
            {
                Container::Struct(self.fields(at, marker.trim(), "  ", "}")?)
            } else if rest == "enum {" {
                Container::Enum(self.variants()?)
            } else if rest == "unit struct" {
                Container::UnitStruct
            } else if let Some(inner) = rest
                .strip_prefix("newtype(")
                .and_then(|rest| rest.strip_suffix(')'))
            {
                Container::Newtype(parse_ty(at, inner)?)
            } else if let Some(items) = rest
                .strip_prefix("tuple(")
                .and_then(|rest| rest.strip_suffix(')'))
            {
                Container::Tuple(parse_list(at, items)?)
            } else if name == ROOT && containers.is_empty() && root.is_none() {
                root = Some(parse_ty(at, rest)?);
                continue;
            } else {
                return fail(
                    at,
                    format!("`{rest}` is not a struct, enum, newtype or tuple"),
                );
            };
            if containers.iter().any(|(n, _)| n == name) {
                return fail(at, format!("`{name}` is described twice"));
            }
            containers.push((name.to_owned(), container));
        }
        let root = match root {
            Some(root) => root,
            None if containers.iter().any(|(n, _)| n == ROOT) => Ty::Ref(ROOT.to_owned()),
            None => return fail(0, "the lock does not describe the root `$`"),
        };
        Ok(Shape { root, containers })
    }

    /// The fields of a block up to its closing line, after `{`; `marker` is what stood
    /// between the keyword and `{`.
    fn fields(
        &mut self,
        at: usize,
        marker: &str,
        indent: &str,
        close: &str,
    ) -> Result<Fields, ParseError> {
        let deny_unknown = match marker {
            "" => false,
            DENY => true,
            other => return fail(at, format!("unknown marker `{other}`")),
        };
        let mut fields = Vec::new();
        loop {
            let Some((at, line)) = self.lines.next() else {
                return fail(at, "the block has no end");
            };
            if line == close {
                break;
            }
            let Some(body) = line
                .strip_prefix(indent)
                .and_then(|line| line.strip_suffix(','))
            else {
                return fail(at, "expected `NAME: TYPE,`");
            };
            let Some((name, rest)) = body.split_once(": ") else {
                return fail(at, "expected `NAME: TYPE,`");
            };
            let (ty, notes) = match rest.split_once(" = ") {
                Some((ty, notes)) => (ty, Some(notes)),
                None => (rest, None),
            };
            let mut field = Field::plain(name.to_owned(), parse_ty(at, ty)?);
            for note in notes.into_iter().flat_map(|notes| notes.split(", ")) {
                match note {
                    DEFAULT => field.optional = true,
                    REQUIRED => field.optional = false,
                    SKIPPED => field.may_skip = true,
                    _ => match note.strip_prefix(ALIAS) {
                        Some(alias) => field.aliases.push(alias.to_owned()),
                        None => return fail(at, format!("unknown annotation `{note}`")),
                    },
                }
            }
            fields.push(field);
        }
        Ok(Fields {
            fields,
            deny_unknown,
        })
    }

    fn variants(&mut self) -> Result<Vec<Variant>, ParseError> {
        let mut variants = Vec::new();
        loop {
            let Some((at, line)) = self.lines.next() else {
                return fail(0, "an enum block has no end");
            };
            if line == "}" {
                break;
            }
            let Some(body) = line.strip_prefix("  ") else {
                return fail(at, "expected a variant");
            };
            if let Some(head) = body.strip_suffix(" {") {
                let (name, marker) = head.split_once(' ').unwrap_or((head, ""));
                let fields = self.fields(at, marker, "    ", "  },")?;
                variants.push(Variant {
                    name: name.to_owned(),
                    payload: Payload::Struct(fields),
                });
                continue;
            }
            let Some(body) = body.strip_suffix(',') else {
                return fail(at, "expected `VARIANT,`");
            };
            let variant = match body.split_once('(') {
                Some((name, rest)) => {
                    let Some(inner) = rest.strip_suffix(')') else {
                        return fail(at, "expected `VARIANT(TYPES),`");
                    };
                    let mut items = parse_list(at, inner)?;
                    Variant {
                        name: name.to_owned(),
                        payload: if items.len() == 1 {
                            Payload::Newtype(items.remove(0))
                        } else {
                            Payload::Tuple(items)
                        },
                    }
                }
                None => Variant {
                    name: body.to_owned(),
                    payload: Payload::Unit,
                },
            };
            variants.push(variant);
        }
        Ok(variants)
    }
}

fn parse_ty(at: usize, text: &str) -> Result<Ty, ParseError> {
    let mut reader = TyReader { text, pos: 0 };
    let ty = reader.ty().map_err(|reason| ParseError {
        line: at + 1,
        reason,
    })?;
    if reader.pos != text.len() {
        return fail(at, format!("unexpected `{}`", &text[reader.pos..]));
    }
    Ok(ty)
}

fn parse_list(at: usize, text: &str) -> Result<Vec<Ty>, ParseError> {
    let mut reader = TyReader { text, pos: 0 };
    let items = reader.list(None).map_err(|reason| ParseError {
        line: at + 1,
        reason,
    })?;
    if reader.pos != text.len() {
        return fail(at, format!("unexpected `{}`", &text[reader.pos..]));
    }
    Ok(items)
}

/// A type's text, read left to right.
struct TyReader<'a> {
    text: &'a str,
    pos: usize,
}

impl TyReader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected `{token}` at `{}`", self.rest()))
        }
    }

    /// Types separated by `, ` up to `close` (not consumed), or to the end.
    fn list(&mut self, close: Option<char>) -> Result<Vec<Ty>, String> {
        let mut items = Vec::new();
        loop {
            let at_end = match close {
                Some(close) => self.rest().starts_with(close),
                None => self.rest().is_empty(),
            };
            if at_end && items.is_empty() {
                return Ok(items);
            }
            items.push(self.ty()?);
            if !self.eat(", ") {
                return Ok(items);
            }
        }
    }

    fn ty(&mut self) -> Result<Ty, String> {
        for (word, ty) in [
            ("?", Ty::Unknown),
            ("()", Ty::Unit),
            ("bool", Ty::Bool),
            ("f32", Ty::F32),
            ("f64", Ty::F64),
            ("char", Ty::Char),
            ("string", Ty::Str),
            ("bytes", Ty::Bytes),
            ("any", Ty::Any),
        ] {
            if self.word(word) {
                return Ok(ty);
            }
        }
        for int in Int::ALL {
            if self.word(int.name()) {
                return Ok(Ty::Int(int));
            }
        }
        if self.eat("option<") {
            let inner = self.ty()?;
            self.expect(">")?;
            return Ok(Ty::Option(Box::new(inner)));
        }
        if self.eat("seq<") {
            let inner = self.ty()?;
            self.expect(">")?;
            return Ok(Ty::Seq(Box::new(inner)));
        }
        if self.eat("map<") {
            let key = self.ty()?;
            self.expect(", ")?;
            let value = self.ty()?;
            self.expect(">")?;
            return Ok(Ty::Map(Box::new(key), Box::new(value)));
        }
        if self.eat("(") {
            let items = self.list(Some(')'))?;
            self.expect(")")?;
            return Ok(Ty::Tuple(items));
        }
        if self.eat("[") {
            let item = self.ty()?;
            self.expect("; ")?;
            let digits: String = self
                .rest()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            self.pos += digits.len();
            let size = digits
                .parse()
                .map_err(|_| format!("expected an array size at `{}`", self.rest()))?;
            self.expect("]")?;
            return Ok(Ty::Array(Box::new(item), size));
        }
        self.name().map(Ty::Ref)
    }

    /// `word` as a whole token.
    fn word(&mut self, word: &str) -> bool {
        let rest = self.rest();
        let ends = |c: char| matches!(c, ',' | '>' | ')' | ';' | ' ' | ']');
        if rest.starts_with(word) && rest[word.len()..].chars().next().is_none_or(ends) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// A container's lock name (`$.window`, `$.shapes[]`, `$.map{key}`): up to the next
    /// separator, with `[]`, `[N]` and `{...}` groups kept whole.
    fn name(&mut self) -> Result<String, String> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b',' | b'>' | b')' | b';' | b' ' | b']' => break,
                open @ (b'[' | b'{') => {
                    let close = if open == b'[' { b']' } else { b'}' };
                    match bytes[self.pos..].iter().position(|&b| b == close) {
                        Some(len) => self.pos += len + 1,
                        None => break,
                    }
                }
                _ => self.pos += 1,
            }
        }
        if self.pos == start {
            return Err(format!("expected a type at `{}`", self.rest()));
        }
        Ok(self.text[start..self.pos].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_through_the_model() {
        let text = "\
$ = struct deny_unknown_fields {
  theme: $.theme,
  size: u32 = default,
  tags: seq<string> = default, skipped when empty,
  nickname: option<string>,
  strict: option<u8> = required,
  renamed: string = alias old_name, alias older,
  window: option<$.window>,
  pairs: map<u8, [(u8, string); 2]>,
  shapes: seq<$.shapes[]>,
  any_value: any,
}
$.theme = enum {
  light,
  custom(string),
  pair(u8, i64),
  named deny_unknown_fields {
    accent: string = default,
  },
  plain {
    x: f64,
  },
}
$.window = newtype(u32)
$.shapes[] = tuple(bool, char)
$.unit = unit struct
";
        let shape = Shape::parse(text).unwrap();
        assert_eq!(shape.render(), text);
        let Some(Container::Struct(root)) = shape.container("$") else {
            panic!("{shape:?}")
        };
        assert!(root.deny_unknown);
        let facts: Vec<_> = root
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.optional, f.may_skip))
            .collect();
        assert_eq!(
            &facts[..5],
            [
                ("theme", false, false),
                ("size", true, false),
                ("tags", true, true),
                ("nickname", true, false),
                ("strict", false, false),
            ]
        );
        assert_eq!(root.fields[5].aliases, ["old_name", "older"]);
        assert_eq!(
            root.fields[7].ty,
            Ty::Map(
                Box::new(Ty::Int(Int::U8)),
                Box::new(Ty::Array(
                    Box::new(Ty::Tuple(vec![Ty::Int(Int::U8), Ty::Str])),
                    2
                ))
            )
        );
        assert_eq!(
            root.fields[8].ty,
            Ty::Seq(Box::new(Ty::Ref("$.shapes[]".into())))
        );
    }

    #[test]
    fn a_root_that_is_not_a_container_round_trips() {
        let text = "$ = seq<$[]>\n$[] = struct {\n  a: u8,\n}\n";
        let shape = Shape::parse(text).unwrap();
        assert_eq!(shape.root, Ty::Seq(Box::new(Ty::Ref("$[]".into()))));
        assert_eq!(shape.render(), text);
    }

    #[test]
    fn unreadable_text_names_the_line() {
        let error = Shape::parse("$ = struct {\n  theme string,\n}\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = Shape::parse("$ = struct {\n  a: u8 = sometimes,\n}\n").unwrap_err();
        assert!(error.reason.contains("sometimes"), "{}", error.reason);
        assert!(Shape::parse("$ = struct {\n  a: u8,\n").is_err());
        assert!(Shape::parse("$.a = struct {\n}\n").is_err());
    }
}
