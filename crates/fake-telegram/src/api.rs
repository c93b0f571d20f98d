//! The HTTP side: routes, request bodies in Telegram's three encodings, and the token check.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::{to_bytes, Body},
    extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State},
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    routing::{any, get},
    Form, Json, Router,
};
use serde_json::{json, Map, Value};

use super::params::{Params, Part};
use super::{failure::ApiFailure, methods, Shared};

/// Large enough for a 50 MB document plus form overhead; Telegram refuses anything larger.
const MAX_REQUEST_BYTES: usize = 52 * 1024 * 1024;

/// The routes of the fake Bot API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/file/{bot_token}/{*path}", get(download))
        .route("/{bot_token}/{method}", any(call))
        .fallback(|| async { ApiFailure::not_found() })
        // The body is read and limited by hand so that an oversized upload still gets a Telegram answer.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path((bot_token, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if bot_token.strip_prefix("bot") != Some(shared.token.as_str()) {
        return ApiFailure::unauthorized().into_response();
    }
    let params = match read_params(request).await {
        Ok(params) => params,
        Err(failure) => return failure.into_response(),
    };
    let name = methods::canonical_name(&method)
        .map(str::to_owned)
        .unwrap_or_else(|| method.clone());
    tracing::debug!(method = %name, "fake Telegram received a request");
    let fault = shared.write(|world| {
        world.requests.push(params.to_log(&name));
        world.take_fault(&name)
    });
    if let Some(failure) = fault {
        tracing::debug!(method = %name, code = failure.code, "fake Telegram answers with an injected error");
        return failure.into_response();
    }
    match methods::call(&shared, &name, &params).await {
        Ok(result) => Json(json!({ "ok": true, "result": result })).into_response(),
        Err(failure) => {
            tracing::debug!(method = %name, error = %failure.description, "fake Telegram refused a request");
            failure.into_response()
        }
    }
}

async fn download(
    State(shared): State<Arc<Shared>>,
    Path((bot_token, path)): Path<(String, String)>,
) -> Response {
    if bot_token.strip_prefix("bot") != Some(shared.token.as_str()) {
        return ApiFailure::not_found().into_response();
    }
    match shared.read(|world| world.file_by_path(&path).map(|f| f.bytes.clone())) {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => ApiFailure::not_found().into_response(),
    }
}

async fn read_params(request: Request) -> Result<Params, ApiFailure> {
    let (parts, body) = request.into_parts();
    let mut params = Params {
        fields: Map::new(),
        parts: HashMap::new(),
    };
    if parts.uri.query().is_some() {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|_| ApiFailure::bad_request("can't parse query string"))?;
        params
            .fields
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    }
    let bytes = to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| ApiFailure::too_large())?;
    if bytes.is_empty() {
        return Ok(params);
    }
    let content_type = content_type(&parts.headers);
    if content_type.starts_with("multipart/form-data") {
        let request = Request::from_parts(parts, Body::from(bytes));
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|_| ApiFailure::bad_request("can't parse multipart/form-data request"))?;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|_| ApiFailure::bad_request("can't parse multipart/form-data request"))?
        {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let file_name = field
                .file_name()
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            let has_file_name = field.file_name().is_some();
            let part_type = field.content_type().map(str::to_owned);
            let data = field
                .bytes()
                .await
                .map_err(|_| ApiFailure::bad_request("can't read multipart/form-data part"))?;
            let text = if has_file_name {
                None
            } else {
                std::str::from_utf8(&data).ok().map(str::to_owned)
            };
            let is_file = text.is_none();
            if let Some(text) = text {
                params.fields.insert(name.clone(), Value::String(text));
            }
            params.parts.insert(
                name,
                Part {
                    file_name,
                    content_type: part_type,
                    bytes: data,
                    is_file,
                },
            );
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let request = Request::from_parts(parts, Body::from(bytes));
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(request, &())
            .await
            .map_err(|_| {
                ApiFailure::bad_request("can't parse application/x-www-form-urlencoded request")
            })?;
        params
            .fields
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => params.fields.extend(object),
            _ => return Err(ApiFailure::bad_request("can't parse JSON object")),
        }
    }
    Ok(params)
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase()
}
