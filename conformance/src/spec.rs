//! The SoftBus v1 specification as data: its requirement list.
//!
//! The spec (`conformance/spec/softbus-v1.md`) writes every normative statement as a paragraph or
//! list item that starts with a stable requirement ID in square brackets and contains exactly one
//! RFC 2119 keyword:
//!
//! ```text
//! - [REC-7] A receiver MUST drop a RECORD whose seq is at most `H - 64` ...
//! ```
//!
//! [`parse_requirements`] turns such a document into a list of [`Requirement`]s, each tagged with
//! the numbered section it appears in. The conformance cases cite these IDs, and the coverage
//! check uses [`requirements`] to find MUSTs that no case traces.
//!
//! Parsing rules, chosen so that prose and cross-references never count as requirements:
//!
//! - A requirement starts at the first line of a paragraph, or at a list item marker (`-`, `*`,
//!   `+`, `1.`, `1)`), whose text begins with `[ID]` followed by white space, where `ID` is an
//!   upper-case prefix, a hyphen and a number (`FRAME-12`). It runs until a blank line, a heading,
//!   a table row, a code fence or the next list item. An `[ID]` at the start of a continuation line
//!   is a cross-reference, not a new requirement.
//! - Keywords are the all-capital words `MUST`, `MUST NOT`, `SHOULD`, `SHOULD NOT` and `MAY`;
//!   words inside inline code spans (backticks) are quotations and do not count. `SHALL`,
//!   `REQUIRED`, `RECOMMENDED` and `OPTIONAL` are rejected: the spec writes them as MUST, SHOULD
//!   or MAY.
//! - Headings whose text starts with a section number (`## 7. Record protection`,
//!   `### 7.2 Nonce and AAD`) set the section of the requirements below them; unnumbered headings
//!   do not change it. Fenced code blocks are skipped.

use std::collections::HashMap;
use std::fmt;

/// The SoftBus v1 specification text, shipped inside the crate.
pub const SPEC_MARKDOWN: &str = include_str!("../spec/softbus-v1.md");

/// An RFC 2119 keyword, the strength of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyword {
    /// `MUST`: an absolute requirement.
    Must,
    /// `MUST NOT`: an absolute prohibition.
    MustNot,
    /// `SHOULD`: recommended; deviating needs a good reason.
    Should,
    /// `SHOULD NOT`: not recommended; doing it needs a good reason.
    ShouldNot,
    /// `MAY`: truly optional.
    May,
}

impl Keyword {
    /// Whether a conforming implementation has no choice: true for `MUST` and `MUST NOT`.
    pub fn is_mandatory(self) -> bool {
        matches!(self, Keyword::Must | Keyword::MustNot)
    }

    /// The keyword as the spec writes it, e.g. `"MUST NOT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Must => "MUST",
            Keyword::MustNot => "MUST NOT",
            Keyword::Should => "SHOULD",
            Keyword::ShouldNot => "SHOULD NOT",
            Keyword::May => "MAY",
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normative statement of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The stable ID, without brackets, e.g. `"REC-7"`.
    pub id: String,
    /// The statement's RFC 2119 keyword.
    pub keyword: Keyword,
    /// Number of the innermost numbered section containing it, e.g. `"7.2"`; empty before the
    /// first numbered heading.
    pub section: String,
    /// Title of that section, e.g. `"Nonce and AAD"`.
    pub section_title: String,
    /// The statement without its `[ID]` marker, its lines joined by single spaces.
    pub text: String,
}

impl Requirement {
    /// The top-level section number, e.g. `"7"` for a requirement in section `"7.2"`.
    pub fn chapter(&self) -> &str {
        self.section.split('.').next().unwrap_or("")
    }
}

/// Why a spec document could not be turned into a requirement list.
///
/// Line numbers are 1-based and point at the line where the requirement starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Two requirements carry the same ID.
    #[error(
        "spec line {line}: requirement [{id}] is defined again (first defined at line \
         {first_line}); give it a new ID, IDs are never reused"
    )]
    DuplicateId {
        /// The repeated ID.
        id: String,
        /// Line of the second definition.
        line: usize,
        /// Line of the first definition.
        first_line: usize,
    },
    /// A requirement contains none of MUST, MUST NOT, SHOULD, SHOULD NOT, MAY.
    #[error(
        "spec line {line}: requirement [{id}] has no RFC 2119 keyword; write exactly one of MUST, \
         MUST NOT, SHOULD, SHOULD NOT, MAY in capitals"
    )]
    MissingKeyword {
        /// The requirement's ID.
        id: String,
        /// Line where the requirement starts.
        line: usize,
    },
    /// A requirement contains more than one keyword.
    #[error(
        "spec line {line}: requirement [{id}] has {} RFC 2119 keywords ({}); split it into one \
         requirement per keyword",
        found.len(),
        keyword_list(found)
    )]
    MultipleKeywords {
        /// The requirement's ID.
        id: String,
        /// Line where the requirement starts.
        line: usize,
        /// The keywords found, in order of appearance.
        found: Vec<Keyword>,
    },
    /// A requirement uses an RFC 2119 word this spec does not use (SHALL, REQUIRED, ...).
    #[error(
        "spec line {line}: requirement [{id}] uses \"{word}\"; this spec writes only MUST, MUST \
         NOT, SHOULD, SHOULD NOT and MAY (SHALL and REQUIRED are written MUST, RECOMMENDED is \
         SHOULD, OPTIONAL is MAY)"
    )]
    NonCanonicalKeyword {
        /// The requirement's ID.
        id: String,
        /// Line where the requirement starts.
        line: usize,
        /// The offending word, e.g. `"SHALL"`.
        word: String,
    },
}

fn keyword_list(found: &[Keyword]) -> String {
    found
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Extracts the requirements of a spec document, in document order.
///
/// Fails on the first requirement (in document order) that repeats an earlier ID or that does not
/// contain exactly one RFC 2119 keyword. Never panics, whatever the input.
pub fn parse_requirements(markdown: &str) -> Result<Vec<Requirement>, SpecError> {
    let scan = scan(markdown);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(scan.requirements.len());
    for raw in scan.requirements {
        if let Some(&first_line) = seen.get(&raw.id) {
            return Err(SpecError::DuplicateId {
                id: raw.id,
                line: raw.line,
                first_line,
            });
        }
        seen.insert(raw.id.clone(), raw.line);
        let words = find_keywords(&raw.text);
        if let Some(word) = words.iter().find_map(|w| match w {
            Found::NonCanonical(word) => Some(word.clone()),
            Found::Keyword(_) => None,
        }) {
            return Err(SpecError::NonCanonicalKeyword {
                id: raw.id,
                line: raw.line,
                word,
            });
        }
        let found: Vec<Keyword> = words
            .iter()
            .filter_map(|w| match w {
                Found::Keyword(k) => Some(*k),
                Found::NonCanonical(_) => None,
            })
            .collect();
        let keyword = match found.as_slice() {
            [] => {
                return Err(SpecError::MissingKeyword {
                    id: raw.id,
                    line: raw.line,
                })
            }
            [k] => *k,
            _ => {
                return Err(SpecError::MultipleKeywords {
                    id: raw.id,
                    line: raw.line,
                    found,
                })
            }
        };
        out.push(Requirement {
            id: raw.id,
            keyword,
            section: raw.section,
            section_title: raw.section_title,
            text: raw.text,
        });
    }
    Ok(out)
}

/// The requirements of the bundled SoftBus v1 spec ([`SPEC_MARKDOWN`]).
///
/// # Panics
///
/// Panics, naming the spec error, if the bundled spec is invalid. The spec ships inside the crate
/// and this crate's tests parse it, so that is a build defect, not an input error.
pub fn requirements() -> Vec<Requirement> {
    match parse_requirements(SPEC_MARKDOWN) {
        Ok(reqs) => reqs,
        Err(err) => panic!("the bundled spec conformance/spec/softbus-v1.md is invalid: {err}"),
    }
}

/// A requirement as found in the text, before its keyword is checked.
#[derive(Debug)]
struct RawRequirement {
    id: String,
    line: usize,
    section: String,
    section_title: String,
    text: String,
}

/// A stretch of informative text (paragraph, list item, table row), kept for lints.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct Prose {
    line: usize,
    section: String,
    text: String,
}

/// The result of splitting a document into requirements and other text.
#[derive(Debug, Default)]
struct Scan {
    requirements: Vec<RawRequirement>,
    #[cfg_attr(not(test), allow(dead_code))]
    prose: Vec<Prose>,
}

/// What the line before the current one left open.
#[derive(Debug)]
enum Block {
    /// Nothing: the next line starts a new block.
    None,
    /// A requirement paragraph or list item, collecting continuation lines.
    Requirement(RawRequirement),
    /// An informative paragraph or list item.
    Prose(Prose),
}

fn scan(markdown: &str) -> Scan {
    let mut scan = Scan::default();
    let mut section = String::new();
    let mut section_title = String::new();
    let mut block = Block::None;
    // The fence that opened the current code block (its character and length), if any.
    let mut fence: Option<(char, usize)> = None;

    for (index, line) in markdown.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();

        if let Some((ch, len)) = fence {
            if is_fence_close(trimmed, ch, len) {
                fence = None;
            }
            continue;
        }
        if let Some(opened) = fence_open(trimmed) {
            finish(&mut scan, &mut block);
            fence = Some(opened);
            continue;
        }
        if trimmed.is_empty() {
            finish(&mut scan, &mut block);
            continue;
        }
        if let Some(title) = heading_text(line) {
            finish(&mut scan, &mut block);
            if let Some((number, rest)) = split_section_number(title) {
                section = number.to_string();
                section_title = rest.to_string();
            }
            continue;
        }
        if trimmed.starts_with('|') {
            finish(&mut scan, &mut block);
            scan.prose.push(Prose {
                line: line_no,
                section: section.clone(),
                text: trimmed.to_string(),
            });
            continue;
        }

        let item = strip_list_marker(trimmed);
        let starts_block = item.is_some() || matches!(block, Block::None);
        if !starts_block {
            // A continuation line of the open paragraph or list item.
            match &mut block {
                Block::Requirement(req) => push_line(&mut req.text, trimmed),
                Block::Prose(prose) => push_line(&mut prose.text, trimmed),
                Block::None => {}
            }
            continue;
        }
        finish(&mut scan, &mut block);
        let content = item.unwrap_or(trimmed);
        block = match split_requirement_id(content) {
            Some((id, rest)) => Block::Requirement(RawRequirement {
                id: id.to_string(),
                line: line_no,
                section: section.clone(),
                section_title: section_title.clone(),
                text: rest.to_string(),
            }),
            None => Block::Prose(Prose {
                line: line_no,
                section: section.clone(),
                text: content.to_string(),
            }),
        };
    }
    finish(&mut scan, &mut block);
    scan
}

fn finish(scan: &mut Scan, block: &mut Block) {
    match std::mem::replace(block, Block::None) {
        Block::None => {}
        Block::Requirement(req) => scan.requirements.push(req),
        Block::Prose(prose) => scan.prose.push(prose),
    }
}

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(line);
}

/// Recognises an opening code fence (three or more backticks or tildes).
fn fence_open(trimmed: &str) -> Option<(char, usize)> {
    let ch = trimmed.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = trimmed.chars().take_while(|&c| c == ch).count();
    (len >= 3).then_some((ch, len))
}

fn is_fence_close(trimmed: &str, ch: char, len: usize) -> bool {
    let run = trimmed.chars().take_while(|&c| c == ch).count();
    run >= len && trimmed.chars().skip(run).all(char::is_whitespace)
}

/// The text of an ATX heading (`## Title ##` gives `Title`), if the line is one.
fn heading_text(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = line.trim_start_matches(' ');
    let level = rest.chars().take_while(|&c| c == '#').count();
    if level == 0 || level > 6 {
        return None;
    }
    let after = &rest[level..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let title = after.trim();
    let title = title.trim_end_matches('#').trim_end();
    Some(title)
}

/// Splits `"7.2. Nonce and AAD"` into `("7.2", "Nonce and AAD")`.
fn split_section_number(title: &str) -> Option<(&str, &str)> {
    let end = title
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(title.len(), |(i, _)| i);
    let number = title[..end].trim_end_matches('.');
    let valid = !number.is_empty()
        && number
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return None;
    }
    let rest = &title[end..];
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some((number, rest.trim()))
}

/// Strips a list item marker (`- `, `* `, `+ `, `12. `, `3) `), returning the item's text.
fn strip_list_marker(trimmed: &str) -> Option<&str> {
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = trimmed.strip_prefix(marker) {
            return Some(rest.trim_start());
        }
    }
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let rest = &trimmed[digits..];
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))?;
    if rest.starts_with(char::is_whitespace) {
        Some(rest.trim_start())
    } else {
        None
    }
}

/// Splits `"[REC-7] A receiver ..."` into `("REC-7", "A receiver ...")`.
fn split_requirement_id(content: &str) -> Option<(&str, &str)> {
    let inner = content.strip_prefix('[')?;
    let close = inner.find(']')?;
    let id = &inner[..close];
    let rest = &inner[close + 1..];
    if !is_requirement_id(id) || !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    Some((id, rest.trim()))
}

/// `PREFIX-N`: an upper-case letter, then upper-case letters or digits, a hyphen, and digits.
fn is_requirement_id(id: &str) -> bool {
    let Some((prefix, number)) = id.split_once('-') else {
        return false;
    };
    let mut prefix_chars = prefix.chars();
    prefix_chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && prefix_chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// An RFC 2119 word found in a requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Keyword(Keyword),
    NonCanonical(String),
}

/// Finds the RFC 2119 words of a text, outside inline code spans, in order.
fn find_keywords(text: &str) -> Vec<Found> {
    let words = words_outside_code(text);
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(&(word, gap_after)) = words.get(i) {
        let next_is_not = gap_after && words.get(i + 1).is_some_and(|&(w, _)| w == "NOT");
        let (item, consumed) = match word {
            "MUST" if next_is_not => (Some(Found::Keyword(Keyword::MustNot)), 2),
            "MUST" => (Some(Found::Keyword(Keyword::Must)), 1),
            "SHOULD" if next_is_not => (Some(Found::Keyword(Keyword::ShouldNot)), 2),
            "SHOULD" => (Some(Found::Keyword(Keyword::Should)), 1),
            "MAY" => (Some(Found::Keyword(Keyword::May)), 1),
            "SHALL" if next_is_not => (Some(Found::NonCanonical("SHALL NOT".into())), 2),
            "NOT" if words.get(i + 1).is_some_and(|&(w, _)| w == "RECOMMENDED") && gap_after => {
                (Some(Found::NonCanonical("NOT RECOMMENDED".into())), 2)
            }
            "SHALL" | "REQUIRED" | "RECOMMENDED" | "OPTIONAL" => {
                (Some(Found::NonCanonical(word.to_string())), 1)
            }
            _ => (None, 1),
        };
        found.extend(item);
        i += consumed;
    }
    found
}

/// Splits a text into words (runs of ASCII letters, digits and underscores) outside backtick
/// code spans. Each word comes with whether only white space separates it from the next word.
fn words_outside_code(text: &str) -> Vec<(&str, bool)> {
    let mut words: Vec<(&str, bool)> = Vec::new();
    let mut in_code = false;
    let mut start: Option<usize> = None;
    // Whether everything since the end of the last word was white space.
    let mut only_space = true;
    for (i, c) in text.char_indices() {
        let is_word = !in_code && (c.is_ascii_alphanumeric() || c == '_');
        if is_word {
            if start.is_none() {
                if let Some(last) = words.last_mut() {
                    last.1 = only_space;
                }
                start = Some(i);
            }
            continue;
        }
        if let Some(s) = start.take() {
            words.push((&text[s..i], false));
            only_space = true;
        }
        if c == '`' {
            in_code = !in_code;
            only_space = false;
        } else if !c.is_whitespace() {
            only_space = false;
        }
    }
    if let Some(s) = start {
        words.push((&text[s..], false));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    fn parse(doc: &str) -> Vec<Requirement> {
        match parse_requirements(doc) {
            Ok(reqs) => reqs,
            Err(err) => panic!("unexpected spec error: {err}"),
        }
    }

    fn check_keyword(text: &str, expect: Keyword) {
        let doc = format!("## 2. S\n\n- [X-1] {text}\n");
        let reqs = parse(&doc);
        assert_eq!(reqs.len(), 1, "{text}");
        assert_eq!(reqs[0].keyword, expect, "{text}");
    }

    #[test]
    fn recognises_each_keyword() {
        check_keyword("A device MUST drop it.", Keyword::Must);
        check_keyword("A device MUST NOT send it.", Keyword::MustNot);
        check_keyword("A device SHOULD log it.", Keyword::Should);
        check_keyword("A device SHOULD NOT log it.", Keyword::ShouldNot);
        check_keyword("A device MAY log it.", Keyword::May);
        check_keyword("A device MUST  NOT send it.", Keyword::MustNot);
    }

    #[test]
    fn keyword_strength() {
        assert!(Keyword::Must.is_mandatory());
        assert!(Keyword::MustNot.is_mandatory());
        assert!(!Keyword::Should.is_mandatory());
        assert!(!Keyword::ShouldNot.is_mandatory());
        assert!(!Keyword::May.is_mandatory());
        assert_eq!(Keyword::MustNot.to_string(), "MUST NOT");
    }

    #[test]
    fn ignores_lowercase_code_spans_and_identifiers() {
        check_keyword(
            "A device that must do `MAY` things MUST use MUSTARD_MAY and NOT_MAY.",
            Keyword::Must,
        );
        // "MUST, NOT" is MUST followed by an unrelated NOT.
        check_keyword("It MUST, NOT counting retries, stop.", Keyword::Must);
    }

    #[test]
    fn records_sections_titles_and_text() {
        let doc = "\
# Title

## 1. Intro

Prose that says MUST is not a requirement.

## 7. Record protection

[REC-1] A device MUST do
this across
lines.

### 7.2. Nonce and AAD

- [REC-2] A sender MUST NOT repeat
  a nonce.
- not a requirement
1. [REC-3] A receiver MAY accept it.

### Unnumbered notes

* [REC-4] A receiver SHOULD NOT log keys.
";
        let reqs = parse(doc);
        let ids: Vec<_> = reqs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["REC-1", "REC-2", "REC-3", "REC-4"]);
        assert_eq!(reqs[0].section, "7");
        assert_eq!(reqs[0].section_title, "Record protection");
        assert_eq!(reqs[0].text, "A device MUST do this across lines.");
        assert_eq!(reqs[1].section, "7.2");
        assert_eq!(reqs[1].section_title, "Nonce and AAD");
        assert_eq!(reqs[1].keyword, Keyword::MustNot);
        assert_eq!(reqs[1].text, "A sender MUST NOT repeat a nonce.");
        assert_eq!(reqs[2].keyword, Keyword::May);
        assert_eq!(
            reqs[3].section, "7.2",
            "unnumbered headings keep the section"
        );
        assert_eq!(reqs[3].chapter(), "7");
    }

    #[test]
    fn keyword_split_across_lines() {
        let reqs = parse("- [A-1] It MUST\n  NOT happen.\n");
        assert_eq!(reqs[0].keyword, Keyword::MustNot);
    }

    #[test]
    fn cross_references_are_not_requirements() {
        let doc = "\
## 2. Framing

- [FRAME-1] A receiver MUST NOT answer frames dropped under
  [FRAME-2] or [FRAME-3].
- [FRAME-2] It MUST drop them.

Text citing [FRAME-1] here.
[FRAME-3]: a reference-style link definition, not a requirement.

[FRAME-4]no space after the bracket, not a requirement.
";
        let reqs = parse(doc);
        let ids: Vec<_> = reqs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["FRAME-1", "FRAME-2"]);
        assert_eq!(
            reqs[0].text,
            "A receiver MUST NOT answer frames dropped under [FRAME-2] or [FRAME-3]."
        );
    }

    #[test]
    fn skips_code_blocks_and_tables() {
        let doc = "\
## 3. Discovery

```cddl
[DISC-9] MUST MUST
```

~~~~
[DISC-8] MUST
~~~~

| [DISC-7] | MUST |
|---|---|

- [DISC-1] A device MUST answer.
";
        let reqs = parse(doc);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].id, "DISC-1");
    }

    #[test]
    fn table_row_ends_a_requirement() {
        let reqs = parse("[A-1] It MUST work.\n| MUST | x |\n");
        assert_eq!(reqs[0].text, "It MUST work.");
    }

    #[test]
    fn rejects_duplicate_ids() {
        let doc = "## 2. A\n\n- [A-1] It MUST work.\n- [A-2] It MAY work.\n\n[A-1] It MUST too.\n";
        assert_eq!(
            parse_requirements(doc),
            Err(SpecError::DuplicateId {
                id: "A-1".into(),
                line: 6,
                first_line: 3,
            })
        );
    }

    #[test]
    fn rejects_missing_keyword() {
        let doc = "intro\n\n- [A-1] It must work.\n";
        assert_eq!(
            parse_requirements(doc),
            Err(SpecError::MissingKeyword {
                id: "A-1".into(),
                line: 3,
            })
        );
    }

    #[test]
    fn rejects_several_keywords() {
        let doc = "- [A-1] It MUST work and\n  MAY log.\n";
        let err = parse_requirements(doc).unwrap_err();
        assert_eq!(
            err,
            SpecError::MultipleKeywords {
                id: "A-1".into(),
                line: 1,
                found: vec![Keyword::Must, Keyword::May],
            }
        );
        let message = err.to_string();
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("MUST, MAY"), "{message}");
    }

    #[test]
    fn rejects_non_canonical_keywords() {
        for (word, text) in [
            ("SHALL", "It SHALL work."),
            ("SHALL NOT", "It SHALL NOT work."),
            ("REQUIRED", "It is REQUIRED."),
            ("RECOMMENDED", "It is RECOMMENDED."),
            ("NOT RECOMMENDED", "It is NOT RECOMMENDED."),
            ("OPTIONAL", "It is OPTIONAL."),
        ] {
            let doc = format!("- [A-1] {text}\n");
            assert_eq!(
                parse_requirements(&doc),
                Err(SpecError::NonCanonicalKeyword {
                    id: "A-1".into(),
                    line: 1,
                    word: word.into(),
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            "",
            "[",
            "[]",
            "[-1] MUST",
            "[a-1] MUST",
            "[A-] MUST",
            "- [A-1]",
            "#",
            "####### 1. too deep",
            "## 1.",
            "## .1 x",
            "## 1..2 x",
            "```",
            "```\n[A-1] MUST\n",
            "1.",
            "1) [A-1] MUST é",
            "- [É-1] MUST",
            "[A-1] é MUST `unterminated",
            "\u{feff}[A-1] MUST\r\n",
            "   # 2. ok\n[B-1] MAY",
        ];
        for doc in odd {
            let _ = parse_requirements(doc);
        }
        assert_eq!(parse("## 1. \n[A-1] MUST\n")[0].section, "1");
    }

    /// Which section each ID prefix belongs to.
    const PREFIX_CHAPTERS: &[(&str, &str)] = &[
        ("FRAME", "2"),
        ("DISC", "3"),
        ("ID", "4"),
        ("PAIR", "5"),
        ("HS", "6"),
        ("REC", "7"),
        ("REL", "8"),
        ("SESS", "9"),
        ("CAP", "10"),
        ("PERM", "11"),
        ("LIVE", "12"),
        ("ERR", "13"),
        ("CTRL", "14"),
        ("SEC", "15"),
        ("LINK", "16"),
        ("ZB", "16"),
        ("BLE", "16"),
        ("TIME", "17"),
    ];

    #[test]
    fn bundled_spec_is_valid() {
        let reqs = requirements();
        assert!(reqs.len() >= 100, "only {} requirements", reqs.len());

        let mut ids = HashSet::new();
        for req in &reqs {
            assert!(ids.insert(req.id.as_str()), "duplicate {}", req.id);
            let prefix = req.id.split('-').next().unwrap_or("");
            let chapter = PREFIX_CHAPTERS
                .iter()
                .find(|(p, _)| *p == prefix)
                .map(|(_, c)| *c);
            assert_eq!(
                chapter,
                Some(req.chapter()),
                "[{}] is in section {} ({})",
                req.id,
                req.section,
                req.section_title
            );
        }

        let mut musts: BTreeMap<u32, usize> = BTreeMap::new();
        for req in reqs.iter().filter(|r| r.keyword.is_mandatory()) {
            if let Ok(chapter) = req.chapter().parse() {
                *musts.entry(chapter).or_default() += 1;
            }
        }
        for chapter in 2..=14 {
            assert!(
                musts.get(&chapter).copied().unwrap_or(0) > 0,
                "section {chapter} has no MUST"
            );
        }
    }

    /// Capitalised keywords in informative text outside section 1, which quotes them when it
    /// defines them: elsewhere such a keyword is a normative statement that lost its ID.
    fn stray_keywords(markdown: &str) -> Vec<String> {
        scan(markdown)
            .prose
            .iter()
            .filter(|p| p.section.split('.').next() != Some("1"))
            .filter(|p| !find_keywords(&p.text).is_empty())
            .map(|p| format!("line {}: {}", p.line, p.text))
            .collect()
    }

    #[test]
    fn finds_keywords_outside_requirements() {
        let doc = "\
## 1. Conventions

The words MUST and MAY are defined here.

## 2. Framing

A frame MUST be short.

| a | b |
|---|---|
| x | SHOULD |

- [FRAME-1] A device MUST send frames.
";
        assert_eq!(
            stray_keywords(doc),
            ["line 7: A frame MUST be short.", "line 11: | x | SHOULD |"]
        );
    }

    #[test]
    fn bundled_spec_has_no_keywords_outside_requirements() {
        let stray = stray_keywords(SPEC_MARKDOWN);
        assert!(
            stray.is_empty(),
            "keywords outside requirements:\n{stray:#?}"
        );
    }
}
