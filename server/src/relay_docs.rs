//! `GET /kie/docs`: the relay's OpenAPI document as a page a person reads — every operation
//! with its parameters, body fields and answers — rendered on the server from `openapi.json`
//! (no script, nothing fetched from elsewhere).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write;

use crate::relay::OPENAPI_DOC;

/// Text made safe inside HTML or SVG markup and quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The type of a schema in a word or two (`string`, `object`, `number | null`, a `$ref`'s name).
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ => "any".into(),
    }
}

/// A table of an object schema's fields.
fn fields(out: &mut String, schema: &Value) {
    let Some(props) = schema["properties"].as_object() else { return };
    let required: Vec<&str> = schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    out.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>");
    for (name, p) in props {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&type_of(p)),
            if required.contains(&name.as_str()) { "yes" } else { "" },
            esc(p["description"].as_str().unwrap_or_default())
        );
    }
    out.push_str("</table>");
}

/// The page.
pub fn render(doc: &Value) -> String {
    let mut out = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let title = esc(doc["info"]["title"].as_str().unwrap_or("Relay API"));
    let _ = write!(out, "<title>{title}</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}}code{{background:#f2f4f7;padding:0 .25rem}}table{{border-collapse:collapse;margin:.5rem 0 1rem}}td,th{{border:1px solid #d0d5dd;padding:.25rem .5rem;text-align:left;vertical-align:top}}h2{{margin-top:2rem}}.m{{font-weight:700;text-transform:uppercase}}</style></head><body>");
    let _ = write!(out, "<h1>{title}</h1><p>{}</p><p>The machine-readable document: <a href=\"/kie/openapi.json\"><code>/kie/openapi.json</code></a> (OpenAPI {}).</p>", esc(doc["info"]["description"].as_str().unwrap_or_default()), esc(doc["openapi"].as_str().unwrap_or_default()));
    let Some(paths) = doc["paths"].as_object() else { return out + "</body></html>" };
    for (path, ops) in paths {
        let Some(ops) = ops.as_object() else { continue };
        for (method, op) in ops {
            let _ = write!(out, "<h2><span class=\"m\">{}</span> <code>{}</code></h2><p>{}</p>", esc(method), esc(path), esc(op["summary"].as_str().unwrap_or_default()));
            if let Some(params) = op["parameters"].as_array() {
                out.push_str("<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>type</th><th>required</th></tr>");
                for p in params {
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(p["name"].as_str().unwrap_or_default()),
                        esc(p["in"].as_str().unwrap_or_default()),
                        esc(&type_of(&p["schema"])),
                        if p["required"].as_bool().unwrap_or(false) { "yes" } else { "" }
                    );
                }
                out.push_str("</table>");
            }
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            if body.is_object() {
                out.push_str("<h3>Body (JSON)</h3>");
                fields(&mut out, body);
            }
            if let Some(responses) = op["responses"].as_object() {
                out.push_str("<h3>Answers</h3><table><tr><th>status</th><th>when</th></tr>");
                for (status, r) in responses {
                    let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(status), esc(r["description"].as_str().unwrap_or_default()));
                }
                out.push_str("</table>");
            }
        }
    }
    out.push_str("</body></html>");
    out
}

pub async fn docs() -> Response {
    match serde_json::from_str::<Value>(OPENAPI_DOC) {
        Ok(doc) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], render(&doc)).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("the relay's OpenAPI document does not parse: {e}")).into_response(),
    }
}
