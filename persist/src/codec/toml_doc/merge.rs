//! A save over a TOML document: the new value's keys written into the document the file held,
//! so that what a person wrote around the values stays.
//!
//! - a value equal to the one in the file is left as it is written (`0x10`, `'literal'`, `1e3`);
//!   a changed one is replaced, keeping the comment after it and the spacing around it;
//! - a key the value no longer has goes, with the comment lines above it (they are its own);
//! - a key the value gains is added at the end of its table, in the value's order;
//! - tables and inline tables are merged key by key, whichever form the file uses for them;
//!   arrays and arrays of tables element by element;
//! - a renamed field (`renamed`, top level) takes the place and comments of its old key.

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
        if root.contains_key(from)
            && !root.contains_key(to)
            && new.as_table().contains_key(to)
            && !new.as_table().contains_key(from)
        {
            rename(root, from, to);
        }
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
fn line_ends(text: String, crlf: bool) -> String {
    match crlf {
        true => text.replace("\r\n", "\n").replace('\n', "\r\n"),
        false => text,
    }
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

/// Renames the key `from` of `table` to `to` in place: the same position, comments and item.
fn rename(table: &mut Table, from: &str, to: &str) {
    let names: Vec<String> = table.iter().map(|(name, _)| name.to_owned()).collect();
    let entries: Vec<(Key, Item)> = names
        .iter()
        .filter_map(|name| table.remove_entry(name))
        .collect();
    for (key, item) in entries {
        if key.get() == from {
            let renamed = Key::new(to)
                .with_leaf_decor(key.leaf_decor().clone())
                .with_dotted_decor(key.dotted_decor().clone());
            table.insert_formatted(&renamed, item);
        } else {
            table.insert_formatted(&key, item);
        }
    }
}

/// Writes the keys of `new` into `old`: see the module's documentation.
fn merge_table(old: &mut Table, new: &dyn TableLike) {
    let gone: Vec<String> = old
        .iter()
        .filter(|(name, _)| !new.contains_key(name))
        .map(|(name, _)| name.to_owned())
        .collect();
    for name in gone {
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
    match (old, new) {
        (Item::Value(old), Item::Value(new)) => merge_value(old, new),
        (Item::Table(old), Item::Table(new)) => merge_table(old, new),
        (Item::Value(Value::InlineTable(old)), Item::Table(new)) => {
            merge_inline(old, new);
        }
        (Item::Table(old), Item::Value(Value::InlineTable(new))) => merge_table(old, new),
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

/// [`merge_table`] into an inline table: what `new` adds is written inline.
fn merge_inline(old: &mut InlineTable, new: &dyn TableLike) {
    let gone: Vec<String> = old
        .iter()
        .filter(|(name, _)| !new.contains_key(name))
        .map(|(name, _)| name.to_owned())
        .collect();
    for name in gone {
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

/// Arrays of tables, element by element: the common ones merged, the rest removed or added.
fn merge_tables(old: &mut ArrayOfTables, new: &ArrayOfTables) {
    while old.len() > new.len() {
        old.remove(old.len() - 1);
    }
    for (index, table) in new.iter().enumerate() {
        match old.get_mut(index) {
            Some(existing) => merge_table(existing, table),
            None => {
                let mut table = table.clone();
                unplace_table(&mut table);
                old.push(table);
            }
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
            *old = new.clone();
            *old.decor_mut() = decor;
        }
    }
}

/// Arrays element by element: an added element is laid out as the last one was (one per line
/// stays one per line).
fn merge_array(old: &mut Array, new: &Array) {
    if old.is_empty() {
        // Nothing of the file's inside: the new array, where the old one stood.
        let decor = old.decor().clone();
        *old = new.clone();
        *old.decor_mut() = decor;
        return;
    }
    while old.len() > new.len() {
        old.remove(old.len() - 1);
    }
    for (index, value) in new.iter().enumerate() {
        match old.get_mut(index) {
            Some(existing) => merge_value(existing, value),
            None => {
                let mut value = value.clone();
                match old.iter().last() {
                    Some(last) => *value.decor_mut() = last.decor().clone(),
                    None => value.decor_mut().clear(),
                }
                if index > 0 && value.decor().prefix().is_none() {
                    value.decor_mut().set_prefix(" ");
                }
                old.push_formatted(value);
            }
        }
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
