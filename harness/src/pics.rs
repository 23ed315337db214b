//! PICS: what a DUT claims to implement, and the expressions that decide whether a case applies.
//!
//! A PICS (Protocol Implementation Conformance Statement) is a map of feature flags
//! (`DISC_COAP = true`, `TRANSPORT_BLE = false`, ...). The set of names is open: any upper-case
//! identifier is accepted, so a new spec feature does not need a harness release.
//!
//! A case declares when it applies with an [`Expr`] such as
//! `PERM && (SESS_MESSAGE || SESS_BYTES) && !TRANSPORT_BLE`. A name the DUT does not declare
//! evaluates to `false`: a DUT is only tested on what it claims.
//!
//! Grammar (usual precedence: `!` binds tightest, then `&&`, then `||`):
//!
//! ```text
//! expr    = and ( "||" and )*
//! and     = unary ( "&&" unary )*
//! unary   = "!" unary | primary
//! primary = NAME | "true" | "false" | "(" expr ")"
//! NAME    = [A-Z] [A-Z0-9_]*
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How deeply parentheses and `!` may nest before the parser refuses (protects the stack).
const MAX_DEPTH: usize = 64;

/// How many tokens an expression may have (bounds every recursion over the tree, too).
const MAX_TOKENS: usize = 512;

/// Whether `name` is a valid PICS name: an upper-case ASCII letter followed by upper-case ASCII
/// letters, digits or underscores.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A name that is not a valid PICS name (see [`is_valid_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid PICS name `{name}`: PICS names are upper-case identifiers \
     (A-Z, 0-9 and _, starting with a letter), e.g. `{suggestion}`"
)]
pub struct InvalidPicsName {
    /// The rejected name.
    pub name: String,
    /// A corrected spelling to suggest.
    pub suggestion: String,
}

impl InvalidPicsName {
    fn new(name: &str) -> Self {
        let mut suggestion: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        if !suggestion.starts_with(|c: char| c.is_ascii_uppercase()) {
            suggestion.insert_str(0, "F_");
        }
        InvalidPicsName {
            name: name.to_owned(),
            suggestion,
        }
    }
}

/// Every PICS name the suite knows, with what declaring it `true` claims. A rig that declares
/// another name is refused ([`crate::rig::Rig::load`]): a typo (`PREM`) would otherwise turn
/// every case gated on the real name NA without a word. The conformance crate's tests check
/// that every name a case's PICS expression uses is listed here.
pub const KNOWN: &[(&str, &str)] = &[
    ("DISC_COAP", "CoAP discovery on IP (spec 3)"),
    ("PAIR_PIN", "PIN pairing with SPAKE2 (spec 5)"),
    (
        "SESS_MESSAGE",
        "message sessions: reliable, ordered (spec 9)",
    ),
    (
        "SESS_BYTES",
        "bytes sessions: reliable, large, fragmented (spec 9)",
    ),
    (
        "SESS_STREAM",
        "stream sessions: unreliable, latest-wins (spec 9.4)",
    ),
    ("PERM", "permission requests and grants (spec 11)"),
    ("PERM_SCOPE_ONCE", "the `once` permission scope (spec 11.3)"),
    (
        "PERM_SCOPE_SESSION",
        "the `session` permission scope (spec 11.3)",
    ),
    (
        "PERM_SCOPE_UNTIL_REVOKED",
        "the `until_revoked` permission scope (spec 11.3)",
    ),
    (
        "LIVE_HEARTBEAT",
        "heartbeats and device-lost events (spec 12)",
    ),
    ("CTRL", "the tester control protocol (spec 14)"),
    ("TRANSPORT_UDP", "SoftBus over UDP (spec 2.1)"),
    ("TRANSPORT_TCP", "SoftBus over TCP (spec 2.1)"),
    ("TRANSPORT_BLE", "SoftBus over Bluetooth LE (spec 16.3)"),
    ("TRANSPORT_ZIGBEE", "SoftBus over Zigbee (spec 16.2)"),
    (
        "BRIDGE_ZCL",
        "bridges ZCL devices as capabilities (spec 10.3)",
    ),
    (
        "TIME",
        "clock synchronization and timed stream playout (spec 17)",
    ),
];

/// Whether `name` is in [`KNOWN`].
pub fn is_known(name: &str) -> bool {
    KNOWN.iter().any(|(k, _)| *k == name)
}

/// The known PICS name closest to `name` (edit distance at most 3), for "did you mean".
pub fn nearest_known(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .map(|(k, _)| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (PICS names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A DUT's PICS: feature name to "implemented?".
///
/// Serialises as a plain map (`{"DISC_COAP": true, ...}`), sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, bool>", into = "BTreeMap<String, bool>")]
pub struct Pics(BTreeMap<String, bool>);

impl Pics {
    /// An empty PICS (which a run refuses: see [`crate::rig::Rig::require_pics`]).
    pub fn new() -> Self {
        Pics(BTreeMap::new())
    }

    /// Declares `name` as implemented (`true`) or not (`false`).
    pub fn insert(&mut self, name: &str, implemented: bool) -> Result<(), InvalidPicsName> {
        if !is_valid_name(name) {
            return Err(InvalidPicsName::new(name));
        }
        self.0.insert(name.to_owned(), implemented);
        Ok(())
    }

    /// Whether the DUT claims `name`; an undeclared name is `false`.
    pub fn get(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }

    /// Whether the PICS mentions `name` at all (as `true` or `false`).
    pub fn declares(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Whether no feature is declared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of declared features.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Declared features in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The underlying sorted map (as written into reports).
    pub fn as_map(&self) -> &BTreeMap<String, bool> {
        &self.0
    }

    /// Whether `expr` holds for this DUT (shorthand for [`Expr::eval`]).
    pub fn satisfies(&self, expr: &Expr) -> bool {
        expr.eval(self)
    }

    /// SHA-256 (lower-case hex) of the canonical serialisation: compact JSON of the sorted map.
    /// Equal PICS give equal hashes whatever the order or comments of the rig file.
    pub fn hash(&self) -> String {
        // Serialising a map of strings to bools cannot fail.
        let canonical = serde_json::to_vec(&self.0).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

impl TryFrom<BTreeMap<String, bool>> for Pics {
    type Error = InvalidPicsName;

    fn try_from(map: BTreeMap<String, bool>) -> Result<Self, Self::Error> {
        if let Some(bad) = map.keys().find(|k| !is_valid_name(k)) {
            return Err(InvalidPicsName::new(bad));
        }
        Ok(Pics(map))
    }
}

impl From<Pics> for BTreeMap<String, bool> {
    fn from(pics: Pics) -> Self {
        pics.0
    }
}

/// A parsed PICS expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// The literal `true` (a case that always applies).
    True,
    /// The literal `false`.
    False,
    /// A PICS name: true when the DUT declares it `true`.
    Name(String),
    /// `!e`
    Not(Box<Expr>),
    /// `a && b`
    And(Box<Expr>, Box<Expr>),
    /// `a || b`
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Parses an expression; see the module docs for the grammar.
    pub fn parse(input: &str) -> Result<Expr, ExprError> {
        let tokens = tokenize(input)?;
        let mut parser = Parser {
            input,
            tokens,
            pos: 0,
            depth: 0,
        };
        let expr = parser.or()?;
        match parser.peek() {
            None => Ok(expr),
            Some(tok) => Err(parser.error_at(
                tok.start,
                ExprErrorKind::UnexpectedToken {
                    found: tok.kind.to_string(),
                    expected: "`&&`, `||` or the end of the expression",
                },
            )),
        }
    }

    /// Evaluates against a DUT's PICS; an undeclared name is `false`.
    pub fn eval(&self, pics: &Pics) -> bool {
        match self {
            Expr::True => true,
            Expr::False => false,
            Expr::Name(n) => pics.get(n),
            Expr::Not(e) => !e.eval(pics),
            Expr::And(a, b) => a.eval(pics) && b.eval(pics),
            Expr::Or(a, b) => a.eval(pics) || b.eval(pics),
        }
    }

    /// Every PICS name the expression mentions, sorted.
    pub fn names(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match self {
            Expr::True | Expr::False => {}
            Expr::Name(n) => {
                out.insert(n);
            }
            Expr::Not(e) => e.collect_names(out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
        }
    }

    /// A one-line explanation for an NA reason, e.g.
    /// ``PICS `PERM && SESS_MESSAGE` is false: PERM=true, SESS_MESSAGE=false``.
    /// Undeclared names are shown as `NAME=undeclared`.
    pub fn explain(&self, pics: &Pics) -> String {
        let values: Vec<String> = self
            .names()
            .into_iter()
            .map(|n| {
                if pics.declares(n) {
                    format!("{n}={}", pics.get(n))
                } else {
                    format!("{n}=undeclared")
                }
            })
            .collect();
        let mut out = format!("PICS `{self}` is {}", self.eval(pics));
        if !values.is_empty() {
            out.push_str(": ");
            out.push_str(&values.join(", "));
        }
        out
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            Expr::Not(..) => 3,
            Expr::True | Expr::False | Expr::Name(..) => 4,
        }
    }

    fn fmt_child(&self, child: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if child.precedence() < self.precedence() {
            write!(f, "({child})")
        } else {
            write!(f, "{child}")
        }
    }
}

/// Canonical text with the fewest parentheses; parsing it gives back an equal `Expr`
/// (up to the associativity of `&&` and `||`, which does not change the meaning).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::True => f.write_str("true"),
            Expr::False => f.write_str("false"),
            Expr::Name(n) => f.write_str(n),
            Expr::Not(e) => {
                f.write_str("!")?;
                self.fmt_child(e, f)
            }
            Expr::And(a, b) => {
                self.fmt_child(a, f)?;
                f.write_str(" && ")?;
                self.fmt_child(b, f)
            }
            Expr::Or(a, b) => {
                self.fmt_child(a, f)?;
                f.write_str(" || ")?;
                self.fmt_child(b, f)
            }
        }
    }
}

impl FromStr for Expr {
    type Err = ExprError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expr::parse(s)
    }
}

/// Why a PICS expression did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// The whole expression as given.
    pub input: String,
    /// Byte offset of the problem in `input`.
    pub offset: usize,
    /// 1-based character column of the problem (for messages).
    pub column: usize,
    /// What was wrong.
    pub kind: ExprErrorKind,
}

/// The kinds of PICS expression parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExprErrorKind {
    /// The expression is empty or only whitespace.
    Empty,
    /// A character that is not part of the grammar.
    UnexpectedChar(char),
    /// A single `&` or `|` (the operators are `&&` and `||`).
    SingleOperator(char),
    /// A name that is not upper case, e.g. `disc_coap`.
    LowercaseName(String),
    /// The expression ended where more was needed.
    UnexpectedEnd {
        /// What the parser wanted next.
        expected: &'static str,
    },
    /// A token where another was needed.
    UnexpectedToken {
        /// The token found.
        found: String,
        /// What the parser wanted.
        expected: &'static str,
    },
    /// A `(` without its `)`.
    UnclosedParen,
    /// Nesting deeper than the parser allows.
    TooDeep,
    /// More tokens than the parser allows.
    TooLong,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid PICS expression `{}` at column {}: ",
            self.input, self.column
        )?;
        match &self.kind {
            ExprErrorKind::Empty => {
                f.write_str("the expression is empty; write `true` for a case that always applies")
            }
            ExprErrorKind::UnexpectedChar(c) => write!(
                f,
                "unexpected character {c:?}; use PICS names, `!`, `&&`, `||` and parentheses"
            ),
            ExprErrorKind::SingleOperator(c) => {
                write!(f, "single `{c}`; the operator is `{c}{c}`")
            }
            ExprErrorKind::LowercaseName(n) => write!(
                f,
                "`{n}` is not a PICS name; PICS names are upper case, did you mean `{}`?",
                n.to_ascii_uppercase()
            ),
            ExprErrorKind::UnexpectedEnd { expected } => {
                write!(f, "the expression ended; expected {expected}")
            }
            ExprErrorKind::UnexpectedToken { found, expected } => {
                write!(f, "found {found}, expected {expected}")
            }
            ExprErrorKind::UnclosedParen => f.write_str("this `(` is never closed"),
            ExprErrorKind::TooDeep => write!(
                f,
                "nested more than {MAX_DEPTH} levels deep; simplify the expression"
            ),
            ExprErrorKind::TooLong => write!(
                f,
                "longer than {MAX_TOKENS} tokens; simplify the expression"
            ),
        }
    }
}

impl std::error::Error for ExprError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    Name(String),
    True,
    False,
    Not,
    And,
    Or,
    Open,
    Close,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Name(n) => write!(f, "name `{n}`"),
            TokenKind::True => f.write_str("`true`"),
            TokenKind::False => f.write_str("`false`"),
            TokenKind::Not => f.write_str("`!`"),
            TokenKind::And => f.write_str("`&&`"),
            TokenKind::Or => f.write_str("`||`"),
            TokenKind::Open => f.write_str("`(`"),
            TokenKind::Close => f.write_str("`)`"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    start: usize,
}

fn column_of(input: &str, offset: usize) -> usize {
    input
        .get(..offset)
        .map_or(offset, |prefix| prefix.chars().count())
        + 1
}

fn make_error(input: &str, offset: usize, kind: ExprErrorKind) -> ExprError {
    ExprError {
        input: input.to_owned(),
        offset,
        column: column_of(input, offset),
        kind,
    }
}

fn tokenize(input: &str) -> Result<Vec<Token>, ExprError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let kind = match c {
            c if c.is_whitespace() => continue,
            '!' => TokenKind::Not,
            '(' => TokenKind::Open,
            ')' => TokenKind::Close,
            '&' | '|' => {
                if chars.next_if(|&(_, next)| next == c).is_none() {
                    return Err(make_error(input, start, ExprErrorKind::SingleOperator(c)));
                }
                if c == '&' {
                    TokenKind::And
                } else {
                    TokenKind::Or
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = start + c.len_utf8();
                while let Some((i, n)) =
                    chars.next_if(|&(_, n)| n.is_ascii_alphanumeric() || n == '_')
                {
                    end = i + n.len_utf8();
                }
                let word = &input[start..end];
                match word {
                    "true" => TokenKind::True,
                    "false" => TokenKind::False,
                    w if is_valid_name(w) => TokenKind::Name(w.to_owned()),
                    w => {
                        return Err(make_error(
                            input,
                            start,
                            ExprErrorKind::LowercaseName(w.to_owned()),
                        ))
                    }
                }
            }
            other => {
                return Err(make_error(
                    input,
                    start,
                    ExprErrorKind::UnexpectedChar(other),
                ))
            }
        };
        if tokens.len() == MAX_TOKENS {
            return Err(make_error(input, start, ExprErrorKind::TooLong));
        }
        tokens.push(Token { kind, start });
    }
    if tokens.is_empty() {
        return Err(make_error(input, 0, ExprErrorKind::Empty));
    }
    Ok(tokens)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn error_at(&self, offset: usize, kind: ExprErrorKind) -> ExprError {
        make_error(self.input, offset, kind)
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.peek().is_some_and(|t| &t.kind == kind) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.and()?;
        while self.eat(&TokenKind::Or) {
            let rhs = self.and()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.unary()?;
        while self.eat(&TokenKind::And) {
            let rhs = self.unary()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn enter(&mut self, offset: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(offset, ExprErrorKind::TooDeep));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        const EXPECTED: &str = "a PICS name, `true`, `false`, `!` or `(`";
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_at(
                self.input.len(),
                ExprErrorKind::UnexpectedEnd { expected: EXPECTED },
            ));
        };
        self.pos += 1;
        match tok.kind {
            TokenKind::Name(n) => Ok(Expr::Name(n)),
            TokenKind::True => Ok(Expr::True),
            TokenKind::False => Ok(Expr::False),
            TokenKind::Not => {
                self.enter(tok.start)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            TokenKind::Open => {
                self.enter(tok.start)?;
                let inner = self.or()?;
                self.depth -= 1;
                if self.eat(&TokenKind::Close) {
                    Ok(inner)
                } else {
                    match self.peek() {
                        None => Err(self.error_at(tok.start, ExprErrorKind::UnclosedParen)),
                        Some(t) => Err(self.error_at(
                            t.start,
                            ExprErrorKind::UnexpectedToken {
                                found: t.kind.to_string(),
                                expected: "`)`, `&&` or `||`",
                            },
                        )),
                    }
                }
            }
            other => Err(self.error_at(
                tok.start,
                ExprErrorKind::UnexpectedToken {
                    found: other.to_string(),
                    expected: EXPECTED,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_misspelt_name_finds_the_known_one() {
        assert_eq!(nearest_known("PREM"), Some("PERM"));
        assert_eq!(nearest_known("SESS_MESAGE"), Some("SESS_MESSAGE"));
        assert_eq!(nearest_known("TRANSPORT_UPD"), Some("TRANSPORT_UDP"));
        assert_eq!(nearest_known("SOMETHING_ELSE_ENTIRELY"), None);
        assert!(is_known("TIME") && !is_known("PREM"));
    }

    use super::*;

    fn pics(pairs: &[(&str, bool)]) -> Pics {
        let mut p = Pics::new();
        for (k, v) in pairs {
            p.insert(k, *v).unwrap();
        }
        p
    }

    fn check(expr: &str, pairs: &[(&str, bool)], expected: bool) {
        let e = Expr::parse(expr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.eval(&pics(pairs)), expected, "{expr} with {pairs:?}");
    }

    #[test]
    fn evaluates_with_precedence() {
        let all = [
            ("PERM", true),
            ("SESS_MESSAGE", false),
            ("SESS_BYTES", true),
            ("TRANSPORT_BLE", false),
        ];
        check(
            "PERM && (SESS_MESSAGE || SESS_BYTES) && !TRANSPORT_BLE",
            &all,
            true,
        );
        check("PERM && SESS_MESSAGE || SESS_BYTES", &all, true);
        check("PERM && (SESS_MESSAGE || TRANSPORT_BLE)", &all, false);
        check("!!PERM", &all, true);
        check("!PERM || SESS_BYTES && TRANSPORT_BLE", &all, false);
        check("true", &[], true);
        check("false || true", &[], true);
    }

    #[test]
    fn undeclared_names_are_false() {
        check("MYSTERY", &[("PERM", true)], false);
        check("!MYSTERY", &[("PERM", true)], true);
    }

    #[test]
    fn display_round_trips() {
        for src in [
            "PERM && (SESS_MESSAGE || SESS_BYTES) && !TRANSPORT_BLE",
            "!(A || B) && C",
            "A || B && C",
            "(A || B) && C",
            "!A",
            "true",
        ] {
            let e = Expr::parse(src).unwrap();
            let again = Expr::parse(&e.to_string()).unwrap();
            assert_eq!(e, again, "{src} -> {e}");
        }
        assert_eq!(
            Expr::parse("((A)) && ((B || C))").unwrap().to_string(),
            "A && (B || C)"
        );
    }

    #[test]
    fn names_and_explain() {
        let e = Expr::parse("PERM && (SESS_MESSAGE || NOPE)").unwrap();
        assert_eq!(
            e.names().into_iter().collect::<Vec<_>>(),
            ["NOPE", "PERM", "SESS_MESSAGE"]
        );
        assert_eq!(
            e.explain(&pics(&[("PERM", true), ("SESS_MESSAGE", false)])),
            "PICS `PERM && (SESS_MESSAGE || NOPE)` is false: \
             NOPE=undeclared, PERM=true, SESS_MESSAGE=false"
        );
    }

    fn err(src: &str) -> ExprError {
        Expr::parse(src).expect_err(src)
    }

    #[test]
    fn parse_errors_carry_position() {
        let e = err("PERM && ");
        assert!(matches!(e.kind, ExprErrorKind::UnexpectedEnd { .. }));
        assert_eq!(e.offset, 8);

        let e = err("PERM & SESS");
        assert_eq!(e.kind, ExprErrorKind::SingleOperator('&'));
        assert_eq!(e.column, 6);

        let e = err("(PERM || SESS");
        assert_eq!(e.kind, ExprErrorKind::UnclosedParen);
        assert_eq!(e.column, 1);

        let e = err("PERM SESS");
        assert!(matches!(e.kind, ExprErrorKind::UnexpectedToken { .. }));
        assert_eq!(e.column, 6);

        let e = err("perm");
        assert_eq!(e.kind, ExprErrorKind::LowercaseName("perm".into()));
        assert!(e.to_string().contains("did you mean `PERM`"), "{e}");

        let e = err("PERM && é");
        assert_eq!(e.kind, ExprErrorKind::UnexpectedChar('é'));
        assert_eq!(e.column, 9);

        assert_eq!(err("   ").kind, ExprErrorKind::Empty);
        assert!(matches!(
            err(")").kind,
            ExprErrorKind::UnexpectedToken { .. }
        ));
        assert!(matches!(
            err("(A))").kind,
            ExprErrorKind::UnexpectedToken { .. }
        ));
        assert!(matches!(
            err("A (B)").kind,
            ExprErrorKind::UnexpectedToken { .. }
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let src = format!("{}A{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(err(&src).kind, ExprErrorKind::TooDeep);
        let src = format!("{}A", "!".repeat(100));
        assert_eq!(err(&src).kind, ExprErrorKind::TooDeep);
        let src = vec!["A"; 200].join(" && ");
        assert!(Expr::parse(&src).is_ok());
        let src = vec!["A"; 10_000].join(" && ");
        assert_eq!(err(&src).kind, ExprErrorKind::TooLong);
    }

    #[test]
    fn pics_names_are_validated_and_hash_is_canonical() {
        let mut p = Pics::new();
        let e = p.insert("disc-coap", true).unwrap_err();
        assert_eq!(e.suggestion, "DISC_COAP");
        let a = pics(&[("A", true), ("B", false)]);
        let b = pics(&[("B", false), ("A", true)]);
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), pics(&[("A", true), ("B", true)]).hash());
        assert_eq!(a.hash().len(), 64);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"A":true,"B":false}"#);
        assert_eq!(serde_json::from_str::<Pics>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Pics>(r#"{"a":true}"#).is_err());
    }
}
