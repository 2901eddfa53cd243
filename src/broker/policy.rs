//! Resource policies: IAM policy documents attached to streams and consumers, evaluated for
//! authenticated callers. An explicit Deny wins; a resource with a policy needs a matching
//! Allow; a resource without one is open to every authenticated caller.
//!
//! Principals match `*`, the account id or `arn:aws:iam::<account>:root` (any caller of the
//! account), the caller's access key id, or `arn:aws:iam::<account>:user/<access key id>`.

use serde::Deserialize;
use serde_json::Value;

/// Why a policy document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON of the IAM policy shape.
    #[error("the policy is not a valid IAM policy document: {0}")]
    Malformed(String),
    /// A feature Brook does not evaluate, refused rather than silently ignored.
    #[error("the policy uses {0}, which Brook does not evaluate")]
    Unsupported(&'static str),
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Allow or Deny.
    pub effect: Effect,
    /// Principal patterns.
    pub principals: Vec<String>,
    /// Action patterns, such as `kinesis:Put*`.
    pub actions: Vec<String>,
    /// Resource patterns.
    pub resources: Vec<String>,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its statements.
    pub statements: Vec<Statement>,
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The access key id that signed the request.
    pub access_key: &'a str,
    /// The broker's account id.
    pub account: &'a str,
}

/// What the policies say about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Refused by an explicit Deny.
    ExplicitDeny,
    /// Refused because a policy exists and none of its statements allows the call.
    ImplicitDeny,
}

fn strings(value: Option<&Value>, field: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| PolicyError::Malformed(format!("{field} must hold strings")))
            })
            .collect(),
        Some(_) => Err(PolicyError::Malformed(format!(
            "{field} must be a string or a list of strings"
        ))),
        None => Err(PolicyError::Malformed(format!("a statement needs {field}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    statement: Value,
}

/// Parses a policy document, refusing what Brook would not evaluate faithfully.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let document: Document =
        serde_json::from_str(text).map_err(|e| PolicyError::Malformed(e.to_string()))?;
    let raw = match document.statement {
        Value::Array(list) => list,
        single @ Value::Object(_) => vec![single],
        _ => {
            return Err(PolicyError::Malformed(
                "Statement must be an object or a list".into(),
            ));
        }
    };
    let mut statements = Vec::with_capacity(raw.len());
    for statement in raw {
        for unsupported in ["Condition", "NotAction", "NotResource", "NotPrincipal"] {
            if statement.get(unsupported).is_some() {
                return Err(PolicyError::Unsupported(match unsupported {
                    "Condition" => "Condition",
                    "NotAction" => "NotAction",
                    "NotResource" => "NotResource",
                    _ => "NotPrincipal",
                }));
            }
        }
        let effect = match statement.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => {
                return Err(PolicyError::Malformed(
                    "Effect must be Allow or Deny".into(),
                ));
            }
        };
        let principals = match statement.get("Principal") {
            Some(Value::String(star)) if star == "*" => vec!["*".to_owned()],
            Some(Value::Object(map)) => strings(map.get("AWS"), "Principal.AWS")?,
            _ => {
                return Err(PolicyError::Malformed(
                    "Principal must be \"*\" or {\"AWS\": ...}".into(),
                ));
            }
        };
        statements.push(Statement {
            effect,
            principals,
            actions: strings(statement.get("Action"), "Action")?,
            resources: strings(statement.get("Resource"), "Resource")?,
        });
    }
    Ok(Policy { statements })
}

/// Matches `text` against a pattern with `*` (any run) and `?` (any one character).
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |c: char| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn principal_matches(pattern: &str, caller: &Caller<'_>) -> bool {
    let account_root = format!("arn:aws:iam::{}:root", caller.account);
    let user = format!("arn:aws:iam::{}:user/{}", caller.account, caller.access_key);
    pattern == "*"
        || pattern == caller.account
        || pattern == account_root
        || pattern == caller.access_key
        || glob(pattern, &user, false)
}

fn statement_matches(
    statement: &Statement,
    caller: &Caller<'_>,
    action: &str,
    resource: &str,
) -> bool {
    statement
        .principals
        .iter()
        .any(|p| principal_matches(p, caller))
        && statement.actions.iter().any(|a| glob(a, action, true))
        && statement.resources.iter().any(|r| glob(r, resource, false))
}

/// Decides a call of `action` (such as `kinesis:PutRecord`) on `resource` given the policies
/// attached to it (a consumer call passes its own and its stream's).
pub fn evaluate(
    policies: &[&Policy],
    caller: &Caller<'_>,
    action: &str,
    resource: &str,
) -> Decision {
    let matching = |effect: Effect| {
        policies
            .iter()
            .flat_map(|p| &p.statements)
            .any(|s| s.effect == effect && statement_matches(s, caller, action, resource))
    };
    if matching(Effect::Deny) {
        Decision::ExplicitDeny
    } else if policies.is_empty() || matching(Effect::Allow) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/orders";

    fn caller(key: &str) -> Caller<'_> {
        Caller {
            access_key: key,
            account: "000000000000",
        }
    }

    fn policy(text: &str) -> Policy {
        parse(text).expect("a valid policy")
    }

    #[test]
    fn an_allow_for_one_key_admits_it_and_no_one_else() {
        let p = policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/AKIDWRITER"},"Action":["kinesis:PutRecord","kinesis:PutRecords"],"Resource":"arn:aws:kinesis:*:*:stream/orders"}]}"#,
        );
        assert_eq!(
            evaluate(&[&p], &caller("AKIDWRITER"), "kinesis:PutRecords", STREAM),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&[&p], &caller("AKIDWRITER"), "kinesis:GetRecords", STREAM),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&[&p], &caller("AKIDOTHER"), "kinesis:PutRecords", STREAM),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn an_explicit_deny_wins_over_any_allow() {
        let p = policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"*"},{"Effect":"Deny","Principal":{"AWS":["AKIDREADER"]},"Action":"kinesis:Put*","Resource":"*"}]}"#,
        );
        assert_eq!(
            evaluate(&[&p], &caller("AKIDREADER"), "kinesis:PutRecord", STREAM),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&[&p], &caller("AKIDREADER"), "kinesis:GetRecords", STREAM),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&[&p], &caller("AKIDWRITER"), "kinesis:PutRecord", STREAM),
            Decision::Allow
        );
    }

    #[test]
    fn without_a_policy_every_authenticated_caller_is_allowed() {
        assert_eq!(
            evaluate(&[], &caller("AKIDANY"), "kinesis:PutRecord", STREAM),
            Decision::Allow
        );
    }

    #[test]
    fn conditions_and_malformed_documents_are_refused() {
        assert_eq!(
            parse(
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"*","Condition":{}}]}"#
            ),
            Err(PolicyError::Unsupported("Condition"))
        );
        assert!(matches!(parse("not json"), Err(PolicyError::Malformed(_))));
        assert!(matches!(
            parse(
                r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"a","Resource":"*"}]}"#
            ),
            Err(PolicyError::Malformed(_))
        ));
    }

    #[test]
    fn globs_match_like_iam() {
        assert!(glob("kinesis:Put*", "kinesis:PutRecords", false));
        assert!(glob("KINESIS:get?ecords", "kinesis:GetRecords", true));
        assert!(!glob("kinesis:Get*", "kinesis:PutRecord", true));
        assert!(glob("*", "", false));
        assert!(glob("arn:*:stream/o*s", STREAM, false));
    }
}
