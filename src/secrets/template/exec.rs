//! Executing a parsed tree, with Go's truthiness, "no value" for missing keys, and consul-template's
//! `scratch`.

use super::parse::{Arg, Cmd, Node, Pipe, Tree};
use super::print;
use super::source::{Read, Source};
use super::value::{Map, Value};
use super::Funcs;
use std::collections::BTreeSet;

/// A value during execution: a value, or Go's "no value" with the key path that gave it
/// (`null` when the key was there with a JSON null, which Go also prints as `<no value>`).
#[derive(Clone, Debug)]
pub(crate) enum Val {
    V(Value),
    Missing { path: String, null: bool },
}

/// Go's `{{template}}` nesting cap is 100000; ours keeps the Rust stack of a small task safe.
const MAX_DEPTH: usize = 100;

/// What a function may do besides computing: read Vault's answers through the render's source.
pub struct Ctx<'a> {
    source: &'a dyn Source,
    discover: bool,
    pub(crate) used: BTreeSet<Read>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(source: &'a dyn Source, discover: bool) -> Self {
        Ctx {
            source,
            discover,
            used: BTreeSet::new(),
        }
    }

    /// The answer to `read`. In a discovery pass an unanswered read is recorded and answers nil
    /// (as consul-template's first pass does); in a render it is an error.
    pub fn read(&mut self, read: Read) -> Result<Value, String> {
        let answer = self.source.answer(&read);
        let name = read.to_string();
        self.used.insert(read);
        match answer {
            Some(r) => r,
            None if self.discover => Ok(Value::Nil),
            None => Err(format!("{name} was not read before rendering")),
        }
    }
}

/// How a list ended: normally, or by `{{break}}`/`{{continue}}` inside a range.
#[derive(PartialEq)]
pub(crate) enum Flow {
    Normal,
    Break,
    Continue,
}

/// Execution state: output, variables, options. Errors are (command offset, source, message).
pub(crate) struct State<'a> {
    pub tree: &'a Tree,
    pub funcs: &'a Funcs,
    pub ctx: Ctx<'a>,
    pub strict: bool,
    pub vars: Vec<(String, Val)>,
    pub out: String,
    pub scratch: Map,
    pub depth: usize,
}

pub(crate) type ExecErr = (usize, String, String);
type R<T> = Result<T, ExecErr>;

fn truth(v: &Val) -> bool {
    match v {
        Val::Missing { .. } => false,
        Val::V(x) => x.truth(),
    }
}

fn plain(v: Val) -> Value {
    match v {
        Val::V(x) => x,
        Val::Missing { .. } => Value::Nil,
    }
}

/// Out of line and cold: called from many error paths, inlined it would copy the clone into each.
#[cold]
#[inline(never)]
fn cmd_err(c: &Cmd, m: String) -> ExecErr {
    (c.at, c.src.clone(), m)
}

impl State<'_> {
    pub(crate) fn walk(&mut self, nodes: &[Node], dot: &Val) -> R<Flow> {
        let mark = self.vars.len();
        let flow = self.walk_inner(nodes, dot);
        self.vars.truncate(mark);
        flow
    }

    fn walk_inner(&mut self, nodes: &[Node], dot: &Val) -> R<Flow> {
        for n in nodes {
            let flow = match n {
                Node::Text(t) => {
                    self.out.push_str(t);
                    Flow::Normal
                }
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        self.print(&v, p)?;
                    }
                    Flow::Normal
                }
                Node::If(p, a, b) | Node::With(p, a, b) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let flow = match (truth(&v), matches!(n, Node::With(..))) {
                        (true, true) => self.walk(a, &v)?,
                        (true, false) => self.walk(a, dot)?,
                        (false, _) => self.walk(b, dot)?,
                    };
                    self.vars.truncate(mark);
                    flow
                }
                Node::Range(p, a, b) => self.range(p, a, b, dot)?,
                Node::Template(name, p, at) => self.template(name, p.as_ref(), *at, dot)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn template(&mut self, name: &str, p: Option<&Pipe>, at: usize, dot: &Val) -> R<Flow> {
        let v = match p {
            Some(p) => self.pipe(p, dot)?,
            None => Val::V(Value::Nil),
        };
        let Some(body) = self.tree.defs.get(name) else {
            return Err((at, format!("template {name:?}"), "no such template".into()));
        };
        if self.depth >= MAX_DEPTH {
            return Err((
                at,
                format!("template {name:?}"),
                format!("exceeded maximum template depth ({MAX_DEPTH})"),
            ));
        }
        let vars = std::mem::replace(&mut self.vars, vec![("$".into(), v.clone())]);
        self.depth += 1;
        let r = self.walk(body, &v);
        self.depth -= 1;
        self.vars = vars;
        r.map(|_| Flow::Normal)
    }

    fn print(&mut self, v: &Val, p: &Pipe) -> R<()> {
        let (at, src) = p
            .cmds
            .last()
            .map_or((0, String::new()), |c| (c.at, c.src.clone()));
        match v {
            Val::V(Value::Nil) if self.strict => {
                Err((at, src, "no value to print (a null or missing key)".into()))
            }
            Val::V(Value::Nil) => {
                self.out.push_str("<no value>");
                Ok(())
            }
            Val::V(x) => {
                self.out.push_str(&print::value(x));
                Ok(())
            }
            Val::Missing { path, null } if self.strict => {
                let m = if *null {
                    format!("key {path:?} is null")
                } else {
                    format!("map has no entry for key {path:?}")
                };
                Err((at, src, m))
            }
            Val::Missing { .. } => {
                self.out.push_str("<no value>");
                Ok(())
            }
        }
    }

    fn range(&mut self, p: &Pipe, body: &[Node], else_: &[Node], dot: &Val) -> R<Flow> {
        let mark = self.vars.len();
        // the range's variables are bound per element below, not to the whole value
        let v = self.cmds(&p.cmds, dot)?;
        // the elements are walked in place (no list of (key, element) pairs built first)
        let empty = match &v {
            Val::Missing { .. } | Val::V(Value::Nil) => true,
            Val::V(Value::List(a)) => a.is_empty(),
            Val::V(Value::Map(m)) => m.is_empty(),
            Val::V(other) => {
                let c = p.cmds.first();
                return Err((
                    c.map_or(0, |c| c.at),
                    c.map_or_else(String::new, |c| c.src.clone()),
                    format!(
                        "range can't iterate over a value of type {}",
                        other.type_name()
                    ),
                ));
            }
        };
        if empty {
            return self.walk(else_, dot);
        }
        match &v {
            Val::V(Value::List(a)) => {
                for (i, x) in a.iter().enumerate() {
                    if self.range_one(p, body, Value::Int(i as i64), x)? {
                        break;
                    }
                }
            }
            Val::V(Value::Map(m)) => {
                for (k, x) in m.iter() {
                    if self.range_one(p, body, Value::Str(k.clone()), x)? {
                        break;
                    }
                }
            }
            _ => {}
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// One element of a range: binds its variables, walks the body; true on `{{break}}`.
    fn range_one(&mut self, p: &Pipe, body: &[Node], k: Value, x: &Value) -> R<bool> {
        let inner = self.vars.len();
        match p.decl.as_slice() {
            [v] => self.assign_or_declare(v, Val::V(x.clone()), p.assign),
            [a, b] => {
                self.assign_or_declare(a, Val::V(k), p.assign);
                self.assign_or_declare(b, Val::V(x.clone()), p.assign);
            }
            _ => {}
        }
        let flow = self.walk(body, &Val::V(x.clone()))?;
        self.vars.truncate(inner);
        Ok(flow == Flow::Break)
    }

    fn assign_or_declare(&mut self, name: &str, v: Val, assign: bool) {
        if assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
            }
        } else {
            self.vars.push((name.to_string(), v));
        }
    }

    fn pipe(&mut self, p: &Pipe, dot: &Val) -> R<Val> {
        let v = self.cmds(&p.cmds, dot)?;
        for name in &p.decl {
            self.assign_or_declare(name, v.clone(), p.assign);
        }
        Ok(v)
    }

    /// A pipeline's commands, each one's value passed as the next one's last argument.
    fn cmds(&mut self, cmds: &[Cmd], dot: &Val) -> R<Val> {
        let mut v: Option<Val> = None;
        for c in cmds {
            v = Some(self.cmd(c, dot, v)?);
        }
        Ok(v.unwrap_or(Val::V(Value::Nil)))
    }

    fn cmd(&mut self, c: &Cmd, dot: &Val, fin: Option<Val>) -> R<Val> {
        let Some(first) = c.args.first() else {
            return Err(cmd_err(c, "empty command".into()));
        };
        let has_args = c.args.len() > 1 || fin.is_some();
        match first {
            Arg::Func(name) => self.call(name, &c.args[1..], fin, dot, c),
            Arg::Field(f) | Arg::Var(_, f) | Arg::Chain(_, f) | Arg::Sub(_, f)
                if has_args && !f.is_empty() =>
            {
                self.method(first, f, &c.args[1..], fin, dot, c)
            }
            _ if has_args => Err(cmd_err(c, "can't give argument to non-function".into())),
            a => self.arg(a, dot, c),
        }
    }

    /// `recv.Name arg...`: only `scratch` has methods.
    fn method(
        &mut self,
        first: &Arg,
        fields: &[String],
        args: &[Arg],
        fin: Option<Val>,
        dot: &Val,
        c: &Cmd,
    ) -> R<Val> {
        let (last, init) = fields.split_last().unwrap_or((&fields[0], &[]));
        let recv = match first {
            Arg::Field(_) => field(dot.clone(), init, String::new()),
            Arg::Var(name, _) => field(self.var(name, c)?, init, name.clone()),
            Arg::Chain(name, _) => {
                let base = self.call(name, &[], None, dot, c)?;
                field(base, init, name.clone())
            }
            Arg::Sub(p, _) => {
                let base = self.pipe(p, dot)?;
                field(base, init, "(...)".into())
            }
            _ => Err("can't give argument to non-function".into()),
        }
        .map_err(|m| cmd_err(c, m))?;
        let mut vals = Vec::new();
        for a in args {
            vals.push(plain(self.arg(a, dot, c)?));
        }
        vals.extend(fin.map(plain));
        match recv {
            Val::V(Value::Scratch) => self
                .scratch_method(last, &vals)
                .map(Val::V)
                .map_err(|m| cmd_err(c, format!("error calling {last}: {m}"))),
            _ => Err(cmd_err(
                c,
                format!("{last} has arguments but cannot be invoked as function"),
            )),
        }
    }

    fn scratch_method(&mut self, name: &str, a: &[Value]) -> Result<Value, String> {
        let key = |i: usize| match a.get(i) {
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => Err(format!("{name}: argument {} must be a string", i + 1)),
        };
        let want = |n: usize| {
            if a.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    a.len()
                ))
            }
        };
        match name {
            "Key" => {
                want(1)?;
                Ok(Value::Bool(self.scratch.contains_key(&key(0)?)))
            }
            "Get" => {
                want(1)?;
                Ok(self.scratch.get(&key(0)?).cloned().unwrap_or(Value::Nil))
            }
            "Set" | "SetX" => {
                want(2)?;
                let k = key(0)?;
                if name == "Set" || !self.scratch.contains_key(&k) {
                    self.scratch.insert(k, a[1].clone());
                }
                Ok(Value::Str(String::new()))
            }
            "MapSet" | "MapSetX" => {
                want(3)?;
                let (k, mk) = (key(0)?, key(1)?);
                let entry = self
                    .scratch
                    .entry(k.clone())
                    .or_insert_with(|| Value::map(Map::new()));
                let Value::Map(m) = entry else {
                    return Err(format!("{k:?} is not a map"));
                };
                let m = std::sync::Arc::make_mut(m);
                if name == "MapSet" || !m.contains_key(&mk) {
                    m.insert(mk, a[2].clone());
                }
                Ok(Value::Str(String::new()))
            }
            "MapValues" => {
                want(1)?;
                Ok(match self.scratch.get(&key(0)?) {
                    Some(Value::Map(m)) => {
                        let mut l = Vec::with_capacity(m.len());
                        for v in m.values() {
                            l.push(v.clone());
                        }
                        Value::list(l)
                    }
                    _ => Value::Nil,
                })
            }
            _ => Err(format!("scratch has no method {name}")),
        }
    }

    fn var(&self, name: &str, c: &Cmd) -> R<Val> {
        let base = if name == "$" {
            self.vars.first()
        } else {
            self.vars.iter().rev().find(|(n, _)| n == name)
        };
        base.map(|v| v.1.clone())
            .ok_or_else(|| cmd_err(c, format!("undefined variable {name:?}")))
    }

    fn arg(&mut self, a: &Arg, dot: &Val, c: &Cmd) -> R<Val> {
        let r = match a {
            Arg::Field(f) => field(dot.clone(), f, String::new()),
            Arg::Var(name, f) => field(self.var(name, c)?, f, name.clone()),
            Arg::Lit(v) => Ok(Val::V(v.clone())),
            Arg::Func(name) => return self.call(name, &[], None, dot, c),
            Arg::Chain(name, f) => {
                let v = self.call(name, &[], None, dot, c)?;
                field(v, f, name.clone())
            }
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                field(v, f, "(...)".into())
            }
        };
        r.map_err(|m| cmd_err(c, m))
    }
}

/// Follows `.a.b` from `v`; `path` grows for messages (key names only, never values).
fn field(mut v: Val, names: &[String], mut path: String) -> Result<Val, String> {
    for n in names {
        path.push('.');
        path.push_str(n);
        v = match v {
            // consul-template runs with missingkey=zero: a missing key is a nil interface, and
            // a field of nil is Go's "nil pointer" error in both modes
            Val::Missing { path: p, null } => {
                let what = if null { "null" } else { "missing" };
                return Err(format!(
                    "nil pointer evaluating interface {{}}.{n}: key {p:?} is {what}"
                ));
            }
            Val::V(Value::Nil) => return Err(format!("nil pointer evaluating interface {{}}.{n}")),
            Val::V(Value::Map(m)) => match m.get(n) {
                Some(Value::Nil) => Val::Missing {
                    path: path.clone(),
                    null: true,
                },
                Some(x) => Val::V(x.clone()),
                None => Val::Missing {
                    path: path.clone(),
                    null: false,
                },
            },
            Val::V(Value::Secret(s)) => match s.field(n) {
                Some(x) => Val::V(x),
                None => {
                    return Err(format!(
                        "can't evaluate field {n} in type *dependency.Secret"
                    ))
                }
            },
            Val::V(Value::Pem(p)) => match p.field(n) {
                Some(x) => Val::V(x),
                None => {
                    return Err(format!(
                        "can't evaluate field {n} in type dependency.PemEncoded"
                    ))
                }
            },
            Val::V(other) => {
                return Err(format!(
                    "can't evaluate field {n} in type {}",
                    other.type_name()
                ))
            }
        };
    }
    Ok(v)
}

/// Go's kinds for comparison: strings (also `json.Number`), ints, floats, bools; `None` otherwise.
#[derive(PartialEq, Clone, Copy, Debug)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
}

fn kind(v: &Value) -> Option<Kind> {
    match v {
        Value::Bool(_) => Some(Kind::Bool),
        Value::Int(_) => Some(Kind::Int),
        Value::Float(_) => Some(Kind::Float),
        Value::Str(_) | Value::Number(_) => Some(Kind::Str),
        _ => None,
    }
}

/// Go's `lt` family: basic kinds only, same kind on both sides, bools not ordered.
fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    let (Some(ka), Some(kb)) = (kind(a), kind(b)) else {
        return Err("invalid type for comparison".into());
    };
    if ka != kb {
        return Err("incompatible types for comparison".into());
    }
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x
            .partial_cmp(y)
            .ok_or_else(|| "invalid number for comparison".into()),
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => Ok(x.cmp(y)),
            _ => Err("invalid type for comparison".into()),
        },
    }
}

/// Go's `eq arg1 arg2...`: true when arg1 equals any of the others.
fn eq(a: &[Value]) -> Result<Value, String> {
    let Some((x, rest)) = a.split_first().filter(|(_, r)| !r.is_empty()) else {
        return Err("missing argument for comparison".into());
    };
    for y in rest {
        let same = match (kind(x), kind(y)) {
            (Some(kx), Some(ky)) if kx == ky => match kx {
                // not `x == y`: that would link Value's deep PartialEq for two bools
                Kind::Bool => matches!((x, y), (Value::Bool(a), Value::Bool(b)) if a == b),
                _ => order(x, y)? == std::cmp::Ordering::Equal,
            },
            (Some(_), Some(_)) => return Err("incompatible types for comparison".into()),
            // a nil compares unequal to anything but nil
            _ if matches!(x, Value::Nil) || matches!(y, Value::Nil) => {
                matches!((x, y), (Value::Nil, Value::Nil))
            }
            _ => {
                return Err(format!(
                    "non-comparable types {} and {}",
                    x.type_name(),
                    y.type_name()
                ))
            }
        };
        if same {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn index(a: &[Value]) -> Result<Value, String> {
    let Some((base, keys)) = a.split_first() else {
        return Err("index of nothing".into());
    };
    let mut v = base.clone();
    for k in keys {
        v = match (&v, k) {
            (Value::List(x), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| x.get(i)) {
                    Some(e) => e.clone(),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Str(s), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i)) {
                    Some(b) => Value::Int(i64::from(*b)),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Map(m), Value::Str(s)) => m.get(s).cloned().unwrap_or(Value::Nil),
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (Value::List(_) | Value::Str(_), k) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    k.type_name()
                ))
            }
            (Value::Map(_), k) => {
                return Err(format!(
                    "value has type {}; should be string",
                    k.type_name()
                ))
            }
            (x, _) => return Err(format!("can't index item of type {}", x.type_name())),
        };
    }
    Ok(v)
}

/// Go's built-ins other than `and`/`or`/`not` (which see unevaluated arguments).
pub(crate) const BUILTINS: [&str; 14] = [
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge",
];

fn builtin(name: &str, a: &[Value]) -> Option<Result<Value, String>> {
    use std::cmp::Ordering::*;
    let two = || {
        if a.len() == 2 {
            order(&a[0], &a[1])
        } else {
            Err(format!(
                "wrong number of args for {name}: want 2 got {}",
                a.len()
            ))
        }
    };
    Some(match name {
        "print" => Ok(Value::Str(print::sprint(a))),
        "println" => Ok(Value::Str(print::sprintln(a))),
        "printf" => match a.split_first() {
            Some((Value::Str(f), rest)) => Ok(Value::Str(print::sprintf(f, rest))),
            _ => Err("printf needs a format string".into()),
        },
        "len" => match a {
            [Value::Str(s) | Value::Number(s)] => Ok(Value::Int(s.len() as i64)),
            [Value::List(x)] => Ok(Value::Int(x.len() as i64)),
            [Value::Map(m)] => Ok(Value::Int(m.len() as i64)),
            [x] => Err(format!("len of type {}", x.type_name())),
            _ => Err(format!(
                "wrong number of args for len: want 1 got {}",
                a.len()
            )),
        },
        "index" => index(a),
        "eq" => eq(a),
        "ne" => eq(a).map(|v| Value::Bool(!v.truth())),
        "lt" => two().map(|o| Value::Bool(o == Less)),
        "le" => two().map(|o| Value::Bool(o != Greater)),
        "gt" => two().map(|o| Value::Bool(o == Greater)),
        "ge" => two().map(|o| Value::Bool(o != Less)),
        _ => return None,
    })
}

impl State<'_> {
    fn call(&mut self, name: &str, args: &[Arg], fin: Option<Val>, dot: &Val, c: &Cmd) -> R<Val> {
        let total = args.len() + usize::from(fin.is_some());
        if name == "and" || name == "or" || name == "not" {
            return self.logic(name, args, fin, total, dot, c);
        }
        let mut vals = Vec::with_capacity(total);
        for a in args {
            vals.push(self.arg(a, dot, c)?);
        }
        vals.extend(fin);
        let mut plain_args = Vec::with_capacity(vals.len());
        for v in vals {
            match v {
                Val::V(x) => plain_args.push(x),
                // a test (`eq .k "x"`) keeps Go's meaning; anything else would print or use it
                Val::Missing { path, .. } if self.strict && !matches!(name, "eq" | "ne") => {
                    return Err(cmd_err(
                        c,
                        format!("map has no entry for key {path:?} (passed to {name})"),
                    ))
                }
                Val::Missing { .. } => plain_args.push(Value::Nil),
            }
        }
        let r = match builtin(name, &plain_args) {
            Some(r) => r,
            None => match self.funcs.get(name) {
                Some(f) => f(&mut self.ctx, &plain_args),
                None if name == "scratch" => Ok(Value::Scratch),
                None => return Err(cmd_err(c, format!("function {name:?} not defined"))),
            },
        };
        r.map(Val::V)
            .map_err(|m| cmd_err(c, format!("error calling {name}: {m}")))
    }

    /// `and`/`or` return the deciding argument (evaluated lazily, as Go 1.18+); `not` negates.
    fn logic(
        &mut self,
        name: &str,
        args: &[Arg],
        fin: Option<Val>,
        total: usize,
        dot: &Val,
        c: &Cmd,
    ) -> R<Val> {
        if total == 0 || (name == "not" && total != 1) {
            return Err(cmd_err(c, format!("wrong number of args for {name}")));
        }
        let mut last = Val::V(Value::Nil);
        for (i, a) in args.iter().enumerate() {
            last = self.arg(a, dot, c)?;
            let t = truth(&last);
            if name == "not" {
                return Ok(Val::V(Value::Bool(!t)));
            }
            if (name == "and" && !t) || (name == "or" && t) || (i + 1 == total) {
                return Ok(last);
            }
        }
        let f = fin.unwrap_or(last);
        Ok(if name == "not" {
            Val::V(Value::Bool(!truth(&f)))
        } else {
            f
        })
    }
}
