//! Executing a parsed tree over JSON data, with Go's truthiness and "no value" for missing keys.

use super::parse::{Arg, Cmd, Node, Pipe};
use super::{print, Funcs};
use serde_json::Value;

/// A value during execution: a JSON value, or Go's "no value" with the key path that was missing.
#[derive(Clone)]
pub(crate) enum Val {
    V(Value),
    Missing(String),
}

/// Execution state: output, variables, options. Errors are (command offset, source, message).
pub(crate) struct State<'a> {
    pub funcs: &'a Funcs,
    pub strict: bool,
    pub vars: Vec<(String, Val)>,
    pub out: String,
}

pub(crate) type ExecErr = (usize, String, String);
type R<T> = Result<T, ExecErr>;

fn truth(v: &Val) -> bool {
    match v {
        Val::Missing(_) => false,
        Val::V(Value::Null) => false,
        Val::V(Value::Bool(b)) => *b,
        Val::V(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Val::V(Value::String(s)) => !s.is_empty(),
        Val::V(Value::Array(a)) => !a.is_empty(),
        Val::V(Value::Object(m)) => !m.is_empty(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

impl State<'_> {
    pub(crate) fn walk(&mut self, nodes: &[Node], dot: &Val) -> R<()> {
        for n in nodes {
            let mark = self.vars.len();
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        self.print(&v, p)?;
                    }
                    continue; // declarations stay in scope until the enclosing block ends
                }
                Node::If(p, a, b) | Node::With(p, a, b) => {
                    let v = self.pipe(p, dot)?;
                    let with = matches!(n, Node::With(..));
                    match (truth(&v), with) {
                        (true, true) => self.walk(a, &v)?,
                        (true, false) => self.walk(a, dot)?,
                        (false, _) => self.walk(b, dot)?,
                    }
                }
                Node::Range(p, a, b) => self.range(p, a, b, dot)?,
            }
            self.vars.truncate(mark);
        }
        Ok(())
    }

    fn print(&mut self, v: &Val, p: &Pipe) -> R<()> {
        match v {
            Val::V(x) => self.out.push_str(&print::value(x)),
            Val::Missing(path) if self.strict => {
                let (at, src) = p
                    .cmds
                    .last()
                    .map_or((0, String::new()), |c| (c.at, c.src.clone()));
                return Err((at, src, format!("map has no entry for key {path:?}")));
            }
            Val::Missing(_) => self.out.push_str("<no value>"),
        }
        Ok(())
    }

    fn range(&mut self, p: &Pipe, body: &[Node], else_: &[Node], dot: &Val) -> R<()> {
        let decl = Pipe {
            decl: Vec::new(),
            assign: false,
            cmds: p.cmds.clone(),
        };
        let v = self.pipe(&decl, dot)?;
        let items: Vec<(Value, Value)> = match v {
            Val::Missing(_) | Val::V(Value::Null) => Vec::new(),
            Val::V(Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x))
                .collect(),
            Val::V(Value::Object(m)) => {
                let mut kv: Vec<(String, Value)> = m.into_iter().collect();
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                kv.into_iter().map(|(k, x)| (Value::String(k), x)).collect()
            }
            Val::V(other) => {
                let (at, src) = p
                    .cmds
                    .first()
                    .map_or((0, String::new()), |c| (c.at, c.src.clone()));
                return Err((
                    at,
                    src,
                    format!("range can't iterate over {}", type_name(&other)),
                ));
            }
        };
        if items.is_empty() {
            return self.walk(else_, dot);
        }
        for (k, x) in items {
            let mark = self.vars.len();
            match p.decl.as_slice() {
                [v] => self.vars.push((v.clone(), Val::V(x.clone()))),
                [a, b] => {
                    self.vars.push((a.clone(), Val::V(k)));
                    self.vars.push((b.clone(), Val::V(x.clone())));
                }
                _ => {}
            }
            self.walk(body, &Val::V(x))?;
            self.vars.truncate(mark);
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Val) -> R<Val> {
        let mut v: Option<Val> = None;
        for c in &p.cmds {
            v = Some(self.cmd(c, dot, v)?);
        }
        let v = v.unwrap_or(Val::V(Value::Null));
        for name in &p.decl {
            if p.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn cmd(&mut self, c: &Cmd, dot: &Val, fin: Option<Val>) -> R<Val> {
        let err = |m: String| (c.at, c.src.clone(), m);
        if let Some(Arg::Func(name)) = c.args.first() {
            return self.call(name, &c.args[1..], fin, dot, c);
        }
        if c.args.len() > 1 || fin.is_some() {
            return Err(err("can't give argument to non-function".into()));
        }
        match c.args.first() {
            Some(a) => self.arg(a, dot, c),
            None => Err(err("empty command".into())),
        }
    }

    fn arg(&mut self, a: &Arg, dot: &Val, c: &Cmd) -> R<Val> {
        match a {
            Arg::Field(f) => {
                field(dot.clone(), f, String::new()).map_err(|m| (c.at, c.src.clone(), m))
            }
            Arg::Var(name, f) => {
                let base = if name == "$" {
                    self.vars.first().map(|v| v.1.clone())
                } else {
                    self.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|v| v.1.clone())
                };
                let base = base
                    .ok_or_else(|| (c.at, c.src.clone(), format!("undefined variable {name:?}")))?;
                field(base, f, name.clone()).map_err(|m| (c.at, c.src.clone(), m))
            }
            Arg::Lit(v) => Ok(Val::V(v.clone())),
            Arg::Func(name) => self.call(name, &[], None, dot, c),
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                field(v, f, "(...)".into()).map_err(|m| (c.at, c.src.clone(), m))
            }
        }
    }
}

fn field(mut v: Val, names: &[String], mut path: String) -> Result<Val, String> {
    for n in names {
        path.push('.');
        path.push_str(n);
        v = match v {
            Val::Missing(_) | Val::V(Value::Null) => Val::Missing(path.clone()),
            Val::V(Value::Object(mut m)) => match m.remove(n) {
                Some(x) => Val::V(x),
                None => Val::Missing(path.clone()),
            },
            Val::V(other) => {
                return Err(format!(
                    "can't evaluate field {n} in type {}",
                    type_name(&other)
                ))
            }
        };
    }
    Ok(v)
}

fn cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y)
                .ok_or_else(|| "invalid number for comparison".into())
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn builtin(name: &str, a: &[Value]) -> Option<Result<Value, String>> {
    use std::cmp::Ordering::*;
    let two = || {
        if a.len() == 2 {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want 2 got {}",
                a.len()
            ))
        }
    };
    Some(match name {
        "print" => Ok(Value::String(print::sprint(a))),
        "println" => Ok(Value::String(print::sprintln(a))),
        "printf" => match a.split_first() {
            Some((Value::String(f), rest)) => Ok(Value::String(print::sprintf(f, rest))),
            _ => Err("printf needs a format string".into()),
        },
        "len" => match a {
            [Value::String(s)] => Ok(Value::from(s.len())),
            [Value::Array(x)] => Ok(Value::from(x.len())),
            [Value::Object(m)] => Ok(Value::from(m.len())),
            [x] => Err(format!("len of type {}", type_name(x))),
            _ => Err("wrong number of args for len".into()),
        },
        "index" => index(a),
        "not" => Err("not takes one argument".into()),
        "eq" => eq(a),
        "ne" => two().and_then(|_| cmp(&a[0], &a[1]).map(|o| Value::Bool(o != Equal))),
        "lt" => two().and_then(|_| cmp(&a[0], &a[1]).map(|o| Value::Bool(o == Less))),
        "le" => two().and_then(|_| cmp(&a[0], &a[1]).map(|o| Value::Bool(o != Greater))),
        "gt" => two().and_then(|_| cmp(&a[0], &a[1]).map(|o| Value::Bool(o == Greater))),
        "ge" => two().and_then(|_| cmp(&a[0], &a[1]).map(|o| Value::Bool(o != Less))),
        _ => return None,
    })
}

fn eq(a: &[Value]) -> Result<Value, String> {
    let Some((x, rest)) = a.split_first().filter(|(_, r)| !r.is_empty()) else {
        return Err("missing argument for comparison".into());
    };
    let mut r = false;
    for y in rest {
        r |= match (x, y) {
            (Value::Null, Value::Null) => true,
            _ => cmp(x, y)? == std::cmp::Ordering::Equal,
        };
    }
    Ok(Value::Bool(r))
}

fn index(a: &[Value]) -> Result<Value, String> {
    let Some((base, keys)) = a.split_first() else {
        return Err("index of nothing".into());
    };
    let mut v = base.clone();
    for k in keys {
        v = match (&v, k) {
            (Value::Array(x), Value::Number(n)) => match n.as_u64().and_then(|i| x.get(i as usize))
            {
                Some(e) => e.clone(),
                None => return Err("index out of range".into()),
            },
            (Value::Object(m), Value::String(s)) => m.get(s).cloned().unwrap_or(Value::Null),
            (Value::Null, _) => return Err("index of untyped nil".into()),
            (x, _) => return Err(format!("can't index item of type {}", type_name(x))),
        };
    }
    Ok(v)
}

impl State<'_> {
    fn call(&mut self, name: &str, args: &[Arg], fin: Option<Val>, dot: &Val, c: &Cmd) -> R<Val> {
        let err = |m: String| (c.at, c.src.clone(), m);
        let total = args.len() + usize::from(fin.is_some());
        if name == "and" || name == "or" || name == "not" {
            if total == 0 || (name == "not" && total != 1) {
                return Err(err(format!("wrong number of args for {name}")));
            }
            let mut last = Val::V(Value::Null);
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
            return Ok(if name == "not" {
                Val::V(Value::Bool(!truth(&f)))
            } else {
                f
            });
        }
        let mut vals = Vec::with_capacity(total);
        for a in args {
            vals.push(self.arg(a, dot, c)?);
        }
        vals.extend(fin);
        let mut plain = Vec::with_capacity(vals.len());
        for v in vals {
            match v {
                Val::V(x) => plain.push(x),
                Val::Missing(p) if self.strict => {
                    return Err(err(format!(
                        "map has no entry for key {p:?} (passed to {name})"
                    )))
                }
                Val::Missing(_) => plain.push(Value::Null),
            }
        }
        let r = match builtin(name, &plain) {
            Some(r) => r,
            None => match self.funcs.get(name) {
                Some(f) => f(&plain),
                None => return Err(err(format!("function {name:?} not defined"))),
            },
        };
        r.map(Val::V)
            .map_err(|m| err(format!("error calling {name}: {m}")))
    }
}
