//! The JSONPath subset CRD `additionalPrinterColumns` use: `.a.b`, `['a.b']`,
//! `[0]`, `[-1]`, `[*]`, `.*`, `..name`, `[?(@.type=="Ready")]` (with `==`,
//! `!=`, `<`, `<=`, `>`, `>=`, or bare existence), `\.` escapes in names.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Recursive(String),
    Filter {
        path: Vec<Step>,
        cmp: Option<(String, Value)>,
    },
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        p = inner.trim();
    }
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let steps = parse_steps(&chars, &mut i, false)?;
    (i == chars.len()).then_some(steps)
}

/// Parses steps until end (or, inside a filter, until a comparison or `)`).
fn parse_steps(c: &[char], i: &mut usize, in_filter: bool) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    while *i < c.len() {
        match c[*i] {
            '.' if c.get(*i + 1) == Some(&'.') => {
                *i += 2;
                steps.push(Step::Recursive(name(c, i)));
            }
            '.' => {
                *i += 1;
                if c.get(*i) == Some(&'*') {
                    *i += 1;
                    steps.push(Step::Wildcard);
                } else {
                    let n = name(c, i);
                    if !n.is_empty() {
                        steps.push(Step::Field(n));
                    }
                }
            }
            '[' => {
                *i += 1;
                steps.push(bracket(c, i)?);
            }
            _ if in_filter => break,
            _ => return None,
        }
    }
    Some(steps)
}

fn name(c: &[char], i: &mut usize) -> String {
    let mut s = String::new();
    while *i < c.len() {
        match c[*i] {
            '\\' if *i + 1 < c.len() => {
                s.push(c[*i + 1]);
                *i += 2;
            }
            '.' | '[' | ' ' | '=' | '!' | '<' | '>' | ')' => break,
            ch => {
                s.push(ch);
                *i += 1;
            }
        }
    }
    s
}

fn skip_ws(c: &[char], i: &mut usize) {
    while *i < c.len() && c[*i] == ' ' {
        *i += 1;
    }
}

fn quoted(c: &[char], i: &mut usize) -> Option<String> {
    let q = c[*i];
    *i += 1;
    let mut s = String::new();
    while *i < c.len() && c[*i] != q {
        if c[*i] == '\\' && *i + 1 < c.len() {
            *i += 1;
        }
        s.push(c[*i]);
        *i += 1;
    }
    (*i < c.len()).then(|| {
        *i += 1;
        s
    })
}

fn bracket(c: &[char], i: &mut usize) -> Option<Step> {
    skip_ws(c, i);
    let step = match c.get(*i)? {
        '\'' | '"' => Step::Field(quoted(c, i)?),
        '*' => {
            *i += 1;
            Step::Wildcard
        }
        '?' => {
            *i += 1;
            skip_ws(c, i);
            if c.get(*i) != Some(&'(') {
                return None;
            }
            *i += 1;
            skip_ws(c, i);
            if c.get(*i) != Some(&'@') {
                return None;
            }
            *i += 1;
            let path = parse_steps(c, i, true)?;
            skip_ws(c, i);
            let mut op = String::new();
            while *i < c.len() && matches!(c[*i], '=' | '!' | '<' | '>') {
                op.push(c[*i]);
                *i += 1;
            }
            skip_ws(c, i);
            let cmp = if op.is_empty() {
                None
            } else {
                let lit = match c.get(*i)? {
                    '\'' | '"' => Value::String(quoted(c, i)?),
                    _ => {
                        let start = *i;
                        while *i < c.len() && c[*i] != ')' && c[*i] != ' ' {
                            *i += 1;
                        }
                        let raw: String = c[start..*i].iter().collect();
                        serde_json::from_str(&raw).ok()?
                    }
                };
                Some((op, lit))
            };
            skip_ws(c, i);
            if c.get(*i) != Some(&')') {
                return None;
            }
            *i += 1;
            Step::Filter { path, cmp }
        }
        _ => {
            let start = *i;
            while *i < c.len() && c[*i] != ']' {
                *i += 1;
            }
            let raw: String = c[start..*i].iter().collect();
            Step::Index(raw.trim().parse().ok()?)
        }
    };
    skip_ws(c, i);
    if c.get(*i) != Some(&']') {
        return None;
    }
    *i += 1;
    Some(step)
}

fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    }
}

fn recurse<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    if let Some(x) = v.as_object().and_then(|m| m.get(key)) {
        out.push(x);
    }
    for ch in children(v) {
        recurse(ch, key, out);
    }
}

fn compare(a: &Value, op: &str, b: &Value) -> bool {
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        "==" => a == b || ord == Some(std::cmp::Ordering::Equal),
        "!=" => !(a == b || ord == Some(std::cmp::Ordering::Equal)),
        "<" => ord == Some(std::cmp::Ordering::Less),
        "<=" => matches!(ord, Some(o) if o.is_le()),
        ">" => ord == Some(std::cmp::Ordering::Greater),
        ">=" => matches!(ord, Some(o) if o.is_ge()),
        _ => false,
    }
}

fn eval<'a>(roots: Vec<&'a Value>, steps: &[Step]) -> Vec<&'a Value> {
    let mut cur = roots;
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(n) => next.extend(v.as_object().and_then(|m| m.get(n))),
                Step::Index(idx) => {
                    if let Some(a) = v.as_array() {
                        let i = if *idx < 0 { a.len() as i64 + idx } else { *idx };
                        next.extend(usize::try_from(i).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::Wildcard => next.extend(children(v)),
                Step::Recursive(n) => recurse(v, n, &mut next),
                Step::Filter { path, cmp } => {
                    for item in children(v) {
                        let found = eval(vec![item], path);
                        let keep = match cmp {
                            None => !found.is_empty(),
                            Some((op, lit)) => found.iter().any(|f| compare(f, op, lit)),
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// Evaluates `path` against `obj` and returns the first result, or `None`
/// when nothing matches or the path is outside the supported subset.
pub fn jsonpath(obj: &Value, path: &str) -> Option<Value> {
    let steps = parse(path)?;
    eval(vec![obj], &steps).first().map(|v| (*v).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let o = json!({
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "a"}, {"image": "b"}]}}},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "Waiting"}
            ]},
            "items": [1, 2, 3]
        });
        assert_eq!(jsonpath(&o, ".spec.replicas"), Some(json!(3)));
        assert_eq!(jsonpath(&o, "{.spec.replicas}"), Some(json!(3)));
        assert_eq!(jsonpath(&o, "$.metadata.name"), Some(json!("x")));
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("False"))
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type=='Ready')].reason"),
            Some(json!("Waiting"))
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type!=\"Ready\")].type"),
            Some(json!("Progressing"))
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.reason)].type"),
            Some(json!("Ready"))
        );
        assert_eq!(jsonpath(&o, ".items[0]"), Some(json!(1)));
        assert_eq!(jsonpath(&o, ".items[-1]"), Some(json!(3)));
        assert_eq!(jsonpath(&o, ".items[?(@ > 1)]"), Some(json!(2)));
        assert_eq!(
            jsonpath(&o, ".spec.template.spec.containers[*].image"),
            Some(json!("a"))
        );
        assert_eq!(jsonpath(&o, "..image"), Some(json!("a")));
        assert_eq!(
            jsonpath(&o, ".metadata.labels.app\\.kubernetes\\.io/name"),
            Some(json!("web"))
        );
        assert_eq!(
            jsonpath(&o, ".metadata.labels['app.kubernetes.io/name']"),
            Some(json!("web"))
        );
        assert_eq!(jsonpath(&o, ".spec.missing"), None);
        assert_eq!(jsonpath(&o, ".items[9]"), None);
        assert_eq!(jsonpath(&o, ".items[oops"), None);
    }
}
