//! A mocked Kubernetes API server behind kube's `Client`, in the tower-test pattern: the
//! client's requests arrive on a `tower_test::mock` handle and a small in-memory object store
//! answers them (GET, LIST by label, POST, PUT with resourceVersion checks, server-side apply,
//! merge and JSON patches, DELETE with finalizers and deletionTimestamp). Every request is
//! logged, so a test can assert which writes a reconcile made.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Content type of the body.
    pub content_type: String,
}

impl Logged {
    /// Whether the request changes something.
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

#[derive(Default)]
struct State {
    /// Objects by collection path (`/api/v1/namespaces/shop/secrets`) and name.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    log: Vec<Logged>,
    next_version: u64,
}

/// The mocked API server.
#[derive(Clone, Default)]
pub struct MockKube {
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    respond(code, &body)
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status code"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// Deep merge: objects key by key, `null` deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Splits `/api/v1/namespaces/ns/plural/name/sub` into (collection, name, subresource).
fn split(path: &str) -> (String, Option<String>, Option<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if parts.first() == Some(&"api") { 2 } else { 3 };
    // base points at "namespaces" (namespaced) or at the plural (cluster-wide).
    let collection_len = if parts.get(base) == Some(&"namespaces") {
        base + 3
    } else {
        base + 1
    };
    let collection = format!("/{}", parts[..collection_len.min(parts.len())].join("/"));
    let name = parts.get(collection_len).map(|s| (*s).to_owned());
    let sub = parts.get(collection_len + 1).map(|s| (*s).to_owned());
    (collection, name, sub)
}

fn label_matches(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][key] == value
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            value
                .replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
    })
}

impl MockKube {
    /// A mocked API server and a kube `Client` that talks to it.
    pub fn start() -> (Self, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mock = Self::default();
        let server = mock.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let response = server.answer(request).await;
                respond.send_response(response);
            }
        });
        (mock, Client::new(service, "default"))
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut state = self.state.lock().expect("mock state");
        state.log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            content_type: content_type.clone(),
        });
        let (collection, name, sub) = split(&path);
        match (method.as_str(), name) {
            ("GET", None) => {
                let selector = query_param(&query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = state
                    .objects
                    .get(&collection)
                    .map(|objects| {
                        objects
                            .values()
                            .filter(|o| label_matches(o, &selector))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                respond(
                    200,
                    &json!({"kind": "List", "apiVersion": "v1",
                        "metadata": {"resourceVersion": state.next_version.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name)) => {
                match state.objects.get(&collection).and_then(|o| o.get(&name)) {
                    Some(object) => respond(200, object),
                    None => status(404, "NotFound", &format!("{name} not found")),
                }
            }
            ("POST", None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if state
                    .objects
                    .get(&collection)
                    .is_some_and(|o| o.contains_key(&name))
                {
                    return status(409, "AlreadyExists", &format!("{name} already exists"));
                }
                let object = Self::admit(&mut state, &collection, body, None);
                respond(201, &object)
            }
            ("PUT", Some(name)) => {
                let Some(live) = state.objects.get(&collection).and_then(|o| o.get(&name)) else {
                    return status(404, "NotFound", &format!("{name} not found"));
                };
                if body["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "the object has been modified");
                }
                let live = live.clone();
                let object = Self::admit(&mut state, &collection, body, Some(&live));
                respond(200, &object)
            }
            ("PATCH", Some(name)) => {
                let live = state
                    .objects
                    .get(&collection)
                    .and_then(|o| o.get(&name))
                    .cloned();
                let mut next = match (&live, content_type.as_str()) {
                    (None, t) if t.contains("apply-patch") && sub.is_none() => body.clone(),
                    (None, _) => return status(404, "NotFound", &format!("{name} not found")),
                    (Some(live), _) => live.clone(),
                };
                if content_type.contains("json-patch") {
                    let operations: Vec<Value> = body
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        // A test for null on a missing path passes, as in Kubernetes.
                        .filter(|op| {
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && next.pointer(op["path"].as_str().unwrap_or("")).is_none())
                        })
                        .collect();
                    let patch: json_patch::Patch =
                        serde_json::from_value(Value::Array(operations)).expect("json patch");
                    if json_patch::patch(&mut next, &patch).is_err() {
                        return status(422, "Invalid", "the JSON patch does not apply");
                    }
                } else if sub.as_deref() == Some("status") {
                    merge(&mut next["status"], &body["status"]);
                } else if live.is_some() {
                    merge(&mut next, &body);
                }
                let object = Self::admit(&mut state, &collection, next, live.as_ref());
                respond(200, &object)
            }
            ("DELETE", Some(name)) => {
                let Some(live) = state
                    .objects
                    .get(&collection)
                    .and_then(|o| o.get(&name))
                    .cloned()
                else {
                    return status(404, "NotFound", &format!("{name} not found"));
                };
                let has_finalizers = live["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    let mut marked = live.clone();
                    marked["metadata"]["deletionTimestamp"] = json!("2026-11-29T00:00:00Z");
                    let object = Self::admit(&mut state, &collection, marked, Some(&live));
                    return respond(200, &object);
                }
                if let Some(objects) = state.objects.get_mut(&collection) {
                    objects.remove(&name);
                }
                respond(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                )
            }
            _ => status(405, "MethodNotAllowed", "not supported by the mock"),
        }
    }

    /// Stores an object as the API server would: identity, versions, generation, Secret
    /// `stringData`, and removal of a deleted object whose last finalizer went.
    fn admit(
        state: &mut State,
        collection: &str,
        mut object: Value,
        live: Option<&Value>,
    ) -> Value {
        state.next_version += 1;
        let version = state.next_version;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(live) = live {
            object["metadata"]["uid"] = live["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] = live["metadata"]["creationTimestamp"].clone();
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(1);
            let spec_changed = object["spec"] != live["spec"];
            object["metadata"]["generation"] = json!(generation + i64::from(spec_changed));
            if object == *live {
                return object;
            }
        } else {
            object["metadata"]["uid"] = json!(format!("uid-{name}-{version}"));
            object["metadata"]["creationTimestamp"] = json!("2026-11-29T00:00:00Z");
            object["metadata"]["generation"] = json!(1);
            let parts: Vec<&str> = collection.trim_matches('/').split('/').collect();
            if let Some(index) = parts.iter().position(|p| *p == "namespaces") {
                object["metadata"]["namespace"] = json!(parts[index + 1]);
            }
        }
        if let Some(data) = object.get("stringData").and_then(Value::as_object).cloned() {
            for (key, value) in data {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(value.as_str().unwrap_or_default());
                object["data"][key] = json!(encoded);
            }
            object.as_object_mut().expect("object").remove("stringData");
        }
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let unfinalized = object["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let objects = state.objects.entry(collection.to_owned()).or_default();
        if deleting && unfinalized {
            objects.remove(&name);
        } else {
            objects.insert(name, object.clone());
        }
        object
    }

    /// Stores `object` in `collection` (a seeded resource, such as the Stream under test).
    pub fn insert(&self, collection: &str, object: Value) -> Value {
        let mut state = self.state.lock().expect("mock state");
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let live = state
            .objects
            .get(collection)
            .and_then(|o| o.get(&name))
            .cloned();
        Self::admit(&mut state, collection, object, live.as_ref())
    }

    /// The object `name` in `collection`.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().expect("mock state");
        state
            .objects
            .get(collection)
            .and_then(|o| o.get(name))
            .cloned()
    }

    /// Every object in `collection`.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let state = self.state.lock().expect("mock state");
        state
            .objects
            .get(collection)
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes the stored object `name` with `change` (a user's edit, or a controller's status).
    pub fn modify(&self, collection: &str, name: &str, change: impl FnOnce(&mut Value)) -> Value {
        let mut state = self.state.lock().expect("mock state");
        let live = state
            .objects
            .get(collection)
            .and_then(|o| o.get(name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {collection}"));
        let mut next = live.clone();
        change(&mut next);
        Self::admit(&mut state, collection, next, Some(&live))
    }

    /// Deletes `name` as `kubectl delete` would: marked while finalizers remain.
    pub fn delete(&self, collection: &str, name: &str) {
        self.modify(collection, name, |object| {
            object["metadata"]["deletionTimestamp"] = json!("2026-11-29T00:00:00Z");
        });
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().expect("mock state").log.clone()
    }

    /// Forgets the requests so far.
    pub fn clear_log(&self) {
        self.state.lock().expect("mock state").log.clear();
    }

    /// The write requests so far, as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(Logged::is_write)
            .map(|l| format!("{} {}", l.method, l.path))
            .collect()
    }

    /// The Events recorded in `namespace`, as (type, reason, note).
    pub fn events(&self, namespace: &str) -> Vec<(String, String, String)> {
        self.list(&format!(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
        ))
        .into_iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
    }
}
