//! Which files still load after a shape changed: the lock's shape (old) against the type's
//! (new), change by change, classified the way Confluent's schema registry and buf classify
//! schema changes.

use std::collections::HashSet;
use std::fmt;

use super::model::{Container, Field, Fields, Int, Payload, Shape, Ty, Variant};

/// How compatible a change of a version's shape is, in both directions.
///
/// *Backward* compatible: the new type reads old data (files saved before the change load after
/// it). *Forward* compatible: the old type reads new data (files saved after the change load in
/// a build from before it). The names are those of Confluent's schema registry and buf.
///
/// ```
/// use persist::testing::ChangeClass;
///
/// assert!(ChangeClass::Both.is_backward() && ChangeClass::Both.is_forward());
/// assert_eq!(ChangeClass::Backward.meet(ChangeClass::Forward), ChangeClass::Breaking);
/// assert_eq!(ChangeClass::Both.meet(ChangeClass::Backward), ChangeClass::Backward);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeClass {
    /// Backward and forward compatible ("full"): a field added with a default, an optional
    /// field removed.
    Both,
    /// Only backward compatible: the new type reads old files, a build from before the change
    /// may not read new ones (a field added without a default is the reverse; a variant added,
    /// a type widened, a value wrapped in an `Option`, a required field removed are this).
    Backward,
    /// Only forward compatible: a build from before the change reads new files, but old files
    /// may not load (a field added without a default, a variant removed, a type narrowed, an
    /// `Option` unwrapped).
    Forward,
    /// Neither: some old files no longer load and some new files do not load in older builds,
    /// or data would be silently dropped (a field renamed without an alias, a type replaced by
    /// an unrelated one). Always needs a version bump.
    Breaking,
}

impl ChangeClass {
    /// The class of a change that keeps (or not) each direction.
    pub fn from_directions(backward: bool, forward: bool) -> ChangeClass {
        match (backward, forward) {
            (true, true) => ChangeClass::Both,
            (true, false) => ChangeClass::Backward,
            (false, true) => ChangeClass::Forward,
            (false, false) => ChangeClass::Breaking,
        }
    }

    /// The new type reads files saved before the change.
    pub fn is_backward(self) -> bool {
        matches!(self, ChangeClass::Both | ChangeClass::Backward)
    }

    /// A build from before the change reads files saved after it.
    pub fn is_forward(self) -> bool {
        matches!(self, ChangeClass::Both | ChangeClass::Forward)
    }

    /// The class of two changes made together: each direction only if both keep it.
    #[must_use]
    pub fn meet(self, other: ChangeClass) -> ChangeClass {
        ChangeClass::from_directions(
            self.is_backward() && other.is_backward(),
            self.is_forward() && other.is_forward(),
        )
    }
}

impl fmt::Display for ChangeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeClass::Both => "full (backward and forward compatible)",
            ChangeClass::Backward => "backward compatible only",
            ChangeClass::Forward => "forward compatible only",
            ChangeClass::Breaking => "breaking",
        })
    }
}

/// Which changes of a locked shape the schema test lets through without a version bump
/// ([`Fixtures::compatibility`](crate::testing::Fixtures::compatibility), or
/// `compatibility = ...` in [`migration_tests!`](crate::testing::migration_tests)). The names
/// are Confluent's. A [`Breaking`](ChangeClass::Breaking) change fails at every level: it
/// needs a version bump.
///
/// ```
/// use persist::testing::{ChangeClass, Compatibility};
///
/// assert_eq!(Compatibility::default(), Compatibility::Backward);
/// assert!(Compatibility::Backward.accepts(ChangeClass::Backward));
/// assert!(!Compatibility::Backward.accepts(ChangeClass::Forward));
/// assert!(Compatibility::Full.accepts(ChangeClass::Both));
/// assert!(!Compatibility::None.accepts(ChangeClass::Breaking));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compatibility {
    /// Files saved before a change must load after it (the default): new fields need a
    /// default, variants may be added but not removed, types may widen.
    #[default]
    Backward,
    /// Files saved after a change must load in builds from before it (for files shared with
    /// older builds still running): fields may be added, required fields not removed, variants
    /// not added.
    Forward,
    /// Both: only changes that keep both directions pass.
    Full,
    /// Any change that keeps one direction passes; a breaking change still fails.
    None,
}

impl Compatibility {
    /// Whether a change of class `class` passes at this level.
    pub fn accepts(self, class: ChangeClass) -> bool {
        match self {
            Compatibility::Backward => class.is_backward(),
            Compatibility::Forward => class.is_forward(),
            Compatibility::Full => class == ChangeClass::Both,
            Compatibility::None => class != ChangeClass::Breaking,
        }
    }

    /// Its name, as `migration_tests!` spells it: `backward`, `forward`, `full`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            Compatibility::Backward => "backward",
            Compatibility::Forward => "forward",
            Compatibility::Full => "full",
            Compatibility::None => "none",
        }
    }

    /// What the level asks, as a sentence's end.
    pub(crate) fn rule(self) -> &'static str {
        match self {
            Compatibility::Backward => "files saved before a change must load after it",
            Compatibility::Forward => {
                "files saved after a change must load in builds from before it"
            }
            Compatibility::Full => {
                "files saved before a change must load after it, and files saved after it in \
                 builds from before it"
            }
            Compatibility::None => "each change must keep at least one direction",
        }
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One change between a locked shape and the current one.
///
/// ```
/// use persist::testing::{ChangeClass, ChangeKind, compare_locks};
///
/// let locked = "$ = struct {\n  theme: string,\n}\n";
/// let current = "$ = struct {\n  theme: string,\n  size: u32 = default,\n}\n";
/// let changes = compare_locks(locked, current)?;
/// assert_eq!(changes.len(), 1);
/// assert_eq!(changes[0].path, "$.size");
/// assert!(matches!(&changes[0].kind, ChangeKind::FieldAdded { optional: true, .. }));
/// assert_eq!(changes[0].class, ChangeClass::Both);
/// assert_eq!(changes[0].fix, None);
/// # Ok::<(), persist::testing::ShapeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShapeChange {
    /// Where, as a path from the root `$`: `$.window.maximized`, `$.theme::Custom`, `$.tags[]`.
    pub path: String,
    /// What changed.
    pub kind: ChangeKind,
    /// Which files still load.
    pub class: ChangeClass,
    /// What would keep the direction(s) the change breaks (an attribute, keeping a field or
    /// variant, or a version bump); `None` for a change that keeps both.
    pub fix: Option<String>,
}

impl fmt::Display for ShapeChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.kind, self.class)?;
        if let Some(fix) = &self.fix {
            write!(f, ". {fix}")?;
        }
        Ok(())
    }
}

/// What a [`ShapeChange`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A field is new.
    FieldAdded {
        /// Its name.
        name: String,
        /// It may be missing on read (`#[serde(default)]` or an `Option`).
        optional: bool,
    },
    /// A field is gone.
    FieldRemoved {
        /// Its name.
        name: String,
        /// It could be missing on read.
        optional: bool,
    },
    /// A field was renamed: a field is gone and one of the same type is new, or an alias ties
    /// them.
    FieldRenamed {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
        /// The new field reads the old name (`#[serde(alias = "from")]`).
        new_reads_old: bool,
        /// The old field read the new name (it had `#[serde(alias = "to")]`).
        old_reads_new: bool,
    },
    /// A required field may now be missing on read (`#[serde(default)]` added).
    FieldBecameOptional {
        /// Its name.
        name: String,
    },
    /// A field that could be missing on read no longer may.
    FieldBecameRequired {
        /// Its name.
        name: String,
    },
    /// Saves may now leave a field out (`skip_serializing_if` added).
    FieldNowSkipped {
        /// Its name.
        name: String,
    },
    /// Saves always write a field they could leave out before.
    FieldNoLongerSkipped {
        /// Its name.
        name: String,
    },
    /// A field is read under other aliases.
    AliasesChanged {
        /// Its name.
        name: String,
        /// The aliases it gained.
        added: Vec<String>,
        /// The aliases it lost.
        removed: Vec<String>,
    },
    /// A struct started or stopped refusing unknown members (`deny_unknown_fields`). What that
    /// does to files is in the changes of its fields.
    DenyUnknownFields {
        /// It refuses them now.
        now: bool,
    },
    /// A type now holds more values (`u32` to `u64`, `f32` to `f64`, an integer to a float,
    /// `char` to `string`, an array to a sequence, anything to `any`).
    TypeWidened {
        /// The old type, as the lock writes it.
        from: String,
        /// The new type.
        to: String,
    },
    /// A type now holds fewer values (the reverse of [`TypeWidened`](ChangeKind::TypeWidened)).
    TypeNarrowed {
        /// The old type.
        from: String,
        /// The new type.
        to: String,
    },
    /// A value became an `Option`: saves may write `null`.
    OptionWrapped {
        /// The type inside.
        inner: String,
    },
    /// An `Option` became its value: old files may hold `null`.
    OptionUnwrapped {
        /// The type inside.
        inner: String,
    },
    /// A type was replaced by one that reads none of its values (`string` to `u32`, a struct to
    /// an enum, a unit variant to a struct variant, tuples of other lengths).
    TypeReplaced {
        /// The old type.
        from: String,
        /// The new type.
        to: String,
    },
    /// An enum has a new variant.
    VariantAdded {
        /// Its name.
        name: String,
    },
    /// An enum lost a variant.
    VariantRemoved {
        /// Its name.
        name: String,
    },
    /// The text differs, but no file loads differently: fields or variants in another order, a
    /// newtype struct added or removed around a type, `bytes` written as `seq<u8>`.
    NoEffect,
}

impl ChangeKind {
    /// Whether the change is about what a field or struct allows (optional on read, skipped
    /// when empty, aliases, unknown fields) rather than about names and types.
    pub fn is_about_attributes(&self) -> bool {
        matches!(
            self,
            ChangeKind::FieldBecameOptional { .. }
                | ChangeKind::FieldBecameRequired { .. }
                | ChangeKind::FieldNowSkipped { .. }
                | ChangeKind::FieldNoLongerSkipped { .. }
                | ChangeKind::AliasesChanged { .. }
                | ChangeKind::DenyUnknownFields { .. }
        )
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeKind::FieldAdded { name, optional } => write!(
                f,
                "field `{name}` added, {}",
                if *optional {
                    "optional on read"
                } else {
                    "required on read"
                }
            ),
            ChangeKind::FieldRemoved { name, optional } => write!(
                f,
                "field `{name}` removed (it was {} on read)",
                if *optional { "optional" } else { "required" }
            ),
            ChangeKind::FieldRenamed {
                from,
                to,
                new_reads_old,
                old_reads_new,
            } => {
                write!(f, "field `{from}` renamed to `{to}`, ")?;
                match (new_reads_old, old_reads_new) {
                    (true, true) => write!(f, "each reading the other's name through an alias"),
                    (true, false) => write!(f, "with `#[serde(alias = \"{from}\")]`"),
                    (false, true) => write!(f, "which the old type read as an alias"),
                    (false, false) => write!(
                        f,
                        "without an alias: `{to}` does not read `{from}`, so the value of a file \
                         saved before would be lost (dropped silently if `{to}` is optional)"
                    ),
                }
            }
            ChangeKind::FieldBecameOptional { name } => {
                write!(f, "field `{name}` became optional on read")
            }
            ChangeKind::FieldBecameRequired { name } => {
                write!(f, "field `{name}` became required on read")
            }
            ChangeKind::FieldNowSkipped { name } => write!(
                f,
                "field `{name}` is now left out of saves when empty (`skip_serializing_if`)"
            ),
            ChangeKind::FieldNoLongerSkipped { name } => {
                write!(f, "field `{name}` is no longer left out of saves")
            }
            ChangeKind::AliasesChanged {
                name,
                added,
                removed,
            } => {
                write!(f, "the aliases of field `{name}` changed")?;
                if !added.is_empty() {
                    write!(f, " (added: {})", added.join(", "))?;
                }
                if !removed.is_empty() {
                    write!(f, " (removed: {})", removed.join(", "))?;
                }
                Ok(())
            }
            ChangeKind::DenyUnknownFields { now: true } => {
                write!(
                    f,
                    "the struct now refuses unknown fields (`deny_unknown_fields`)"
                )
            }
            ChangeKind::DenyUnknownFields { now: false } => {
                write!(f, "the struct no longer refuses unknown fields")
            }
            ChangeKind::TypeWidened { from, to } => {
                write!(f, "type widened from `{from}` to `{to}`")
            }
            ChangeKind::TypeNarrowed { from, to } => {
                write!(f, "type narrowed from `{from}` to `{to}`")
            }
            ChangeKind::OptionWrapped { inner } => {
                write!(
                    f,
                    "`{inner}` became `option<{inner}>`: saves may write `null`"
                )
            }
            ChangeKind::OptionUnwrapped { inner } => write!(
                f,
                "`option<{inner}>` became `{inner}`: files saved before may hold `null`"
            ),
            ChangeKind::TypeReplaced { from, to } => {
                write!(
                    f,
                    "type changed from `{from}` to `{to}`, which reads none of its values"
                )
            }
            ChangeKind::VariantAdded { name } => write!(f, "variant `{name}` added"),
            ChangeKind::VariantRemoved { name } => write!(f, "variant `{name}` removed"),
            ChangeKind::NoEffect => write!(
                f,
                "the text differs, but no file loads differently (an order, or a newtype around \
                 a type)"
            ),
        }
    }
}

/// The changes from `old` (a lock) to `new` (the type now), in the order of the new shape.
pub(crate) fn diff(old: &Shape, new: &Shape) -> Vec<ShapeChange> {
    let mut differ = Differ {
        old,
        new,
        seen: HashSet::new(),
        changes: Vec::new(),
    };
    differ.ty("$", &old.root, &new.root);
    differ.changes
}

/// The fix of a change that breaks forward compatibility and that no attribute can mend: the
/// older build is already out.
const FORWARD_BUMP: &str = "If older builds must read new files, bump the version instead: they \
                            then refuse newer files with a clear error";

struct Differ<'a> {
    old: &'a Shape,
    new: &'a Shape,
    /// Pairs of containers (old, new) already compared: types may be recursive.
    seen: HashSet<(String, String)>,
    changes: Vec<ShapeChange>,
}

static UNIT: Ty = Ty::Unit;

/// `ty` without the newtype structs around it (JSON does not show them).
fn unwrapped<'s>(shape: &'s Shape, mut ty: &'s Ty) -> &'s Ty {
    for _ in 0..64 {
        let Ty::Ref(name) = ty else { return ty };
        match shape.container(name) {
            Some(Container::Newtype(inner)) => ty = inner,
            Some(Container::UnitStruct) => return &UNIT,
            _ => return ty,
        }
    }
    ty
}

/// The items of a fixed-length list: a tuple, or an array.
fn fixed_items(ty: &Ty) -> Option<Vec<&Ty>> {
    match ty {
        Ty::Tuple(items) => Some(items.iter().collect()),
        Ty::Array(item, size) => Some(std::iter::repeat_n(&**item, *size).collect()),
        _ => None,
    }
}

/// Whether `ty` is or holds a container, which equal names do not make equal in two shapes.
fn names_a_container(ty: &Ty) -> bool {
    match ty {
        Ty::Ref(_) => true,
        Ty::Option(inner) | Ty::Seq(inner) | Ty::Array(inner, _) => names_a_container(inner),
        Ty::Map(key, value) => names_a_container(key) || names_a_container(value),
        Ty::Tuple(items) => items.iter().any(names_a_container),
        _ => false,
    }
}

fn is_number(ty: &Ty) -> bool {
    matches!(ty, Ty::Int(_) | Ty::F32 | Ty::F64)
}

/// Whether the new number type reads every value of the old one (backward) and the reverse
/// (forward). Integers read as floats (as Avro promotes them); floats never read as integers.
fn number_directions(old: &Ty, new: &Ty) -> (bool, bool) {
    let float_bits = |ty: &Ty| match ty {
        Ty::F32 => 32,
        _ => 64,
    };
    match (old, new) {
        (Ty::Int(a), Ty::Int(b)) => (a.fits_in(*b), b.fits_in(*a)),
        (Ty::Int(_), _) => (true, false),
        (_, Ty::Int(_)) => (false, true),
        (a, b) => (
            float_bits(a) <= float_bits(b),
            float_bits(b) <= float_bits(a),
        ),
    }
}

impl Differ<'_> {
    fn push(&mut self, path: &str, kind: ChangeKind, backward: bool, forward: bool, fix: Fix) {
        let class = ChangeClass::from_directions(backward, forward);
        let fix = match class {
            ChangeClass::Both => None,
            _ => Some(fix.text(backward, forward)),
        };
        self.changes.push(ShapeChange {
            path: path.to_owned(),
            kind,
            class,
            fix,
        });
    }

    /// The text of a type of either shape: its lock text, or what a container is.
    fn text(shape: &Shape, ty: &Ty) -> String {
        match ty {
            Ty::Ref(name) => match shape.container(name) {
                Some(Container::Struct(_)) => format!("struct {name}"),
                Some(Container::Enum(_)) => format!("enum {name}"),
                Some(Container::Tuple(items)) => {
                    let items: Vec<String> = items.iter().map(Ty::to_string).collect();
                    format!("({})", items.join(", "))
                }
                _ => name.clone(),
            },
            other => other.to_string(),
        }
    }

    /// Whether `old` and `new` read the same values (a dry run of [`Differ::ty`]).
    fn same_type(&self, old: &Ty, new: &Ty) -> bool {
        let mut dry = Differ {
            old: self.old,
            new: self.new,
            seen: self.seen.clone(),
            changes: Vec::new(),
        };
        dry.ty("", old, new);
        dry.changes.is_empty()
    }

    fn ty(&mut self, path: &str, old: &Ty, new: &Ty) {
        let (old_shape, new_shape) = (self.old, self.new);
        let o = unwrapped(old_shape, old);
        let n = unwrapped(new_shape, new);
        let from = Self::text(old_shape, o);
        let to = Self::text(new_shape, n);
        match (o, n) {
            (Ty::Ref(a), Ty::Ref(b)) => {
                if self.seen.insert((a.clone(), b.clone())) {
                    match (old_shape.container(a), new_shape.container(b)) {
                        (Some(a), Some(b)) => self.container(path, a, b, from, to),
                        _ => {
                            if from != to {
                                self.replaced(path, from, to);
                            }
                        }
                    }
                }
            }
            (a, b) if a == b && !names_a_container(a) => {}
            (Ty::Char, Ty::Str) | (Ty::Any, _) | (_, Ty::Any) | (Ty::Str, Ty::Char) => {
                let wider = matches!((o, n), (Ty::Char, Ty::Str) | (_, Ty::Any));
                self.resized(path, from, to, wider);
            }
            (Ty::Option(a), Ty::Option(b)) => self.ty(path, a, b),
            (Ty::Option(a), _) => {
                self.push(
                    path,
                    ChangeKind::OptionUnwrapped {
                        inner: Self::text(old_shape, a),
                    },
                    false,
                    true,
                    Fix::Backward(
                        "Keep the `Option` (files saved before may hold `null`), or bump the \
                         version with a migration that fills it in"
                            .into(),
                    ),
                );
                self.ty(path, a, n);
            }
            (_, Ty::Option(b)) => {
                self.push(
                    path,
                    ChangeKind::OptionWrapped {
                        inner: Self::text(new_shape, b),
                    },
                    true,
                    false,
                    Fix::Forward(format!(
                        "Older builds cannot read `null` there. {FORWARD_BUMP}"
                    )),
                );
                self.ty(path, o, b);
            }
            (Ty::Seq(a), Ty::Seq(b)) => self.ty(&format!("{path}[]"), a, b),
            (Ty::Bytes, Ty::Seq(item)) | (Ty::Seq(item), Ty::Bytes)
                if **item == Ty::Int(Int::U8) => {}
            (Ty::Map(k1, v1), Ty::Map(k2, v2)) => {
                self.ty(&format!("{path}{{key}}"), k1, k2);
                self.ty(&format!("{path}{{}}"), v1, v2);
            }
            (a, b) if is_number(a) && is_number(b) => match number_directions(a, b) {
                (true, false) => self.resized(path, from, to, true),
                (false, true) => self.resized(path, from, to, false),
                _ => self.replaced(path, from, to),
            },
            _ => match (fixed_items(o), fixed_items(n), o, n) {
                (Some(a), Some(b), _, _) if a.len() == b.len() => {
                    for (i, (a, b)) in a.into_iter().zip(b).enumerate() {
                        self.ty(&format!("{path}.{i}"), a, b);
                    }
                }
                (Some(a), None, _, Ty::Seq(b)) => {
                    self.resized(path, from, to, true);
                    for a in a {
                        self.ty(&format!("{path}[]"), a, b);
                    }
                }
                (None, Some(b), Ty::Seq(a), _) => {
                    self.resized(path, from, to, false);
                    for b in b {
                        self.ty(&format!("{path}[]"), a, b);
                    }
                }
                _ => self.replaced(path, from, to),
            },
        }
    }

    fn resized(&mut self, path: &str, from: String, to: String, wider: bool) {
        if wider {
            let fix = Fix::Forward(format!(
                "Older builds cannot read the values `{from}` does not hold. {FORWARD_BUMP}"
            ));
            self.push(path, ChangeKind::TypeWidened { from, to }, true, false, fix);
        } else {
            let fix = Fix::Backward(format!(
                "Keep `{from}` (files saved before may hold values `{to}` cannot), or bump the \
                 version with a migration that converts them"
            ));
            self.push(
                path,
                ChangeKind::TypeNarrowed { from, to },
                false,
                true,
                fix,
            );
        }
    }

    fn replaced(&mut self, path: &str, from: String, to: String) {
        self.push(
            path,
            ChangeKind::TypeReplaced { from, to },
            false,
            false,
            Fix::Bump,
        );
    }

    fn container(
        &mut self,
        path: &str,
        old: &Container,
        new: &Container,
        from: String,
        to: String,
    ) {
        match (old, new) {
            (Container::Struct(a), Container::Struct(b)) => self.fields(path, a, b),
            (Container::Enum(a), Container::Enum(b)) => self.variants(path, a, b),
            (Container::Tuple(a), Container::Tuple(b)) if a.len() == b.len() => {
                for (i, (a, b)) in a.iter().zip(b).enumerate() {
                    self.ty(&format!("{path}.{i}"), a, b);
                }
            }
            _ => self.replaced(path, from, to),
        }
    }

    fn fields(&mut self, path: &str, old: &Fields, new: &Fields) {
        let at = |name: &str| format!("{path}.{name}");
        if old.deny_unknown != new.deny_unknown {
            self.push(
                path,
                ChangeKind::DenyUnknownFields {
                    now: new.deny_unknown,
                },
                true,
                true,
                Fix::Bump,
            );
        }
        let mut old_left: Vec<&Field> = old.fields.iter().collect();
        // Each new field with the old field it continues, if any, and how.
        let mut pairs: Vec<(&Field, Option<(&Field, Rename)>)> = Vec::new();
        for field in &new.fields {
            let same = old_left.iter().position(|o| o.name == field.name);
            let aliased = || {
                old_left
                    .iter()
                    .position(|o| field.aliases.contains(&o.name))
                    .map(|i| (i, Rename::Aliased))
            };
            let found = same
                .map(|i| (i, Rename::Same))
                .or_else(aliased)
                .or_else(|| {
                    old_left
                        .iter()
                        .position(|o| o.aliases.contains(&field.name))
                        .map(|i| (i, Rename::OldAliased))
                });
            pairs.push((field, found.map(|(i, how)| (old_left.remove(i), how))));
        }
        // A field gone and a new one of the same type: a rename without an alias.
        for pair in &mut pairs {
            if pair.1.is_some() {
                continue;
            }
            if let Some(i) = old_left
                .iter()
                .position(|o| self.same_type(&o.ty, &pair.0.ty))
            {
                pair.1 = Some((old_left.remove(i), Rename::Unaliased));
            }
        }
        for (field, before) in pairs {
            let here = at(&field.name);
            match before {
                None => {
                    let fix = Fix::Directions {
                        backward: format!(
                            "Give `{name}` `#[serde(default)]` (or make it an `Option`), so that \
                             files saved without it load",
                            name = field.name
                        ),
                        forward: format!(
                            "The old struct refuses unknown fields (`deny_unknown_fields`), so \
                             older builds refuse files that hold `{}`. {FORWARD_BUMP}",
                            field.name
                        ),
                    };
                    self.push(
                        &here,
                        ChangeKind::FieldAdded {
                            name: field.name.clone(),
                            optional: field.optional,
                        },
                        field.optional,
                        !old.deny_unknown,
                        fix,
                    );
                }
                Some((before, Rename::Same)) => {
                    self.ty(&here, &before.ty, &field.ty);
                    self.facts(&here, before, field);
                }
                Some((before, how)) => {
                    let new_reads_old = how == Rename::Aliased;
                    let old_reads_new = before.aliases.contains(&field.name);
                    let (backward, forward) = if new_reads_old || old_reads_new {
                        (
                            new_reads_old && (field.optional || !before.may_skip),
                            old_reads_new || (before.optional && !old.deny_unknown),
                        )
                    } else {
                        (false, false)
                    };
                    let fix = Fix::Directions {
                        backward: format!(
                            "Add `#[serde(alias = \"{}\")]` to `{}`, so that files saved before \
                             load with their value",
                            before.name, field.name
                        ),
                        forward: format!(
                            "Older builds read `{}`, which new files no longer hold. \
                             {FORWARD_BUMP}",
                            before.name
                        ),
                    };
                    self.push(
                        &here,
                        ChangeKind::FieldRenamed {
                            from: before.name.clone(),
                            to: field.name.clone(),
                            new_reads_old,
                            old_reads_new,
                        },
                        backward,
                        forward,
                        fix,
                    );
                    self.ty(&here, &before.ty, &field.ty);
                }
            }
        }
        for gone in old_left {
            let fix = Fix::Directions {
                backward: format!(
                    "Files saved before hold `{}`, which this struct refuses \
                     (`deny_unknown_fields`): keep the field, or remove `deny_unknown_fields`",
                    gone.name
                ),
                forward: format!(
                    "Older builds require `{}` in every file: keep the field (unused, if need \
                     be). {FORWARD_BUMP}",
                    gone.name
                ),
            };
            self.push(
                &at(&gone.name),
                ChangeKind::FieldRemoved {
                    name: gone.name.clone(),
                    optional: gone.optional,
                },
                !new.deny_unknown,
                gone.optional,
                fix,
            );
        }
    }

    /// The changes of what one field allows.
    fn facts(&mut self, path: &str, old: &Field, new: &Field) {
        let name = || new.name.clone();
        // An `Option` may be missing and nothing else may, unless an attribute says otherwise;
        // wrapping or unwrapping one is a change of its own.
        let implied = |field: &Field| field.optional == matches!(field.ty, Ty::Option(_));
        let explicit = !(implied(old) && implied(new));
        if explicit && !old.optional && new.optional {
            self.push(
                path,
                ChangeKind::FieldBecameOptional { name: name() },
                true,
                true,
                Fix::Bump,
            );
        }
        if explicit && old.optional && !new.optional {
            let fix = Fix::Backward(format!(
                "Keep `#[serde(default)]` on `{}`: files saved before may leave it out",
                new.name
            ));
            self.push(
                path,
                ChangeKind::FieldBecameRequired { name: name() },
                !old.may_skip,
                true,
                fix,
            );
        }
        if !old.may_skip && new.may_skip {
            let fix = Fix::Forward(format!(
                "Older builds require `{}` in every file: drop `skip_serializing_if`. \
                 {FORWARD_BUMP}",
                new.name
            ));
            self.push(
                path,
                ChangeKind::FieldNowSkipped { name: name() },
                true,
                old.optional,
                fix,
            );
        }
        if old.may_skip && !new.may_skip {
            self.push(
                path,
                ChangeKind::FieldNoLongerSkipped { name: name() },
                true,
                true,
                Fix::Bump,
            );
        }
        if old.aliases != new.aliases {
            let added = new
                .aliases
                .iter()
                .filter(|alias| !old.aliases.contains(alias))
                .cloned()
                .collect();
            let removed = old
                .aliases
                .iter()
                .filter(|alias| !new.aliases.contains(alias))
                .cloned()
                .collect();
            self.push(
                path,
                ChangeKind::AliasesChanged {
                    name: name(),
                    added,
                    removed,
                },
                true,
                true,
                Fix::Bump,
            );
        }
    }

    fn variants(&mut self, path: &str, old: &[Variant], new: &[Variant]) {
        for variant in new {
            let here = format!("{path}::{}", variant.name);
            match old.iter().find(|o| o.name == variant.name) {
                Some(before) => self.payload(&here, &before.payload, &variant.payload),
                None => self.push(
                    &here,
                    ChangeKind::VariantAdded {
                        name: variant.name.clone(),
                    },
                    true,
                    false,
                    Fix::Forward(format!(
                        "Older builds cannot read files that hold `{}`. {FORWARD_BUMP}",
                        variant.name
                    )),
                ),
            }
        }
        for gone in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
            self.push(
                &format!("{path}::{}", gone.name),
                ChangeKind::VariantRemoved {
                    name: gone.name.clone(),
                },
                false,
                true,
                Fix::Backward(format!(
                    "Files saved before may hold `{}`: keep the variant, or bump the version with \
                     a migration that maps it to another",
                    gone.name
                )),
            );
        }
    }

    fn payload(&mut self, path: &str, old: &Payload, new: &Payload) {
        let struct_of = |shape: &Shape, ty: &Ty| match unwrapped(shape, ty) {
            Ty::Ref(name) => match shape.container(name) {
                Some(Container::Struct(fields)) => Some(fields.clone()),
                _ => None,
            },
            _ => None,
        };
        match (old, new) {
            (Payload::Unit, Payload::Unit) => {}
            (Payload::Newtype(a), Payload::Newtype(b)) => self.ty(path, a, b),
            (Payload::Tuple(a), Payload::Tuple(b)) if a.len() == b.len() => {
                for (i, (a, b)) in a.iter().zip(b).enumerate() {
                    self.ty(&format!("{path}.{i}"), a, b);
                }
            }
            (Payload::Struct(a), Payload::Struct(b)) => self.fields(path, a, b),
            // `V(Inner)` with a struct `Inner` and `V { ... }` are the same JSON.
            (Payload::Newtype(a), Payload::Struct(b)) if struct_of(self.old, a).is_some() => {
                let a = struct_of(self.old, a).unwrap_or_default();
                self.fields(path, &a, b);
            }
            (Payload::Struct(a), Payload::Newtype(b)) if struct_of(self.new, b).is_some() => {
                let b = struct_of(self.new, b).unwrap_or_default();
                self.fields(path, a, &b);
            }
            _ => self.replaced(path, payload_text(old), payload_text(new)),
        }
    }
}

fn payload_text(payload: &Payload) -> String {
    match payload {
        Payload::Unit => "a unit variant".to_owned(),
        Payload::Newtype(inner) => format!("a variant holding `{inner}`"),
        Payload::Tuple(items) => format!("a variant of {} items", items.len()),
        Payload::Struct(_) => "a struct variant".to_owned(),
    }
}

/// How a new field continues an old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rename {
    /// The same name.
    Same,
    /// The new field reads the old name.
    Aliased,
    /// The old field read the new name.
    OldAliased,
    /// Neither: a field gone and one of the same type new.
    Unaliased,
}

/// What makes a change compatible in the direction(s) it breaks.
enum Fix {
    /// Only backward is at stake.
    Backward(String),
    /// Only forward is at stake.
    Forward(String),
    /// Either may be.
    Directions { backward: String, forward: String },
    /// Only a version bump.
    Bump,
}

/// The advice every breaking change ends with (after "Otherwise, ", or capitalized).
const BUMP: &str = "bump the version: keep the old definition as its own type, give the new one \
                    `migrate_from` it and a `From`/`TryFrom` impl that converts the data";

/// [`BUMP`] as a sentence of its own.
fn bump_sentence() -> String {
    let mut text = BUMP.to_owned();
    text[..1].make_ascii_uppercase();
    text
}

impl Fix {
    /// The advice for a change that keeps `backward` and `forward` as given (not both).
    fn text(self, backward: bool, forward: bool) -> String {
        let (for_backward, for_forward) = match self {
            Fix::Backward(text) => (Some(text), None),
            Fix::Forward(text) => (None, Some(text)),
            Fix::Directions {
                backward: b,
                forward: f,
            } => (Some(b), Some(f)),
            Fix::Bump => (None, None),
        };
        match (backward, forward) {
            (true, _) => for_forward.unwrap_or_else(|| FORWARD_BUMP.to_owned()),
            (false, true) => for_backward.unwrap_or_else(bump_sentence),
            (false, false) => match for_backward {
                Some(text) => {
                    format!("{text} (that makes it backward compatible). Otherwise, {BUMP}")
                }
                None => bump_sentence(),
            },
        }
    }
}
