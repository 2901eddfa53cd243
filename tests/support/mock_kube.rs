//! A mocked Kubernetes API server behind kube's `Client`, in the tower-test pattern: the
//! client's requests arrive on a `tower_test::mock` handle and a small in-memory object store
//! answers them (GET, LIST by label, POST, PUT with resourceVersion checks, server-side apply,
//! merge and JSON patches, DELETE with finalizers and deletionTimestamp, and WATCH streams
//! of every change after a resourceVersion, so whole controllers run against it). Every
//! request is logged, so a test can assert which writes a reconcile made.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// The body of the mock's answers: a whole document, or a watch stream.
pub type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Content type of the body.
    pub content_type: String,
    /// The label selector of a list or watch, empty when none.
    pub label_selector: String,
    /// The request's JSON body (null when none), such as a DELETE's options.
    pub body: Value,
}

impl Logged {
    /// Whether the request changes something.
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// One change, as a watch reports it.
struct Change {
    version: u64,
    collection: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    /// Objects by collection path (`/api/v1/namespaces/shop/secrets`) and name.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    log: Vec<Logged>,
    next_version: u64,
    history: Vec<Change>,
    /// API groups served beyond the built-in ones: (group, version, kind, plural).
    groups: Vec<(String, String, String, String)>,
    /// Namespaces whose admission refuses new content, as from the moment their deletion
    /// begins (whatever the stored Namespace says).
    closed_namespaces: std::collections::BTreeSet<String>,
}

/// The mocked API server.
#[derive(Clone)]
pub struct MockKube {
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::Notify>,
}

fn status(code: u16, reason: &str, message: &str) -> Response<MockBody> {
    respond(code, &status_body(code, reason, message))
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn respond(code: u16, body: &Value) -> Response<MockBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status code"))
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(serde_json::to_vec(body).expect("json")))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
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

/// The namespace of a namespaced collection path (`/api/v1/namespaces/shop/secrets`).
fn namespace_of(collection: &str) -> Option<&str> {
    let parts: Vec<&str> = collection.trim_matches('/').split('/').collect();
    let at = parts.iter().position(|part| *part == "namespaces")?;
    match parts.get(at + 1..) {
        Some([namespace, _plural, ..]) => Some(namespace),
        _ => None,
    }
}

/// The API server's refusal of new content in a namespace being deleted.
fn namespace_terminating(collection: &str, name: &str, namespace: &str) -> Response<MockBody> {
    let plural = collection.rsplit('/').next().unwrap_or_default();
    let message = format!(
        "{plural} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated"
    );
    let mut body = status_body(403, "Forbidden", &message);
    body["details"] = json!({"name": name, "kind": plural, "causes": [{
        "reason": "NamespaceTerminating", "field": "metadata.namespace",
        "message": format!("namespace {namespace} is being terminated")}]});
    respond(403, &body)
}

/// Splits `/api/v1/namespaces/ns/plural/name/sub` into (collection, name, subresource).
fn split(path: &str) -> (String, Option<String>, Option<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if parts.first() == Some(&"api") { 2 } else { 3 };
    // base points at "namespaces" (namespaced) or at the plural (cluster-wide).
    // `/api/v1/namespaces/shop` is the Namespace `shop`, not a collection inside it.
    let collection_len = if parts.get(base) == Some(&"namespaces") && parts.len() > base + 2 {
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
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
        let mock = Self {
            state: Arc::default(),
            changed: Arc::default(),
        };
        let server = mock.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let response = server.answer(request).await;
                respond.send_response(response);
            }
        });
        (mock, Client::new(service, "default"))
    }

    /// Also serves the mock over HTTP on loopback, for processes that read a kubeconfig.
    pub async fn serve_http(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let mock = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mock = mock.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let mock = mock.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let bytes = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let request = Request::from_parts(parts, Body::from(bytes));
                                Ok::<_, Infallible>(mock.answer(request).await)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        address
    }

    /// Serves `kind` (`plural`) in `group`/`version`, as installing a CRD would.
    pub fn serve_group(&self, group: &str, version: &str, kind: &str, plural: &str) {
        self.state.lock().expect("mock state").groups.push((
            group.to_owned(),
            version.to_owned(),
            kind.to_owned(),
            plural.to_owned(),
        ));
    }

    /// Discovery: `/apis` lists the served groups, `/apis/<group>/<version>` their kinds.
    fn discovery(&self, path: &str) -> Option<Response<MockBody>> {
        let state = self.state.lock().expect("mock state");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["apis"] => {
                let groups: Vec<Value> = state
                    .groups
                    .iter()
                    .map(|(group, version, _, _)| {
                        let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
                        json!({"name": group, "versions": [gv], "preferredVersion": gv})
                    })
                    .collect();
                Some(respond(
                    200,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                ))
            }
            ["apis", group, version] => {
                let resources: Vec<Value> = state
                    .groups
                    .iter()
                    .filter(|(g, v, _, _)| g == group && v == version)
                    .map(|(_, _, kind, plural)| {
                        json!({"name": plural, "singularName": "", "namespaced": true, "kind": kind,
                            "verbs": ["get", "list", "watch", "create", "patch", "delete"]})
                    })
                    .collect();
                if resources.is_empty() {
                    return Some(status(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    ));
                }
                Some(respond(
                    200,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": format!("{group}/{version}"), "resources": resources}),
                ))
            }
            _ => None,
        }
    }

    /// A watch: every change of `collection` after `version`, then each new one as it comes.
    fn watch(&self, collection: String, version: u64, selector: String) -> Response<MockBody> {
        let state = self.state.clone();
        let changed = self.changed.clone();
        let events = futures::stream::unfold(version, move |mut cursor| {
            let state = state.clone();
            let changed = changed.clone();
            let collection = collection.clone();
            let selector = selector.clone();
            async move {
                loop {
                    let notified = changed.notified();
                    let lines: Vec<u8> = {
                        let state = state.lock().expect("mock state");
                        let mut lines = Vec::new();
                        let after = cursor;
                        for change in state.history.iter().filter(|c| c.version > after) {
                            cursor = change.version;
                            if change.collection == collection
                                && label_matches(&change.object, &selector)
                            {
                                let line = json!({"type": change.kind, "object": change.object});
                                lines.extend(serde_json::to_vec(&line).expect("json"));
                                lines.push(b'\n');
                            }
                        }
                        lines
                    };
                    if !lines.is_empty() {
                        let frame = http_body::Frame::data(Bytes::from(lines));
                        return Some((Ok::<_, Infallible>(frame), cursor));
                    }
                    notified.await;
                }
            }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(events).boxed_unsync())
            .expect("response")
    }

    async fn answer(&self, request: Request<Body>) -> Response<MockBody> {
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
        if method == Method::GET
            && let Some(answer) = self.discovery(&path)
        {
            return answer;
        }
        let (collection, name, _) = split(&path);
        if method == Method::GET
            && name.is_none()
            && query_param(&query, "watch").as_deref() == Some("true")
        {
            let version = query_param(&query, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let selector = query_param(&query, "labelSelector").unwrap_or_default();
            self.state.lock().expect("mock state").log.push(Logged {
                method: method.clone(),
                path: format!("{path}?watch"),
                content_type,
                label_selector: selector.clone(),
                body: Value::Null,
            });
            return self.watch(collection, version, selector);
        }
        let response = self.answer_now(method.clone(), &path, &query, &content_type, body);
        self.changed.notify_waiters();
        response
    }

    fn answer_now(
        &self,
        method: Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: Value,
    ) -> Response<MockBody> {
        let (query, content_type) = (query.to_owned(), content_type.to_owned());
        let path = path.to_owned();
        let mut state = self.state.lock().expect("mock state");
        state.log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            content_type: content_type.clone(),
            label_selector: query_param(&query, "labelSelector").unwrap_or_default(),
            body: body.clone(),
        });
        let (collection, name, sub) = split(&path);
        let creates = match (method.as_str(), &name) {
            ("POST", None) => true,
            ("PATCH", Some(name)) => {
                sub.is_none()
                    && content_type.contains("apply-patch")
                    && !state
                        .objects
                        .get(&collection)
                        .is_some_and(|o| o.contains_key(name))
            }
            _ => false,
        };
        if creates
            && let Some(namespace) = namespace_of(&collection)
            && state.closed_namespaces.contains(namespace)
        {
            let new_name = name
                .clone()
                .or_else(|| body["metadata"]["name"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return namespace_terminating(&collection, &new_name, namespace);
        }
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
            // A namespaced collection; `/api/v1/namespaces` itself holds Namespaces.
            if let Some(namespace) = parts
                .iter()
                .position(|p| *p == "namespaces")
                .and_then(|index| parts.get(index + 1))
            {
                object["metadata"]["namespace"] = json!(namespace);
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
        if deleting && unfinalized {
            Self::remove(state, collection, &name, object.clone());
        } else {
            let kind = if live.is_some() { "MODIFIED" } else { "ADDED" };
            state
                .objects
                .entry(collection.to_owned())
                .or_default()
                .insert(name, object.clone());
            state.history.push(Change {
                version,
                collection: collection.to_owned(),
                kind,
                object: object.clone(),
            });
        }
        object
    }

    fn remove(state: &mut State, collection: &str, name: &str, last: Value) {
        if let Some(objects) = state.objects.get_mut(collection) {
            objects.remove(name);
        }
        state.next_version += 1;
        let version = state.next_version;
        state.history.push(Change {
            version,
            collection: collection.to_owned(),
            kind: "DELETED",
            object: last,
        });
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
        let stored = Self::admit(&mut state, collection, object, live.as_ref());
        drop(state);
        self.changed.notify_waiters();
        stored
    }

    /// From now on the API server refuses new content in `namespace`, as it does once the
    /// namespace's deletion begins.
    pub fn close_namespace(&self, namespace: &str) {
        let mut state = self.state.lock().expect("mock state");
        state.closed_namespaces.insert(namespace.to_owned());
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
        let stored = Self::admit(&mut state, collection, next, Some(&live));
        drop(state);
        self.changed.notify_waiters();
        stored
    }

    /// Removes `name` at once, as a user's `kubectl delete` of an object without finalizers.
    pub fn remove_now(&self, collection: &str, name: &str) {
        let mut state = self.state.lock().expect("mock state");
        let live = state
            .objects
            .get(collection)
            .and_then(|o| o.get(name))
            .cloned();
        if let Some(live) = live {
            Self::remove(&mut state, collection, name, live);
        }
        drop(state);
        self.changed.notify_waiters();
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
