//! Lexing and parsing of Go `text/template` source into a tree.

use super::value::push;
use super::value::Value;

/// One operand of a command.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.` (empty) or `.a.b`.
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone is the root).
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    /// A literal (string, number, bool, nil).
    Lit(Value),
    /// `(pipeline).a.b`.
    Sub(Box<Pipe>, Vec<String>),
    /// `func.a.b`: a function called without arguments, then fields or a method (`scratch.Get`).
    Chain(String, Vec<String>),
}

/// A command: operands, with the byte offset of its start.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub args: Vec<Arg>,
    pub at: usize,
    pub src: String,
}

/// A pipeline with its optional declarations.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

/// A node of the template tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    /// `{{template "name" pipeline}}` (also the call half of `{{block}}`), at its offset.
    Template(String, Option<Pipe>, usize),
    /// `{{break}}` inside a range.
    Break,
    /// `{{continue}}` inside a range.
    Continue,
}

/// A parsed template: its body and the templates it defines (`define`, `block`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub root: Vec<Node>,
    pub defs: Defs,
}

/// The named templates, sorted by name: a few entries, so a sorted list rather than a map
/// (a `BTreeMap` of this type brought its own insert, search and drop code, about 3 KB).
#[derive(Debug, Clone, Default)]
pub(crate) struct Defs(Vec<(String, Vec<Node>)>);

impl Defs {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Adds or replaces the template `name`.
    fn insert(&mut self, name: String, body: Vec<Node>) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = body,
            Err(i) => self.0.insert(i, (name, body)),
        }
    }

    /// The body of the template `name`.
    pub fn get(&self, name: &str) -> Option<&Vec<Node>> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// The bodies in name order.
    fn values(&self) -> impl Iterator<Item = &Vec<Node>> {
        self.0.iter().map(|(_, b)| b)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Lit(Value),
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
}

enum Item {
    Text(String),
    /// Tokens, the offset of `{{` and the offset where the closing delimiter starts.
    Action(Vec<(Tok, usize)>, usize, usize),
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Line (1-based) and column (byte offset in the line, as Go's `ErrorContext`) of `off`.
pub(crate) fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..off.min(text.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(off, |p| off - p - 1);
    (line, col)
}

type PResult<T> = Result<T, (usize, String)>;

fn lex(text: &str) -> PResult<Vec<Item>> {
    let b = text.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    let mut trim_next = false;
    loop {
        let start = text[i..].find("{{").map(|s| s + i);
        let end = start.unwrap_or(text.len());
        let mut t = &text[i..end];
        if trim_next {
            t = t.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(s) = start else {
            if !t.is_empty() {
                items.push(Item::Text(t.to_string()));
            }
            return Ok(items);
        };
        let mut j = s + 2;
        if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|&c| is_space(c)) {
            t = t.trim_end_matches([' ', '\t', '\r', '\n']);
            j += 2;
        }
        if !t.is_empty() {
            items.push(Item::Text(t.to_string()));
        }
        let (after, trim) = if text[j..].starts_with("/*") {
            lex_comment(text, j)?
        } else {
            let (toks, after, trim, end) = lex_action(text, j)?;
            items.push(Item::Action(toks, s, end));
            (after, trim)
        };
        trim_next = trim;
        i = after;
    }
}

fn right_delim(text: &str, p: usize) -> Option<(usize, bool)> {
    let b = text.as_bytes();
    if text[p..].starts_with("}}") {
        return Some((p + 2, false));
    }
    if is_space(b[p]) && text[p + 1..].starts_with("-}}") {
        return Some((p + 4, true));
    }
    None
}

fn lex_comment(text: &str, j: usize) -> PResult<(usize, bool)> {
    let Some(e) = text[j + 2..].find("*/").map(|e| e + j + 4) else {
        return Err((j, "unclosed comment".into()));
    };
    if e < text.len() {
        if let Some(r) = right_delim(text, e) {
            return Ok(r);
        }
    }
    Err((j, "comment ends before closing delimiter".into()))
}

fn ident_end(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && (b[p].is_ascii_alphanumeric() || b[p] == b'_') {
        p += 1;
    }
    p
}

fn field_chain(text: &str, mut p: usize) -> (Vec<String>, usize) {
    let b = text.as_bytes();
    let mut names = Vec::new();
    while p < b.len() && b[p] == b'.' {
        let e = ident_end(b, p + 1);
        if e == p + 1 {
            break;
        }
        names.push(text[p + 1..e].to_string());
        p = e;
    }
    (names, p)
}

type Lexed = (Vec<(Tok, usize)>, usize, bool, usize);

fn lex_action(text: &str, mut p: usize) -> PResult<Lexed> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    loop {
        if p >= b.len() {
            return Err((p, "unclosed action".into()));
        }
        if let Some((after, trim)) = right_delim(text, p) {
            return Ok((toks, after, trim, p));
        }
        let c = b[p];
        let at = p;
        let tok = match c {
            _ if is_space(c) => {
                p += 1;
                continue;
            }
            b'|' => (Tok::Pipe, p + 1),
            b'(' => (Tok::LParen, p + 1),
            b')' => (Tok::RParen, p + 1),
            b',' => (Tok::Comma, p + 1),
            b'=' => (Tok::Assign, p + 1),
            b':' if b.get(p + 1) == Some(&b'=') => (Tok::Declare, p + 2),
            b'"' | b'`' => lex_string(text, p)?,
            b'.' if !b.get(p + 1).is_some_and(|d| d.is_ascii_digit()) => {
                let (names, e) = field_chain(text, p);
                (Tok::Field(names), if e == p { p + 1 } else { e })
            }
            b'$' => {
                let e = ident_end(b, p + 1);
                let (names, e2) = field_chain(text, e);
                (Tok::Var(text[p..e].to_string(), names), e2)
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => lex_number(text, p)?,
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let e = ident_end(b, p);
                let tok = match &text[p..e] {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Lit(Value::Nil),
                    w => Tok::Ident(w.to_string()),
                };
                (tok, e)
            }
            _ => {
                let ch = text[p..].chars().next().unwrap_or('?');
                return Err((p, format!("unexpected {ch:?} in command")));
            }
        };
        toks.push((tok.0, at));
        p = tok.1;
    }
}

fn lex_string(text: &str, p: usize) -> PResult<(Tok, usize)> {
    let b = text.as_bytes();
    if b[p] == b'`' {
        return match text[p + 1..].find('`') {
            Some(e) => Ok((
                Tok::Lit(Value::Str(text[p + 1..p + 1 + e].into())),
                p + e + 2,
            )),
            None => Err((p, "unterminated raw quoted string".into())),
        };
    }
    let mut out = String::new();
    let mut chars = text[p + 1..].char_indices();
    while let Some((k, ch)) = chars.next() {
        match ch {
            '"' => return Ok((Tok::Lit(Value::Str(out)), p + 1 + k + 1)),
            '\n' => break,
            '\\' => {
                let Some(c) = unescape(&mut chars) else {
                    return Err((p, "bad escape in quoted string".into()));
                };
                push(&mut out, c);
            }
            _ => push(&mut out, ch),
        }
    }
    Err((p, "unterminated quoted string".into()))
}

/// One escape of Go's `strconv.Unquote` after the backslash (`\xhh` and octal only as ASCII).
fn unescape(chars: &mut std::str::CharIndices<'_>) -> Option<char> {
    let (_, c) = chars.next()?;
    let mut hex = |n: usize| -> Option<char> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v * 16 + chars.next()?.1.to_digit(16)?;
        }
        char::from_u32(v)
    };
    Some(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'v' => '\u{b}',
        '\\' | '"' | '\'' => c,
        'x' => hex(2).filter(char::is_ascii)?,
        'u' => hex(4)?,
        'U' => hex(8)?,
        '0'..='7' => {
            let mut v = c.to_digit(8)?;
            for _ in 0..2 {
                v = v * 8 + chars.next()?.1.to_digit(8)?;
            }
            char::from_u32(v).filter(char::is_ascii)?
        }
        _ => return None,
    })
}

fn lex_number(text: &str, p: usize) -> PResult<(Tok, usize)> {
    let b = text.as_bytes();
    let mut e = p;
    if matches!(b[e], b'+' | b'-') {
        e += 1;
    }
    let hex = text[e..].starts_with("0x") || text[e..].starts_with("0X");
    while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'_') {
        e += 1;
        // an exponent's sign belongs to the number
        if !hex && matches!(b[e - 1], b'e' | b'E') && matches!(b.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
    }
    let s = &text[p..e];
    let bad = || (p, format!("bad number syntax: {s:?}"));
    let v = if let Ok(i) = s.parse::<i64>() {
        Value::Int(i)
    } else if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Value::Int(i64::from_str_radix(&h.replace('_', ""), 16).map_err(|_| bad())?)
    } else if s.contains(['.', 'e', 'E']) {
        let f = super::float::parse(s).ok_or_else(bad)?;
        if !f.is_finite() {
            return Err(bad());
        }
        Value::Float(f)
    } else {
        return Err((p, format!("bad number syntax or integer overflow: {s:?}")));
    };
    Ok((Tok::Lit(v), e))
}

/// The parser over lexed items, with the variables in scope.
struct Parser<'t> {
    text: &'t str,
    items: Vec<Item>,
    pos: usize,
    vars: Vec<String>,
    /// How many `range`s enclose the current position (`break`/`continue` need one).
    ranges: usize,
    /// Where the current action's closing delimiter starts.
    act_end: usize,
    defs: Defs,
    check: &'t dyn Fn(&str) -> Result<(), String>,
}

/// What ended a list: `{{end}}` or `{{else ...}}` with the tokens after `else`.
enum Stop {
    Eof,
    End(usize),
    Else(Vec<(Tok, usize)>, usize),
}

/// Parses `text` into a tree, or the byte offset and message of the first error. `check`
/// answers whether a function name may be called (Go refuses unknown functions at parse time).
pub(crate) fn parse(text: &str, check: &dyn Fn(&str) -> Result<(), String>) -> PResult<Tree> {
    let items = lex(text)?;
    let mut p = Parser {
        text,
        items,
        pos: 0,
        vars: vec!["$".into()],
        ranges: 0,
        act_end: 0,
        defs: Default::default(),
        check,
    };
    let (root, stop) = p.list(true)?;
    match stop {
        Stop::Eof => {}
        Stop::End(at) => return Err((at, "unexpected {{end}}".into())),
        Stop::Else(_, at) => return Err((at, "unexpected {{else}}".into())),
    }
    let tree = Tree { root, defs: p.defs };
    called_templates_exist(&tree)?;
    Ok(tree)
}

/// Go finds a missing `{{template "x"}}` only when it runs; we say so before any read.
fn called_templates_exist(tree: &Tree) -> PResult<()> {
    fn walk(nodes: &[Node], tree: &Tree) -> PResult<()> {
        for n in nodes {
            match n {
                Node::Template(name, _, at) if tree.defs.get(name).is_none() => {
                    return Err((*at, format!("no such template {name:?}")))
                }
                Node::If(_, a, b) | Node::Range(_, a, b) | Node::With(_, a, b) => {
                    walk(a, tree)?;
                    walk(b, tree)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(&tree.root, tree)?;
    for body in tree.defs.values() {
        walk(body, tree)?;
    }
    Ok(())
}

fn template_name(toks: &[(Tok, usize)], at: usize, kw: &str) -> PResult<String> {
    match toks.first() {
        Some((Tok::Lit(Value::Str(s)), _)) => Ok(s.clone()),
        _ => Err((at, format!("{{{{{kw}}}}} needs a quoted template name"))),
    }
}

impl Parser<'_> {
    /// A list of nodes up to `{{end}}`, `{{else}}` or the end; `top` allows `{{define}}`.
    fn list(&mut self, top: bool) -> PResult<(Vec<Node>, Stop)> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.pos], Item::Text(String::new()));
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(toks, at, end) => {
                    self.act_end = end;
                    let word = match toks.first() {
                        None => return Err((at, "missing value for command".into())),
                        Some((Tok::Ident(w), _)) => w.clone(),
                        Some(_) => String::new(),
                    };
                    match word.as_str() {
                        "end" | "break" | "continue" if toks.len() > 1 => {
                            return Err((at, format!("unexpected tokens after {word}")));
                        }
                        "end" => return Ok((nodes, Stop::End(at))),
                        "else" => {
                            // moved, not copied: no clone code for tokens
                            let mut rest = toks;
                            rest.remove(0);
                            return Ok((nodes, Stop::Else(rest, at)));
                        }
                        "if" | "range" | "with" => {
                            nodes.push(self.control(&word, &toks[1..], at)?)
                        }
                        "break" | "continue" if self.ranges == 0 => {
                            return Err((at, format!("{{{{{word}}}}} outside {{{{range}}}}")));
                        }
                        "break" => nodes.push(Node::Break),
                        "continue" => nodes.push(Node::Continue),
                        "define" if top => self.define(&toks[1..], at)?,
                        "define" => {
                            return Err((at, "{{define}} is allowed only at top level".into()))
                        }
                        "template" => nodes.push(self.call_template(&toks[1..], at)?),
                        "block" => {
                            let call = self.call_template(&toks[1..], at)?;
                            if let Node::Template(name, ..) = &call {
                                let name = name.clone();
                                self.body(&name, at)?;
                            }
                            nodes.push(call);
                        }
                        _ => nodes.push(Node::Action(self.pipe(&toks, at, false)?)),
                    }
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// `{{define "name"}}body{{end}}`.
    fn define(&mut self, toks: &[(Tok, usize)], at: usize) -> PResult<()> {
        let name = template_name(toks, at, "define")?;
        if toks.len() > 1 {
            return Err((at, "unexpected tokens after the define's name".into()));
        }
        self.body(&name, at)
    }

    /// The body of a `define` or `block` up to its `{{end}}`, in a scope of its own.
    fn body(&mut self, name: &str, at: usize) -> PResult<()> {
        let vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let ranges = std::mem::replace(&mut self.ranges, 0);
        let (body, stop) = self.list(false)?;
        self.vars = vars;
        self.ranges = ranges;
        match stop {
            Stop::End(_) => {
                self.defs.insert(name.to_string(), body);
                Ok(())
            }
            Stop::Eof => Err((at, format!("unexpected EOF in the definition of {name:?}"))),
            Stop::Else(_, eat) => Err((eat, format!("unexpected {{{{else}}}} in {name:?}"))),
        }
    }

    /// `{{template "name"}}` or `{{template "name" pipeline}}`.
    fn call_template(&mut self, toks: &[(Tok, usize)], at: usize) -> PResult<Node> {
        let name = template_name(toks, at, "template")?;
        let pipe = if toks.len() > 1 {
            Some(self.pipe(&toks[1..], at, false)?)
        } else {
            None
        };
        Ok(Node::Template(name, pipe, at))
    }

    fn control(&mut self, kw: &str, toks: &[(Tok, usize)], at: usize) -> PResult<Node> {
        let mark = self.vars.len();
        let pipe = self.pipe(toks, at, kw == "range")?;
        if pipe.cmds.is_empty() {
            return Err((at, format!("missing value for {kw}")));
        }
        self.ranges += usize::from(kw == "range");
        let body = self.list(false);
        self.ranges -= usize::from(kw == "range");
        let (body, stop) = body?;
        let else_ = match stop {
            Stop::Eof => {
                return Err((
                    at,
                    format!("unexpected EOF: {{{{{kw}}}}} without {{{{end}}}}"),
                ))
            }
            Stop::End(_) => Vec::new(),
            Stop::Else(rest, eat) if rest.is_empty() => {
                self.vars.truncate(mark);
                match self.list(false)? {
                    (l, Stop::End(_)) => l,
                    _ => return Err((eat, "expected {{end}} after {{else}}".into())),
                }
            }
            Stop::Else(rest, eat) => match rest.first() {
                Some((Tok::Ident(w), _)) if w == kw && kw != "range" => {
                    self.vars.truncate(mark);
                    vec![self.control(kw, &rest[1..], eat)?]
                }
                _ => return Err((eat, "unexpected tokens after else".into())),
            },
        };
        self.vars.truncate(mark);
        Ok(match kw {
            "if" => Node::If(pipe, body, else_),
            "range" => Node::Range(pipe, body, else_),
            _ => Node::With(pipe, body, else_),
        })
    }
}

impl Parser<'_> {
    fn pipe(&mut self, toks: &[(Tok, usize)], at: usize, range: bool) -> PResult<Pipe> {
        let (decl, assign, rest) = declarations(toks, range);
        if assign {
            if let Some(v) = decl.iter().find(|v| !self.vars.contains(v)) {
                return Err((at, format!("undefined variable {v:?}")));
            }
        }
        let (cmds, used) = self.cmds(rest, at)?;
        if used != rest.len() {
            return Err((rest[used].1, "unexpected \")\" in command".into()));
        }
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    /// Commands up to the end or an unmatched `)`; returns them and the tokens used.
    fn cmds(&mut self, toks: &[(Tok, usize)], at: usize) -> PResult<(Vec<Cmd>, usize)> {
        let mut cmds = Vec::new();
        let mut i = 0;
        let mut cmd = Cmd {
            args: Vec::new(),
            at: toks.first().map_or(at, |t| t.1),
            src: String::new(),
        };
        loop {
            match toks.get(i) {
                None | Some((Tok::RParen, _)) | Some((Tok::Pipe, _)) => {
                    if cmd.args.is_empty() {
                        return Err((
                            toks.get(i).map_or(at, |t| t.1),
                            "missing value for command".into(),
                        ));
                    }
                    let end = toks.get(i).map_or(self.act_end, |t| t.1);
                    let src = self.text.get(cmd.at..end.max(cmd.at)).unwrap_or("");
                    cmd.src = src.trim_end().to_string();
                    let next = toks.get(i + 1).map_or(end, |t| t.1);
                    let done = !matches!(toks.get(i), Some((Tok::Pipe, _)));
                    cmds.push(std::mem::replace(
                        &mut cmd,
                        Cmd {
                            args: Vec::new(),
                            at: next,
                            src: String::new(),
                        },
                    ));
                    if done {
                        return Ok((cmds, i));
                    }
                    i += 1;
                }
                Some(_) => {
                    let (arg, n) = self.operand(&toks[i..], at)?;
                    cmd.args.push(arg);
                    i += n;
                }
            }
        }
    }

    fn operand(&mut self, toks: &[(Tok, usize)], at: usize) -> PResult<(Arg, usize)> {
        let (tok, off) = &toks[0];
        Ok(match tok {
            Tok::Field(f) => (Arg::Field(f.clone()), 1),
            Tok::Var(v, f) => {
                if !self.vars.contains(v) {
                    return Err((*off, format!("undefined variable {v:?}")));
                }
                (Arg::Var(v.clone(), f.clone()), 1)
            }
            Tok::Ident(w) => {
                if let Err(m) = (self.check)(w) {
                    return Err((*off, m));
                }
                match toks.get(1) {
                    Some((Tok::Field(f), foff)) if *foff == off + w.len() => {
                        (Arg::Chain(w.clone(), f.clone()), 2)
                    }
                    _ => (Arg::Func(w.clone()), 1),
                }
            }
            Tok::Lit(v) => (Arg::Lit(v.clone()), 1),
            Tok::LParen => {
                let (cmds, used) = self.cmds(&toks[1..], at)?;
                if !matches!(toks.get(used + 1), Some((Tok::RParen, _))) {
                    return Err((*off, "unclosed left paren".into()));
                }
                let mut n = used + 2;
                let mut chain = Vec::new();
                if let Some((Tok::Field(f), foff)) = toks.get(n) {
                    if *foff == toks[used + 1].1 + 1 {
                        chain = f.clone();
                        n += 1;
                    }
                }
                let pipe = Pipe {
                    decl: Vec::new(),
                    assign: false,
                    cmds,
                };
                (Arg::Sub(Box::new(pipe), chain), n)
            }
            _ => return Err((*off, format!("unexpected {} in operand", tok_name(tok)))),
        })
    }
}

fn tok_name(t: &Tok) -> &'static str {
    match t {
        Tok::Pipe => "\"|\"",
        Tok::RParen => "\")\"",
        Tok::Comma => "\",\"",
        Tok::Declare => "\":=\"",
        Tok::Assign => "\"=\"",
        _ => "token",
    }
}

type Decl<'a> = (Vec<String>, bool, &'a [(Tok, usize)]);

fn declarations(toks: &[(Tok, usize)], range: bool) -> Decl<'_> {
    let var = |i: usize| match toks.get(i) {
        Some((Tok::Var(v, f), _)) if f.is_empty() => Some(v.clone()),
        _ => None,
    };
    let op = |i: usize| match toks.get(i) {
        Some((Tok::Declare, _)) => Some(false),
        Some((Tok::Assign, _)) => Some(true),
        _ => None,
    };
    if let (Some(a), Some(asg)) = (var(0), op(1)) {
        return (vec![a], asg, &toks[2..]);
    }
    if range && matches!(toks.get(1), Some((Tok::Comma, _))) {
        if let (Some(a), Some(b), Some(asg)) = (var(0), var(2), op(3)) {
            return (vec![a, b], asg, &toks[4..]);
        }
    }
    (Vec::new(), false, toks)
}

/// Calls every function whose arguments are all string literals with its name and arguments.
pub(crate) fn literal_calls(tree: &Tree, f: &mut dyn FnMut(&str, &[String])) {
    fn pipe(p: &Pipe, f: &mut dyn FnMut(&str, &[String])) {
        for c in &p.cmds {
            if let Some(Arg::Func(name)) = c.args.first() {
                let lits: Option<Vec<String>> = c.args[1..]
                    .iter()
                    .map(|a| match a {
                        Arg::Lit(Value::Str(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(l) = lits {
                    f(name, &l);
                }
            }
            for a in &c.args {
                if let Arg::Sub(p, _) = a {
                    pipe(p, f);
                }
            }
        }
    }
    fn nodes(ns: &[Node], f: &mut dyn FnMut(&str, &[String])) {
        for n in ns {
            match n {
                Node::Action(p) => pipe(p, f),
                Node::If(p, a, b) | Node::Range(p, a, b) | Node::With(p, a, b) => {
                    pipe(p, f);
                    nodes(a, f);
                    nodes(b, f);
                }
                Node::Template(_, Some(p), _) => pipe(p, f),
                _ => {}
            }
        }
    }
    nodes(&tree.root, f);
    for body in tree.defs.values() {
        nodes(body, f);
    }
}
