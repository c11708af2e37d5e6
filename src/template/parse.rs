//! Lexing and parsing of Go `text/template` source into a tree.

use serde_json::Value;

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
    Action(Vec<(Tok, usize)>, usize),
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
            let (toks, after, trim) = lex_action(text, j)?;
            items.push(Item::Action(toks, s));
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

type Lexed = (Vec<(Tok, usize)>, usize, bool);

fn lex_action(text: &str, mut p: usize) -> PResult<Lexed> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    loop {
        if p >= b.len() {
            return Err((p, "unclosed action".into()));
        }
        if let Some((after, trim)) = right_delim(text, p) {
            return Ok((toks, after, trim));
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
                    "nil" => Tok::Lit(Value::Null),
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
                Tok::Lit(Value::String(text[p + 1..p + 1 + e].into())),
                p + e + 2,
            )),
            None => Err((p, "unterminated raw quoted string".into())),
        };
    }
    let mut out = String::new();
    let mut chars = text[p + 1..].char_indices();
    while let Some((k, ch)) = chars.next() {
        match ch {
            '"' => return Ok((Tok::Lit(Value::String(out)), p + 1 + k + 1)),
            '\n' => break,
            '\\' => match chars.next().map(|x| x.1) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                _ => return Err((p, "bad escape in quoted string".into())),
            },
            _ => out.push(ch),
        }
    }
    Err((p, "unterminated quoted string".into()))
}

fn lex_number(text: &str, p: usize) -> PResult<(Tok, usize)> {
    let b = text.as_bytes();
    let mut e = p;
    if matches!(b[e], b'+' | b'-') {
        e += 1;
    }
    while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'_') {
        e += 1;
    }
    let s = &text[p..e];
    let bad = || (p, format!("bad number syntax: {s:?}"));
    let v = if let Ok(i) = s.parse::<i64>() {
        Value::from(i)
    } else if let Some(h) = s.strip_prefix("0x") {
        Value::from(i64::from_str_radix(h, 16).map_err(|_| bad())?)
    } else {
        let f: f64 = s.parse().map_err(|_| bad())?;
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(bad)?
    };
    Ok((Tok::Lit(v), e))
}

/// The parser over lexed items, with the variables in scope.
struct Parser<'t> {
    text: &'t str,
    items: Vec<Item>,
    pos: usize,
    vars: Vec<String>,
}

/// What ended a list: `{{end}}` or `{{else ...}}` with the tokens after `else`.
enum Stop {
    Eof,
    End(usize),
    Else(Vec<(Tok, usize)>, usize),
}

/// Parses `text` into a tree, or the byte offset and message of the first error.
pub(crate) fn parse(text: &str) -> PResult<Vec<Node>> {
    let items = lex(text)?;
    let mut p = Parser {
        text,
        items,
        pos: 0,
        vars: vec!["$".into()],
    };
    let (nodes, stop) = p.list()?;
    match stop {
        Stop::Eof => Ok(nodes),
        Stop::End(at) => Err((at, "unexpected {{end}}".into())),
        Stop::Else(_, at) => Err((at, "unexpected {{else}}".into())),
    }
}

impl Parser<'_> {
    fn list(&mut self) -> PResult<(Vec<Node>, Stop)> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.pos], Item::Text(String::new()));
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(toks, at) => match toks.first() {
                    None => return Err((at, "missing value for command".into())),
                    Some((Tok::Ident(w), _)) if w == "end" => {
                        if toks.len() > 1 {
                            return Err((at, "unexpected tokens after end".into()));
                        }
                        return Ok((nodes, Stop::End(at)));
                    }
                    Some((Tok::Ident(w), _)) if w == "else" => {
                        return Ok((nodes, Stop::Else(toks[1..].to_vec(), at)));
                    }
                    Some((Tok::Ident(w), _)) if matches!(w.as_str(), "if" | "range" | "with") => {
                        let kw = w.clone();
                        nodes.push(self.control(&kw, &toks[1..], at)?);
                    }
                    Some((Tok::Ident(w), _)) if is_unsupported(w) => {
                        return Err((at, format!("{{{{{w}}}}} is not supported yet")));
                    }
                    Some(_) => nodes.push(Node::Action(self.pipe(&toks, at, false)?)),
                },
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn control(&mut self, kw: &str, toks: &[(Tok, usize)], at: usize) -> PResult<Node> {
        let mark = self.vars.len();
        let pipe = self.pipe(toks, at, kw == "range")?;
        if pipe.cmds.is_empty() {
            return Err((at, format!("missing value for {kw}")));
        }
        let (body, stop) = self.list()?;
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
                match self.list()? {
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

fn is_unsupported(w: &str) -> bool {
    matches!(w, "define" | "template" | "block" | "break" | "continue")
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
                    let end = toks.get(i).map_or_else(|| self.text.len(), |t| t.1);
                    let src = self.text.get(cmd.at..end.max(cmd.at)).unwrap_or("");
                    // the last command runs to the action's end: drop ` }}` / ` -}}`
                    cmd.src = src
                        .trim_end_matches(['}', ' ', '\t', '\r', '\n'])
                        .to_string();
                    if src.ends_with("}}") {
                        cmd.src = cmd.src.trim_end_matches('-').trim_end().to_string();
                    }
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
            Tok::Ident(w) => (Arg::Func(w.clone()), 1),
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
