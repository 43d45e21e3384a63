//! Label selectors: the string grammar of `labels.Parse`
//! (`a=b,c!=d,e in (x,y),f notin (z),g,!h,n>1`) and `metav1.LabelSelector`.

use std::fmt;

use serde_json::{Map, Value};

use super::validation::{aggregate, invalid, invalid_list, label_value, qualified_name};
use super::SelectorError;

/// How a requirement relates a label key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key in (a,b)` / `In`.
    In,
    /// `key notin (a,b)` / `NotIn`.
    NotIn,
    /// `key=a`.
    Equals,
    /// `key==a`.
    DoubleEquals,
    /// `key!=a`.
    NotEquals,
    /// `key` / `Exists`.
    Exists,
    /// `!key` / `DoesNotExist`.
    DoesNotExist,
    /// `key>3` (integer compare).
    GreaterThan,
    /// `key<3` (integer compare).
    LessThan,
}

/// One `key op values` term; values are sorted and de-duplicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Validates like `labels.NewRequirement`; `path` prefixes field paths
    /// (empty for none). Returns the list of field error messages on failure.
    fn new(
        key: &str,
        op: Operator,
        mut values: Vec<String>,
        path: &str,
    ) -> Result<Self, Vec<String>> {
        let child = |c: &str| {
            if path.is_empty() {
                c.to_string()
            } else {
                format!("{path}.{c}")
            }
        };
        let mut errs = Vec::new();
        let key_errs = qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(invalid(&child("key"), key, &key_errs.join("; ")));
        }
        let vpath = child("values");
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(invalid_list(
                &vpath,
                &values,
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(invalid_list(
                    &vpath,
                    &values,
                    "exact-match compatibility requires one single value",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(invalid_list(
                    &vpath,
                    &values,
                    "values set must be empty for exists and does not exist",
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(invalid_list(
                        &vpath,
                        &values,
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("{vpath}[{i}]"),
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let v_errs = label_value(v);
            if !v_errs.is_empty() {
                errs.push(invalid(
                    &format!("{vpath}[{i}][{key}]"),
                    v,
                    &v_errs.join("; "),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key: key.to_string(),
            op,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.op
    }

    /// The values (sorted, unique).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether the labels satisfy this requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        });
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| has(&v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !has(&v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let joined = self.values.join(",");
        match self.op {
            Operator::Equals => write!(f, "={joined}"),
            Operator::DoubleEquals => write!(f, "=={joined}"),
            Operator::NotEquals => write!(f, "!={joined}"),
            Operator::In => write!(f, " in ({joined})"),
            Operator::NotIn => write!(f, " notin ({joined})"),
            Operator::GreaterThan => write!(f, ">{joined}"),
            Operator::LessThan => write!(f, "<{joined}"),
            Operator::Exists | Operator::DoesNotExist => Ok(()),
        }
    }
}

/// A conjunction of label requirements. The empty selector matches
/// everything; the selector of a null `metav1.LabelSelector` matches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Parses the string form, e.g. `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`). `null` gives a selector that matches nothing.
    pub fn from_json(v: &Value) -> Result<Self, SelectorError> {
        let obj = match v {
            Value::Null => {
                return Ok(Self {
                    requirements: Vec::new(),
                    nothing: true,
                })
            }
            Value::Object(o) => o,
            _ => return Err(SelectorError::Malformed("expected an object".into())),
        };
        let mut requirements = Vec::new();
        let to_err = |errs: Vec<String>| SelectorError::Invalid(aggregate(&errs));
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| {
                        SelectorError::Malformed(format!("matchLabels[{k}] must be a string"))
                    })?;
                    requirements.push(
                        Requirement::new(k, Operator::Equals, vec![v.to_string()], "")
                            .map_err(to_err)?,
                    );
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchLabels must be an object".into(),
                ))
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for e in exprs {
                    let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                    let op = e
                        .get("operator")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let op = match op {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        other => return Err(SelectorError::Operator(other.to_string())),
                    };
                    let values = match e.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                SelectorError::Malformed("values must be strings".into())
                            })?,
                        Some(_) => {
                            return Err(SelectorError::Malformed("values must be an array".into()))
                        }
                    };
                    requirements.push(Requirement::new(key, op, values, "").map_err(to_err)?);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchExpressions must be an array".into(),
                ))
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Whether the labels (`metadata.labels`, empty when absent) satisfy every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True for the selector that selects everything (no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (requirements sorted by key), as `Selector.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Comma,
    Open,
    Close,
    In,
    NotIn,
    Gt,
    Lt,
    End,
    Error(String),
}

impl Tok {
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) | Tok::Error(s) => s,
            Tok::Bang => "!",
            Tok::NotEquals => "!=",
            Tok::Equals => "=",
            Tok::DoubleEquals => "==",
            Tok::Comma => ",",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn symbol(s: &str) -> Option<Tok> {
    Some(match s {
        "!" => Tok::Bang,
        "!=" => Tok::NotEquals,
        "=" => Tok::Equals,
        "==" => Tok::DoubleEquals,
        "," => Tok::Comma,
        "(" => Tok::Open,
        ")" => Tok::Close,
        ">" => Tok::Gt,
        "<" => Tok::Lt,
        _ => return None,
    })
}

/// The upstream lexer: identifiers run to whitespace or a special symbol;
/// symbols are matched greedily.
fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_space(c) {
            i += 1;
        } else if is_special(c) {
            let mut buf = String::new();
            let mut last: Option<(Tok, usize)> = None;
            while i < chars.len() && is_special(chars[i]) {
                buf.push(chars[i]);
                if let Some(t) = symbol(&buf) {
                    last = Some((t, i + 1));
                } else if last.is_some() {
                    break;
                }
                i += 1;
            }
            match last {
                Some((t, end)) => {
                    i = end;
                    out.push(t);
                }
                None => out.push(Tok::Error(format!("error expected: keyword found '{buf}'"))),
            }
        } else {
            let start = i;
            while i < chars.len() && !is_space(chars[i]) && !is_special(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident(word),
            });
        }
    }
    out.push(Tok::End);
    out
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

/// Parser contexts of upstream: in `Values`, `in`/`notin` are identifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

fn as_ctx(t: &Tok, ctx: Ctx) -> Tok {
    match (t, ctx) {
        (Tok::In | Tok::NotIn, Ctx::Values) => Tok::Ident(t.literal().to_string()),
        _ => t.clone(),
    }
}

impl Parser {
    fn lookahead(&self, ctx: Ctx) -> Tok {
        as_ctx(&self.tokens[self.pos.min(self.tokens.len() - 1)], ctx)
    }

    fn consume(&mut self, ctx: Ctx) -> Tok {
        let t = self.lookahead(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.lookahead(Ctx::Values) {
                Tok::Ident(_) | Tok::Bang => {
                    reqs.push(self.requirement().map_err(SelectorError::Requirement)?);
                    match self.consume(Ctx::Values) {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let t = self.lookahead(Ctx::Values);
                            if !matches!(t, Tok::Ident(_) | Tok::Bang) {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut op = None;
        let mut t = self.consume(Ctx::Values);
        if t == Tok::Bang {
            op = Some(Operator::DoesNotExist);
            t = self.consume(Ctx::Values);
        }
        let Tok::Ident(key) = t else {
            return Err(format!("found '{}', expected: identifier", t.literal()));
        };
        let key_errs = qualified_name(&key);
        if !key_errs.is_empty() {
            return Err(invalid("<nil>", &key, &key_errs.join("; ")));
        }
        if matches!(self.lookahead(Ctx::Values), Tok::End | Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new(), "").map_err(|e| aggregate(&e));
        }
        let op = match self.consume(Ctx::KeyAndOperator) {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ))
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values, "").map_err(|e| aggregate(&e))
    }

    fn values(&mut self) -> Result<Vec<String>, String> {
        let t = self.consume(Ctx::Values);
        if t != Tok::Open {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        match self.lookahead(Ctx::Values) {
            Tok::Ident(_) | Tok::Comma => {
                let vals = self.identifiers()?;
                let t = self.consume(Ctx::Values);
                if t != Tok::Close {
                    return Err(format!("found '{}', expected: ')'", t.literal()));
                }
                Ok(vals)
            }
            Tok::Close => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut vals: Vec<String> = Vec::new();
        loop {
            match self.consume(Ctx::Values) {
                Tok::Ident(v) => {
                    vals.push(v);
                    match self.lookahead(Ctx::Values) {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(vals),
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.literal())),
                    }
                }
                Tok::Comma => {
                    if vals.is_empty() {
                        vals.push(String::new());
                    }
                    match self.lookahead(Ctx::Values) {
                        Tok::Close => {
                            vals.push(String::new());
                            return Ok(vals);
                        }
                        Tok::Comma => {
                            self.consume(Ctx::Values);
                            vals.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    ))
                }
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead(Ctx::Values), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.consume(Ctx::Values) {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_all_forms_and_normalizes() {
        let s = LabelSelector::parse(
            " tier notin (cache) , app in (web,api),env==prod,x!=y,has, !gone, n>3",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app in (api,web),env==prod,!gone,has,n>3,tier notin (cache),x!=y"
        );
        assert_eq!(s.requirements().len(), 7);
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::parse("   ").unwrap().is_empty());
        // Keywords are plain identifiers in value position and as keys.
        let s = LabelSelector::parse("in=notin").unwrap();
        assert_eq!(s.requirements()[0].values(), ["notin"]);
        // Empty values.
        assert_eq!(
            LabelSelector::parse("a=").unwrap().requirements()[0].values(),
            [""]
        );
        assert_eq!(
            LabelSelector::parse("a in ()").unwrap().requirements()[0].values(),
            [""]
        );
        assert_eq!(
            LabelSelector::parse("a in (,b)").unwrap().requirements()[0].values(),
            ["", "b"]
        );
        assert_eq!(
            LabelSelector::parse("app.kubernetes.io/name=nginx")
                .unwrap()
                .to_string(),
            "app.kubernetes.io/name=nginx"
        );
    }

    #[test]
    fn matching() {
        let l = labels(json!({"app": "web", "env": "prod", "n": "5"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m("app=web"));
        assert!(m("app==web,env=prod"));
        assert!(!m("app=api"));
        assert!(m("app!=api"));
        assert!(m("missing!=x"));
        assert!(m("app in (api,web)"));
        assert!(!m("app notin (api,web)"));
        assert!(m("missing notin (a)"));
        assert!(!m("missing in (a)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("n>4") && !m("n>5") && m("n<6"));
        assert!(!m("app>1"));
        assert!(m(""));
        assert!(LabelSelector::parse("!app").unwrap().matches(&Map::new()));
    }

    #[test]
    fn syntax_errors_match_upstream() {
        let e = |s: &str| LabelSelector::parse(s).unwrap_err().to_string();
        assert_eq!(e("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(e("a=b c=d"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(
            e(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            e("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            e("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            e("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            e("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            e("!,a"),
            "unable to parse requirement: found ',', expected: identifier"
        );
        assert_eq!(
            e("a=(b)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(e("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(e("a>x"), "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer");
    }

    #[test]
    fn validation_errors_match_upstream() {
        let e = LabelSelector::parse("-bad=x").unwrap_err().to_string();
        assert!(e.starts_with("unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must consist of alphanumeric characters"), "{e}");
        let e = LabelSelector::parse("app=a b").unwrap_err().to_string();
        assert_eq!(e, "found 'b', expected: ',' or 'end of string'");
        let e = LabelSelector::parse("app=-x").unwrap_err().to_string();
        assert!(e.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-x\": a valid label must be"), "{e}");
        let long = format!("k={}", "v".repeat(64));
        assert!(LabelSelector::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("must be no more than 63 characters"));
        assert!(LabelSelector::parse("Example.com/a=b").is_err());
        assert!(LabelSelector::parse("example.com/a=b").is_ok());
    }

    #[test]
    fn from_metav1_label_selector() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env,tier in (be,fe),zone notin (b)"
        );
        assert!(s.matches(&labels(json!({"app": "web", "tier": "fe", "env": "x"}))));
        assert!(!s.matches(&labels(
            json!({"app": "web", "tier": "fe", "env": "x", "canary": "1"})
        )));
        assert!(!s.matches(&labels(
            json!({"app": "web", "tier": "fe", "env": "x", "zone": "b"})
        )));

        let empty = LabelSelector::from_json(&json!({})).unwrap();
        assert!(empty.is_empty() && empty.matches(&Map::new()));
        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!nothing.is_empty() && !nothing.matches(&Map::new()));

        let e = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let e = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        let e = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("values set must be empty for exists and does not exist"));
        let e = LabelSelector::from_json(&json!({"matchLabels": {"a b": "c"}}));
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("key: Invalid value: \"a b\": name part"));
    }
}
