//! What Kinesis answers before an operation runs, decided from the request's method, headers
//! and body alone: CORS for browsers (a preflight is answered at once; other answers expose
//! the AWS headers), methods other than POST, content types other than Kinesis's, an empty
//! body, a body that is not a document, and targets that name no operation. Pure decisions;
//! the server applies them.

/// Content type of the JSON 1.1 protocol.
const AMZ_JSON: &str = "application/x-amz-json-1.1";
/// Content type of the CBOR protocol.
const AMZ_CBOR: &str = "application/x-amz-cbor-1.1";
/// Plain JSON, which Kinesis's front end accepts and then answers in its own envelope.
const PLAIN_JSON: &str = "application/json";

/// The headers a browser may read from an answer.
pub const EXPOSED_HEADERS: &str =
    "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date";
/// How long a browser may keep a preflight's answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "172800";

/// What the front end needs to know of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// `Content-Type`, without parameters.
    pub content_type: Option<&'a str>,
    /// `X-Amz-Target`.
    pub target: Option<&'a str>,
    /// Whether the request carries an `Origin` (it comes from a browser).
    pub origin: bool,
    /// `Access-Control-Request-Headers` of a preflight.
    pub preflight_headers: Option<&'a str>,
    /// `Access-Control-Request-Method` of a preflight.
    pub preflight_method: Option<&'a str>,
}

/// The protocol a request speaks, once the front end lets it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// JSON 1.1.
    Json,
    /// CBOR.
    Cbor,
}

/// An answer the front end gives without running an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, when the answer has a typed body.
    pub content_type: Option<&'static str>,
    /// The body: a JSON document, or (for a protocol that is not Kinesis's) XML.
    pub body: Body,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
}

/// The body of a front-end answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Nothing.
    Empty,
    /// A JSON document, sent as CBOR to a CBOR request.
    Document(serde_json::Value),
    /// Text sent as it is.
    Raw(String),
}

impl Answer {
    fn new(status: u16, content_type: Option<&'static str>, body: Body) -> Self {
        Self {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }
}

impl Answer {
    /// The error type the answer carries (for the request counters), or `ok` for a preflight.
    pub fn outcome(&self) -> String {
        match &self.body {
            Body::Empty => "ok".to_owned(),
            Body::Document(document) => document
                .get("__type")
                .or_else(|| document.get("Output").and_then(|o| o.get("__type")))
                .and_then(|t| t.as_str())
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
                .unwrap_or_default(),
            Body::Raw(text) => text
                .trim_start_matches('<')
                .split(['>', '/'])
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// The CORS headers of an answer to a browser's request that is not a preflight.
pub fn cors_headers(request: &Request<'_>) -> Vec<(&'static str, String)> {
    if !request.origin {
        return Vec::new();
    }
    vec![
        ("access-control-allow-origin", "*".to_owned()),
        ("access-control-expose-headers", EXPOSED_HEADERS.to_owned()),
    ]
}

/// Whether the target names a Kinesis operation's service and an operation name at all.
fn target_parts(target: Option<&str>) -> (bool, bool) {
    let mut parts = target.unwrap_or("").splitn(2, '.');
    let service = parts.next().is_some_and(|s| !s.is_empty());
    let operation = parts.next().is_some_and(|s| !s.is_empty());
    (service, operation)
}

fn xml_error(kind: &str, message: &str) -> String {
    format!("<{kind}>\n  <Message>{message}</Message>\n</{kind}>\n")
}

const NO_OPERATION: &str = "Unable to determine service/operation name to be authorized";

/// Decides from the request's head alone: a preflight's answer, or a refusal of the method.
pub fn before_body(request: &Request<'_>) -> Result<(), Answer> {
    if request.origin && request.method == "OPTIONS" {
        let mut answer = Answer::new(200, None, Body::Empty);
        answer
            .headers
            .push(("access-control-allow-origin", "*".to_owned()));
        if let Some(headers) = request.preflight_headers {
            answer
                .headers
                .push(("access-control-allow-headers", headers.to_owned()));
        }
        if let Some(method) = request.preflight_method {
            answer
                .headers
                .push(("access-control-allow-methods", method.to_owned()));
        }
        answer
            .headers
            .push(("access-control-max-age", PREFLIGHT_MAX_AGE.to_owned()));
        return Err(answer);
    }
    if request.method != "POST" {
        return Err(Answer::new(
            403,
            None,
            Body::Raw(xml_error("AccessDeniedException", NO_OPERATION)),
        ));
    }
    Ok(())
}

/// Decides once the body is read: the protocol, or the answer Kinesis gives to an empty body,
/// a content type it does not speak, a body that is not a document, or an unknown target
/// (`known_operation` says whether the target names an operation Brook serves).
pub fn after_body(
    request: &Request<'_>,
    known_operation: bool,
    body: &[u8],
) -> Result<Protocol, Answer> {
    let content_type = request.content_type.unwrap_or("");
    let speaks = matches!(content_type, AMZ_JSON | AMZ_CBOR | PLAIN_JSON);
    let (service, operation) = target_parts(request.target);
    let document = |kind: &str| Body::Document(serde_json::json!({ "__type": kind }));
    if body.is_empty() {
        let content_type = if content_type == AMZ_JSON {
            AMZ_JSON
        } else {
            AMZ_CBOR
        };
        let kind = if known_operation {
            "SerializationException"
        } else {
            "UnknownOperationException"
        };
        return Err(Answer::new(400, Some(content_type), document(kind)));
    }
    if !speaks {
        if !service || !operation {
            return Err(Answer::new(
                403,
                None,
                Body::Raw(xml_error("AccessDeniedException", NO_OPERATION)),
            ));
        }
        return Err(Answer::new(
            404,
            None,
            Body::Raw("<UnknownOperationException/>\n".to_owned()),
        ));
    }
    // Only the first byte is looked at (a map, an object): the body is parsed once, by the
    // operation, whose decoder answers a malformed document.
    let is_document = match content_type {
        AMZ_CBOR => body.first().is_some_and(|b| (0xa0..=0xbf).contains(b)),
        _ => body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
    };
    let coral = |kind: &str| {
        Body::Document(serde_json::json!({
            "Output": { "__type": format!("com.amazon.coral.service#{kind}") },
            "Version": "1.0",
        }))
    };
    if content_type == PLAIN_JSON {
        return Err(if is_document {
            Answer::new(404, Some(PLAIN_JSON), coral("UnknownOperationException"))
        } else {
            Answer::new(400, Some(PLAIN_JSON), coral("SerializationException"))
        });
    }
    let protocol = if content_type == AMZ_CBOR {
        Protocol::Cbor
    } else {
        Protocol::Json
    };
    let content_type = if protocol == Protocol::Cbor {
        AMZ_CBOR
    } else {
        AMZ_JSON
    };
    if !is_document {
        return Err(Answer::new(
            400,
            Some(content_type),
            document("SerializationException"),
        ));
    }
    if !known_operation {
        return Err(Answer::new(
            400,
            Some(content_type),
            document("UnknownOperationException"),
        ));
    }
    Ok(protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(content_type: Option<&'static str>, target: Option<&'static str>) -> Request<'static> {
        Request {
            method: "POST",
            content_type,
            target,
            ..Request::default()
        }
    }

    #[test]
    fn an_answer_names_its_error_type_for_the_counters() {
        let json = Some(AMZ_JSON);
        let create = Some("Kinesis_20131202.CreateStream");
        let outcome = |answer: Result<Protocol, Answer>| answer.expect_err("answered").outcome();
        assert_eq!(
            outcome(after_body(&post(json, create), true, b"")),
            "SerializationException"
        );
        assert_eq!(
            outcome(after_body(&post(Some(PLAIN_JSON), create), true, b"{}")),
            "UnknownOperationException"
        );
        assert_eq!(
            outcome(after_body(&post(Some("text/plain"), create), true, b"{}")),
            "UnknownOperationException"
        );
        assert_eq!(
            outcome(after_body(&post(Some("text/plain"), None), false, b"{}")),
            "AccessDeniedException"
        );
    }

    #[test]
    fn a_browser_preflight_is_answered_with_what_it_asked_for() {
        let answer = before_body(&Request {
            method: "OPTIONS",
            origin: true,
            preflight_headers: Some("content-type,x-amz-target"),
            preflight_method: Some("POST"),
            ..Request::default()
        })
        .expect_err("answered at once");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, Body::Empty);
        assert_eq!(
            answer.headers,
            vec![
                ("access-control-allow-origin", "*".to_owned()),
                (
                    "access-control-allow-headers",
                    "content-type,x-amz-target".to_owned()
                ),
                ("access-control-allow-methods", "POST".to_owned()),
                ("access-control-max-age", "172800".to_owned()),
            ]
        );
    }

    #[test]
    fn requests_kinesis_does_not_take_get_its_answers() {
        let get = before_body(&Request {
            method: "GET",
            ..Request::default()
        })
        .expect_err("refused");
        assert_eq!(get.status, 403);
        let json = Some(AMZ_JSON);
        let create = Some("Kinesis_20131202.CreateStream");
        assert_eq!(
            after_body(&post(json, create), true, b"").map_err(|a| (a.status, a.body)),
            Err((
                400,
                Body::Document(serde_json::json!({"__type": "SerializationException"}))
            ))
        );
        assert_eq!(
            after_body(&post(json, Some("Kinesis_20131202.Nope")), false, b"{}")
                .map_err(|a| (a.status, a.body)),
            Err((
                400,
                Body::Document(serde_json::json!({"__type": "UnknownOperationException"}))
            ))
        );
        assert_eq!(
            after_body(&post(Some("text/plain"), create), true, b"{}").map_err(|a| a.status),
            Err(404)
        );
        assert_eq!(
            after_body(&post(Some("text/plain"), None), false, b"{}").map_err(|a| a.status),
            Err(403)
        );
        assert_eq!(
            after_body(&post(json, create), true, b"[1]").map_err(|a| (a.status, a.body)),
            Err((
                400,
                Body::Document(serde_json::json!({"__type": "SerializationException"}))
            ))
        );
        assert_eq!(
            after_body(&post(Some(PLAIN_JSON), create), true, b"{}").map_err(|a| a.status),
            Err(404)
        );
        assert_eq!(
            after_body(&post(json, create), true, b"{}"),
            Ok(Protocol::Json)
        );
        assert_eq!(
            after_body(&post(Some(AMZ_CBOR), create), true, &[0xa0]),
            Ok(Protocol::Cbor)
        );
    }
}
