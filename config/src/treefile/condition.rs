//! `conditional-include` conditions: `<var> <op> <value>`, as rpm-ostree evaluates them.

use std::cmp::Ordering;

use serde_json::Value as J;

use crate::vars::Variables;

/// Why a condition could not be evaluated.
#[derive(Debug, PartialEq)]
pub(crate) enum CondError {
    Syntax(String),
    UnknownVariable(String),
    Type(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

const OPS: [(&str, Op); 6] = [
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("<", Op::Lt),
    (">", Op::Gt),
];

/// Parses the right-hand side: a boolean, a number or a quoted string.
fn parse_value(s: &str) -> Result<J, CondError> {
    match s {
        "true" => return Ok(J::Bool(true)),
        "false" => return Ok(J::Bool(false)),
        _ => {}
    }
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return Ok(J::String(s[1..s.len() - 1].to_string()));
        }
    }
    if let Ok(i) = s.parse::<i64>() {
        return Ok(J::from(i));
    }
    if let Ok(f) = s.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Ok(J::Number(n));
    }
    Err(CondError::Syntax(format!(
        "`{s}` is not a boolean, a number or a quoted string"
    )))
}

/// Evaluates one condition against `vars`.
pub(crate) fn evaluate(cond: &str, vars: &Variables) -> Result<bool, CondError> {
    let cond = cond.trim();
    let (pos, op_str, op) = OPS
        .iter()
        .filter_map(|(s, op)| cond.find(s).map(|p| (p, *s, *op)))
        .min_by_key(|(p, s, _)| (*p, std::cmp::Reverse(s.len())))
        .ok_or_else(|| {
            CondError::Syntax(format!(
                "`{cond}` has no operator (expected one of == != < <= > >=)"
            ))
        })?;
    let name = cond[..pos].trim();
    let rhs = parse_value(cond[pos + op_str.len()..].trim())?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(CondError::Syntax(format!(
            "`{name}` is not a variable name"
        )));
    }
    let lhs = vars
        .get(name)
        .ok_or_else(|| CondError::UnknownVariable(name.to_string()))?;
    let ord = match (lhs, &rhs) {
        (J::Number(a), J::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
        (J::Bool(a), J::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => a.cmp(b),
        (J::String(a), J::String(b)) if matches!(op, Op::Eq | Op::Ne) => a.cmp(b),
        _ => {
            return Err(CondError::Type(format!(
                "cannot compare `{name}` ({}) with {} using `{op_str}`",
                type_name(lhs),
                type_name(&rhs)
            )));
        }
    };
    Ok(match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    })
}

fn type_name(v: &J) -> &'static str {
    match v {
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        _ => "a non-scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        [
            ("basearch".to_string(), J::from("x86_64")),
            ("releasever".to_string(), J::from(40)),
            ("prod".to_string(), J::from(false)),
        ]
        .into()
    }

    #[test]
    fn evaluates_like_rpm_ostree() {
        let v = vars();
        let check = |c: &str| evaluate(c, &v);
        assert_eq!(check("basearch != \"s390x\""), Ok(true));
        assert_eq!(check("basearch == 'x86_64'"), Ok(true));
        assert_eq!(check("releasever < 41"), Ok(true));
        assert_eq!(check("releasever >= 41"), Ok(false));
        assert_eq!(check("releasever<=40"), Ok(true));
        assert_eq!(check("prod == false"), Ok(true));
        assert!(matches!(
            check("stream == \"x\""),
            Err(CondError::UnknownVariable(_))
        ));
        assert!(matches!(check("basearch < \"z\""), Err(CondError::Type(_))));
        assert!(matches!(
            check("basearch == x86_64"),
            Err(CondError::Syntax(_))
        ));
        assert!(matches!(check("basearch"), Err(CondError::Syntax(_))));
    }
}
