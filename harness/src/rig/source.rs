//! Where in the rig text a key is: TOML key paths (`dut[1].udp.port`) and the line and column
//! of a key or value, so that errors point into the file.

use super::RigError;
use std::ops::Range;
use std::path::Path;

pub(super) fn display_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// One step of a TOML key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&display_key(k));
            }
            Seg::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

pub(super) fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Source text of a rig plus its parsed syntax tree, for turning spans into key paths and key
/// paths into lines.
pub(super) struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl<'a> Source<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Source {
            path,
            text,
            doc: toml_edit::ImDocument::parse(text).ok(),
        }
    }

    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit_once('\n')
            .map_or(before, |(_, tail)| tail)
            .chars()
            .count()
            + 1;
        (line, col)
    }

    pub(super) fn invalid(&self, path: &[Seg], problem: impl Into<String>) -> RigError {
        let offset = self
            .doc
            .as_ref()
            .and_then(|d| span_of_path(Node::Item(d.as_item()), path, None));
        let (line, column) = match offset {
            Some(o) => {
                let (l, c) = self.line_col(o);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        RigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key: render_path(path),
            problem: problem.into(),
        }
    }

    pub(super) fn invalid_from_toml(&self, err: &toml::de::Error) -> RigError {
        let span = err.span();
        let key = match (&self.doc, &span) {
            (Some(doc), Some(span)) => {
                let mut path = Vec::new();
                if find_path_item(doc.as_item(), span.start, &mut path) {
                    render_path(&path)
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let hint = if message.contains("unknown field") || message.contains("unknown variant") {
            "; check the spelling (rigs/example-lab.toml documents every key)"
        } else if message.contains("missing field") {
            "; add it (rigs/example-lab.toml documents every key)"
        } else if self.doc.is_none() {
            "; this is a TOML syntax error"
        } else {
            ""
        };
        RigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key,
            problem: format!("{message}{hint}"),
        }
    }
}

pub(super) fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

pub(super) fn find_path_table(
    table: &dyn toml_edit::TableLike,
    offset: usize,
    path: &mut Vec<Seg>,
) -> bool {
    for (k, child) in table.iter() {
        path.push(key(k));
        let key_span = table.get_key_value(k).and_then(|(key, _)| key.span());
        if contains(key_span, offset) || find_path_item(child, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

pub(super) fn find_path_value(
    value: &toml_edit::Value,
    offset: usize,
    path: &mut Vec<Seg>,
) -> bool {
    match value {
        toml_edit::Value::InlineTable(t) if find_path_table(t, offset, path) => return true,
        toml_edit::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if find_path_value(v, offset, path) {
                    return true;
                }
                path.pop();
            }
        }
        _ => {}
    }
    contains(value.span(), offset)
}

/// Finds the deepest key path whose key, value or table header covers `offset`.
pub(super) fn find_path_item(item: &toml_edit::Item, offset: usize, path: &mut Vec<Seg>) -> bool {
    match item {
        toml_edit::Item::None => false,
        toml_edit::Item::Value(v) => find_path_value(v, offset, path),
        toml_edit::Item::Table(t) => find_path_table(t, offset, path) || contains(t.span(), offset),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if find_path_table(t, offset, path) || contains(t.span(), offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
    }
}

/// A position in the syntax tree while following a key path.
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    pub(super) fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
        }
    }

    pub(super) fn index(self, i: usize) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => {
                a.get(i).map(|t| (Node::Table(t), t.span()))
            }
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => {
                a.get(i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        }
    }
}

/// Start offset of the deepest existing prefix of `path` (the key itself when present), so a
/// problem with a defaulted key points at its table.
pub(super) fn span_of_path(node: Node<'_>, path: &[Seg], best: Option<usize>) -> Option<usize> {
    let Some((first, rest)) = path.split_first() else {
        return best;
    };
    let next = match first {
        Seg::Key(k) => node
            .table_like()
            .and_then(|t| t.get_key_value(k))
            .map(|(key, child)| (Node::Item(child), key.span())),
        Seg::Index(i) => node.index(*i),
    };
    match next {
        Some((child, span)) => span_of_path(child, rest, span.map(|s| s.start).or(best)),
        None => best,
    }
}

/// Parses a path rendered by [`render_path`]-like code (`a.b[2].c`, keys possibly quoted).
pub(super) fn parse_simple_path(s: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let (num, tail) = r.split_once(']').unwrap_or((r, ""));
            if let Ok(i) = num.parse() {
                out.push(Seg::Index(i));
            }
            rest = tail;
            continue;
        }
        if let Some(r) = rest.strip_prefix('"') {
            // Quoted keys come from `{:?}`; find the closing quote that is not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in r.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end.unwrap_or(r.len());
            out.push(Seg::Key(r[..end].replace("\\\"", "\"")));
            rest = r.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        out.push(Seg::Key(rest[..end].to_owned()));
        rest = &rest[end..];
    }
    out
}
