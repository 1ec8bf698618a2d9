//! A save over a TOML document: the new value's keys written into the document the file held,
//! so that what a person wrote around the values stays.
//!
//! - a value equal to the one in the file is left as it is written (`0x10`, `'literal'`, `1e3`);
//!   a changed one is replaced, keeping the comment after it and the spacing around it;
//! - a key the value no longer has goes, with the comment lines above it (they are its own);
//! - a key the value gains is added at the end of its table, in the value's order;
//! - tables and inline tables are merged key by key, whichever form the file uses for them;
//!   arrays and arrays of tables element by element;
//! - a renamed field (`renamed`: top-level fields' serde aliases, and the paths of
//!   `#[persist(renamed(...))]`) takes the place and comments of its old key.

use toml_edit::{
    Array, ArrayOfTables, DocumentMut, InlineTable, Item, Key, Table, TableLike, Value,
};

use super::{CHECKSUM_KEY, KEY_KEY, VERSION_KEY};

/// The file's bytes: `document` (the file a save replaces) with `new` (the value's document)
/// written into it, and the envelope's keys first: the version, the key if any, the checksum
/// (of the bytes after its line) when asked for.
pub(super) fn over(
    mut document: DocumentMut,
    new: &DocumentMut,
    version: u64,
    key: Option<&str>,
    checksum: bool,
    renamed: &[(&str, &str)],
    crlf: bool,
) -> String {
    let root = document.as_table_mut();
    let old_version = root.remove_entry(VERSION_KEY);
    let old_key = root.remove_entry(KEY_KEY);
    let old_checksum = root.remove_entry(CHECKSUM_KEY);
    for (from, to) in renamed {
        rename_at(root, new.as_table(), from, to);
    }
    merge_table(root, new.as_table());

    // A file that had no version (written by a person) gets it above what was there.
    let separator = match (&old_version, root.is_empty()) {
        (None, false) => "\n",
        _ => "",
    };
    let data = line_ends(format!("{separator}{document}"), crlf);
    let mut header = DocumentMut::new();
    let head = header.as_table_mut();
    let version = i64::try_from(version).unwrap_or(i64::MAX);
    set(head, VERSION_KEY, old_version, Value::from(version));
    if let Some(key) = key {
        set(head, KEY_KEY, old_key, Value::from(key));
    }
    if checksum {
        let crc = format!("{:08x}", crc32c::crc32c(data.as_bytes()));
        set(head, CHECKSUM_KEY, old_checksum, Value::from(crc));
    }
    line_ends(header.to_string(), crlf) + &data
}

/// `text` with its line ends as the file had them: `\r\n` in a file whose first line ends so.
/// Only the line ends of the document change: a line break inside a multi-line string is part
/// of the string, and stays as it is.
fn line_ends(text: String, crlf: bool) -> String {
    if !crlf {
        return text;
    }
    #[derive(Clone, Copy, PartialEq)]
    enum In {
        Document,
        Comment,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    let mut state = In::Document;
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let byte = bytes[at];
        let mut step = 1;
        match state {
            In::Document | In::Comment => match byte {
                b'\n' => {
                    if !out.ends_with(b"\r") {
                        out.push(b'\r');
                    }
                    state = In::Document;
                }
                b'#' if state == In::Document => state = In::Comment,
                b'"' if state == In::Document && rest.starts_with(b"\"\"\"") => {
                    state = In::MultiBasic;
                    step = 3;
                }
                b'\'' if state == In::Document && rest.starts_with(b"'''") => {
                    state = In::MultiLiteral;
                    step = 3;
                }
                b'"' if state == In::Document => state = In::Basic,
                b'\'' if state == In::Document => state = In::Literal,
                _ => {}
            },
            In::Basic | In::MultiBasic if byte == b'\\' => step = 2,
            In::Basic if byte == b'"' => state = In::Document,
            In::Literal if byte == b'\'' => state = In::Document,
            In::MultiBasic if rest.starts_with(b"\"\"\"") => {
                // Up to two more quotes may end the string's content.
                step = 3 + rest[3..].iter().take(2).take_while(|b| **b == b'"').count();
                state = In::Document;
            }
            In::MultiLiteral if rest.starts_with(b"'''") => {
                step = 3 + rest[3..]
                    .iter()
                    .take(2)
                    .take_while(|b| **b == b'\'')
                    .count();
                state = In::Document;
            }
            _ => {}
        }
        let end = (at + step).min(bytes.len());
        out.extend_from_slice(&bytes[at..end]);
        at = end;
    }
    // Only ASCII bytes were added, between whole characters.
    String::from_utf8(out).unwrap_or(text)
}

/// Puts `name = value` in `table`, with the key's and the value's spacing and comments as the
/// file had them (`old`) when it had the key.
fn set(table: &mut Table, name: &str, old: Option<(Key, Item)>, mut value: Value) {
    match old {
        Some((key, Item::Value(old))) => {
            *value.decor_mut() = old.decor().clone();
            table.insert_formatted(&key, Item::Value(value));
        }
        Some((key, _)) => {
            table.insert_formatted(&key, Item::Value(value));
        }
        None => {
            table.insert(name, Item::Value(value));
        }
    }
}

/// Renames the key at the dotted path `from` (`window.old_width`, or a top-level `name`) to the
/// last part of `to`, when both are in the same table, the file has the old key and not the new
/// one, and the value has the new key and not the old one.
fn rename_at(root: &mut Table, new: &Table, from: &str, to: &str) {
    let split = |path: &'_ str| -> (String, String) {
        match path.rsplit_once('.') {
            Some((parent, leaf)) => (parent.to_owned(), leaf.to_owned()),
            None => (String::new(), path.to_owned()),
        }
    };
    let ((parent, from), (to_parent, to)) = (split(from), split(to));
    if parent != to_parent {
        return;
    }
    let path: Vec<&str> = parent.split('.').filter(|part| !part.is_empty()).collect();
    let mut new_at: &dyn TableLike = new;
    for part in &path {
        match new_at.get(part).and_then(Item::as_table_like) {
            Some(inner) => new_at = inner,
            None => return,
        }
    }
    if !new_at.contains_key(&to) || new_at.contains_key(&from) {
        return;
    }
    let Some((last, above)) = path.split_last() else {
        if root.contains_key(&from) && !root.contains_key(&to) {
            rename(root, &from, &to);
        }
        return;
    };
    let mut old_at: &mut Table = root;
    for part in above {
        match old_at.get_mut(part).and_then(Item::as_table_mut) {
            Some(inner) => old_at = inner,
            None => return,
        }
    }
    match old_at.get_mut(last) {
        Some(Item::Table(table)) if table.contains_key(&from) && !table.contains_key(&to) => {
            rename(table, &from, &to);
        }
        Some(Item::Value(Value::InlineTable(table)))
            if table.contains_key(&from) && !table.contains_key(&to) =>
        {
            rename_inline(table, &from, &to);
        }
        _ => {}
    }
}

/// [`rename`] in an inline table.
fn rename_inline(table: &mut InlineTable, from: &str, to: &str) {
    let names: Vec<String> = table.iter().map(|(name, _)| name.to_owned()).collect();
    let entries: Vec<(Key, Value)> = names
        .iter()
        .filter_map(|name| table.remove_entry(name))
        .collect();
    for (key, value) in entries {
        let key = match key.get() == from {
            true => respelled(&key, to),
            false => key,
        };
        table.insert_formatted(&key, value);
    }
}

/// Renames the key `from` of `table` to `to` in place: the same position, comments and item.
fn rename(table: &mut Table, from: &str, to: &str) {
    let names: Vec<String> = table.iter().map(|(name, _)| name.to_owned()).collect();
    let entries: Vec<(Key, Item)> = names
        .iter()
        .filter_map(|name| table.remove_entry(name))
        .collect();
    for (key, item) in entries {
        let key = match key.get() == from {
            true => respelled(&key, to),
            false => key,
        };
        table.insert_formatted(&key, item);
    }
}

/// The names of `old` that `new` does not have.
fn gone<'a>(old: impl Iterator<Item = &'a str>, new: &dyn TableLike) -> Vec<String> {
    old.filter(|name| !new.contains_key(name))
        .map(str::to_owned)
        .collect()
}

/// `key` spelled `to`, with the spacing and comments it had.
fn respelled(key: &Key, to: &str) -> Key {
    Key::new(to)
        .with_leaf_decor(key.leaf_decor().clone())
        .with_dotted_decor(key.dotted_decor().clone())
}

/// Writes the keys of `new` into `old`: see the module's documentation.
fn merge_table(old: &mut Table, new: &dyn TableLike) {
    for name in gone(old.iter().map(|(name, _)| name), new) {
        old.remove(&name);
    }
    let dotted = old.is_dotted();
    for (name, item) in new.iter() {
        match old.get_mut(name) {
            Some(existing) => merge_item(existing, item),
            None => {
                let mut item = item.clone();
                unplace(&mut item);
                // Keys written `a.b = 1` get new tables written the same way.
                if let (true, Item::Table(table)) = (dotted, &mut item) {
                    dot(table);
                }
                old.insert(name, item);
            }
        }
    }
}

/// Forgets where `item`'s tables stood in the document they came from: placed after what
/// precedes them in this one.
fn unplace(item: &mut Item) {
    match item {
        Item::Table(table) => unplace_table(table),
        Item::ArrayOfTables(tables) => {
            for table in tables.iter_mut() {
                unplace_table(table);
            }
        }
        Item::None | Item::Value(_) => {}
    }
}

fn unplace_table(table: &mut Table) {
    table.set_position(None);
    for (_, item) in table.iter_mut() {
        unplace(item);
    }
}

/// Makes `table` and the tables in it dotted keys of the table above.
fn dot(table: &mut Table) {
    table.set_dotted(true);
    for (_, item) in table.iter_mut() {
        if let Item::Table(inner) = item {
            dot(inner);
        }
    }
}

/// Writes `new` over `old`, keeping `old`'s form where the two agree.
fn merge_item(old: &mut Item, new: &Item) {
    match (&mut *old, new) {
        (Item::Value(old), Item::Value(new)) => merge_value(old, new),
        (Item::Table(table), Item::Table(new)) => {
            merge_table(table, new);
            keep_if_empty(old);
        }
        (Item::Value(Value::InlineTable(old)), Item::Table(new)) => {
            merge_inline(old, new);
        }
        (Item::Table(table), Item::Value(Value::InlineTable(new))) => {
            merge_table(table, new);
            keep_if_empty(old);
        }
        (Item::ArrayOfTables(old), Item::ArrayOfTables(new)) => merge_tables(old, new),
        (Item::Value(Value::Array(old)), Item::ArrayOfTables(new)) => {
            let new = new.clone().into_array();
            merge_array(old, &new);
        }
        (old, new) => {
            let mut fresh = new.clone();
            unplace(&mut fresh);
            if let (Item::Value(before), Item::Value(after)) = (&*old, &mut fresh) {
                *after.decor_mut() = before.decor().clone();
            }
            *old = fresh;
        }
    }
}

/// Makes a table the merge left empty show in the file: one written only through its keys'
/// paths (`a.b.c = 1`, or only `[a.b]` headers) would otherwise go, and with it a field the
/// value has. A dotted one becomes `{}` where it stood, an implicit one gets its header.
fn keep_if_empty(item: &mut Item) {
    let Item::Table(table) = item else { return };
    if !table.is_empty() {
        return;
    }
    match table.is_dotted() {
        true => *item = Item::Value(Value::InlineTable(InlineTable::new())),
        false => table.set_implicit(false),
    }
}

/// [`merge_table`] into an inline table: what `new` adds is written inline.
fn merge_inline(old: &mut InlineTable, new: &dyn TableLike) {
    for name in gone(old.iter().map(|(name, _)| name), new) {
        old.remove(&name);
    }
    for (name, item) in new.iter() {
        match old.get_mut(name) {
            Some(existing) => {
                let mut wrapped = Item::Value(existing.clone());
                merge_item(&mut wrapped, item);
                if let Ok(value) = wrapped.into_value() {
                    *existing = value;
                }
            }
            None => {
                let mut item = item.clone();
                item.make_value();
                if let Item::Value(value) = item {
                    old.insert(name, value);
                }
            }
        }
    }
}

/// Arrays of tables, element by element (see [`align`]): an element that stayed keeps its
/// comments wherever it moved, one changed is merged, the rest removed or added.
fn merge_tables(old: &mut ArrayOfTables, new: &ArrayOfTables) {
    let tables: Vec<Table> = old.iter().cloned().collect();
    let news: Vec<&Table> = new.iter().collect();
    let steps = align(tables.len(), news.len(), |i, j| {
        same_table(&tables[i], news[j])
    });
    old.clear();
    for step in steps {
        match step {
            Step::Both(i, j) => {
                let mut table = tables[i].clone();
                merge_table(&mut table, news[j]);
                old.push(table);
            }
            Step::New(j) => {
                let mut table = news[j].clone();
                unplace_table(&mut table);
                old.push(table);
            }
            Step::Old(_) => {}
        }
    }
}

/// Writes `new` over `old`, the value as written in the file kept when it is equal.
fn merge_value(old: &mut Value, new: &Value) {
    if same(old, new) {
        return;
    }
    match (&mut *old, new) {
        (Value::Array(old), Value::Array(new)) => merge_array(old, new),
        (Value::InlineTable(old), Value::InlineTable(new)) => merge_inline(old, new),
        (old, new) => {
            let decor = old.decor().clone();
            *old = literal_if_it_was(old, new).unwrap_or_else(|| new.clone());
            *old.decor_mut() = decor;
        }
    }
}

/// `new`, a string, written as a literal string (`'C:\temp'`) as `old` was, when it can be.
fn literal_if_it_was(old: &Value, new: &Value) -> Option<Value> {
    let (Value::String(old), Value::String(text)) = (old, new) else {
        return None;
    };
    let written = old.display_repr();
    let literal = written.starts_with('\'') && !written.starts_with("\'\'\'");
    let fits = !text
        .value()
        .chars()
        .any(|c| c == '\'' || (c.is_control() && c != '\t'));
    (literal && fits)
        .then(|| format!("'{}'", text.value()).parse::<Value>().ok())
        .flatten()
}

/// Arrays element by element (see [`align`]). What a person wrote between the elements moves
/// with the element it belongs to: the comment at the end of an element's line stays after that
/// element, the indentation of each line stays; an added element is laid out as its
/// neighbours are (one per line stays one per line).
fn merge_array(old: &mut Array, new: &Array) {
    if old.is_empty() {
        // Nothing of the file's inside: the new array, where the old one stood.
        let decor = old.decor().clone();
        *old = new.clone();
        *old.decor_mut() = decor;
        return;
    }
    let values: Vec<Value> = old.iter().cloned().collect();
    let news: Vec<&Value> = new.iter().collect();
    let last = values.len() - 1;
    // Each element's prefix is the end of the line before it (a comma's comment, the line
    // break) and then its own lead (the indentation, comment lines above it).
    let prefix = |value: &Value| raw(value.decor().prefix());
    let trailing = raw(Some(old.trailing()));
    let opening = split_line(&prefix(&values[0])).0;
    let own: Vec<String> = values.iter().map(|v| split_line(&prefix(v)).1).collect();
    // The end of each element's line: in the next element's prefix, or the array's trailing.
    let after: Vec<String> = (0..values.len())
        .map(|i| match i == last {
            true => split_line(&trailing).0,
            false => split_line(&prefix(&values[i + 1])).0,
        })
        .collect();
    let one_per_line = opening.contains('\n') || after.iter().any(|end| end.contains('\n'));
    let own_other = match values.len() {
        1 if one_per_line => own[0].clone(),
        1 => " ".to_owned(),
        _ => own[1].clone(),
    };
    let new_line = if one_per_line { "\n" } else { "" };

    let steps = align(values.len(), news.len(), |i, j| same(&values[i], news[j]));
    let mut rebuilt = Array::new();
    let mut before: Option<Option<usize>> = None;
    for step in steps {
        let (mut value, from) = match step {
            Step::Both(i, j) => {
                let mut value = values[i].clone();
                merge_value(&mut value, news[j]);
                (value, Some(i))
            }
            Step::New(j) => (news[j].clone(), None),
            Step::Old(_) => continue,
        };
        let lead = match before {
            None => opening.clone(),
            Some(Some(previous)) => after[previous].clone(),
            Some(None) => new_line.to_owned(),
        };
        // The first place is indented as the first element was, the others as the others.
        let own = match (before.is_none(), from) {
            (true, _) => own[0].clone(),
            (false, Some(i)) if i != 0 => own[i].clone(),
            (false, _) => own_other.clone(),
        };
        let suffix = value.decor().suffix().cloned();
        let decor = value.decor_mut();
        decor.clear();
        decor.set_prefix(lead + &own);
        match (from, suffix) {
            (Some(_), Some(suffix)) => decor.set_suffix(suffix),
            _ => decor.set_suffix(""),
        }
        rebuilt.push_formatted(value);
        before = Some(from);
    }
    // The array ends as it did; a new last element's line ends as the old last one's did.
    let trailing = match before {
        Some(Some(i)) if i == last => trailing,
        _ => new_line.to_owned() + &split_line(&trailing).1,
    };
    rebuilt.set_trailing(trailing);
    rebuilt.set_trailing_comma(old.trailing_comma());
    *rebuilt.decor_mut() = old.decor().clone();
    *old = rebuilt;
}

/// The text of a piece of decor (empty when there is none).
fn raw(text: Option<&toml_edit::RawString>) -> String {
    text.and_then(toml_edit::RawString::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `text` cut after its first line break: the end of a line, and what follows.
fn split_line(text: &str) -> (String, String) {
    match text.find('\n') {
        Some(at) => (text[..=at].to_owned(), text[at + 1..].to_owned()),
        None => (String::new(), text.to_owned()),
    }
}

/// How the elements of an old and a new list correspond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The old element `.0` becomes the new `.1`.
    Both(usize, usize),
    /// The old element goes.
    Old(usize),
    /// The new element is added.
    New(usize),
}

/// The elements equal in both lists, matched in order (a longest common subsequence), and
/// between two matches the others paired by position (an element changed in place), the rest
/// removed or added. Lists too long for the table (over a million pairs) pair by position.
fn align(old: usize, new: usize, equal: impl Fn(usize, usize) -> bool) -> Vec<Step> {
    let mut steps = Vec::with_capacity(old.max(new));
    let flush = |steps: &mut Vec<Step>, olds: &mut Vec<usize>, news: &mut Vec<usize>| {
        let paired = olds.len().min(news.len());
        steps.extend((0..paired).map(|k| Step::Both(olds[k], news[k])));
        steps.extend(olds[paired..].iter().map(|&i| Step::Old(i)));
        steps.extend(news[paired..].iter().map(|&j| Step::New(j)));
        olds.clear();
        news.clear();
    };
    let (mut olds, mut news) = (Vec::new(), Vec::new());
    if old.saturating_mul(new) > 1 << 20 {
        olds.extend(0..old);
        news.extend(0..new);
        flush(&mut steps, &mut olds, &mut news);
        return steps;
    }
    // `common[i * (new + 1) + j]`: the longest common subsequence of old[i..] and new[j..].
    let width = new + 1;
    let mut common = vec![0_u32; (old + 1) * width];
    for i in (0..old).rev() {
        for j in (0..new).rev() {
            common[i * width + j] = match equal(i, j) {
                true => common[(i + 1) * width + j + 1] + 1,
                false => common[(i + 1) * width + j].max(common[i * width + j + 1]),
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < old && j < new {
        if equal(i, j) && common[i * width + j] == common[(i + 1) * width + j + 1] + 1 {
            flush(&mut steps, &mut olds, &mut news);
            steps.push(Step::Both(i, j));
            i += 1;
            j += 1;
        } else if common[(i + 1) * width + j] >= common[i * width + j + 1] {
            olds.push(i);
            i += 1;
        } else {
            news.push(j);
            j += 1;
        }
    }
    olds.extend(i..old);
    news.extend(j..new);
    flush(&mut steps, &mut olds, &mut news);
    steps
}

/// Whether two tables hold the same data, however each is written.
fn same_table(a: &Table, b: &Table) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(name, item)| b.get(name).is_some_and(|other| same_item(item, other)))
}

fn same_item(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Value(a), Item::Value(b)) => same(a, b),
        (Item::Table(a), Item::Table(b)) => same_table(a, b),
        (Item::ArrayOfTables(a), Item::ArrayOfTables(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same_table(a, b))
        }
        _ => false,
    }
}

/// Whether two values are the same data, however each is written.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.value() == b.value(),
        (Value::Integer(a), Value::Integer(b)) => a.value() == b.value(),
        (Value::Float(a), Value::Float(b)) => {
            let (a, b) = (*a.value(), *b.value());
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        }
        (Value::Boolean(a), Value::Boolean(b)) => a.value() == b.value(),
        (Value::Datetime(a), Value::Datetime(b)) => a.value() == b.value(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same(a, b))
        }
        (Value::InlineTable(a), Value::InlineTable(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(name, value)| b.get(name).is_some_and(|other| same(value, other)))
        }
        _ => false,
    }
}
