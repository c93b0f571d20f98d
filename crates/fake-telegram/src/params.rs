//! The parameters of one Bot API call, read alike from a query string, a form, JSON or a
//! multipart body, with the typed accessors the methods use.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{failure::ApiFailure, transcript::ApiRequest};

/// The parameters of one call, whatever encoding carried them.
pub(crate) struct Params {
    pub(crate) fields: Map<String, Value>,
    /// Every multipart part by name, so `attach://name` finds it whether or not it was sent as a file.
    pub(crate) parts: HashMap<String, Part>,
}

pub(crate) struct Part {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Bytes,
    pub(crate) is_file: bool,
}

impl Params {
    pub(crate) fn to_log(&self, method: &str) -> ApiRequest {
        let mut uploads: Vec<(String, usize)> = self
            .parts
            .iter()
            .filter(|(_, p)| p.is_file)
            .map(|(n, p)| (n.clone(), p.bytes.len()))
            .collect();
        uploads.sort();
        ApiRequest {
            method: method.to_owned(),
            params: Value::Object(self.fields.clone()),
            uploads,
            received_at: std::time::Instant::now(),
        }
    }

    fn value(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.get(name)
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiFailure> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ApiFailure::bad_request(format!(
                "field \"{name}\" must be of type String"
            ))),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiFailure> {
        let wrong = || ApiFailure::bad_request(format!("field \"{name}\" must be of type Integer"));
        match self.value(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(wrong),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong()),
            Some(_) => Err(wrong()),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiFailure> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "1" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" || s == "0" => Ok(Some(false)),
            Some(_) => Err(ApiFailure::bad_request(format!(
                "field \"{name}\" must be of type Boolean"
            ))),
        }
    }

    /// A structured parameter, sent either as JSON or, in forms, as a string holding JSON.
    pub fn json(&self, name: &str) -> Result<Option<Value>, ApiFailure> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| ApiFailure::bad_request(format!("can't parse {name} JSON object"))),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    pub fn chat_id(&self) -> Result<i64, ApiFailure> {
        match self.value("chat_id") {
            None => Err(ApiFailure::bad_request("chat_id is empty")),
            // The fake has only private chats, which have no usernames to address them by.
            Some(Value::String(s)) if s.starts_with('@') => {
                Err(ApiFailure::bad_request("chat not found"))
            }
            Some(_) => self
                .int("chat_id")?
                .ok_or_else(|| ApiFailure::bad_request("chat_id is empty")),
        }
    }

    pub fn message_id(&self) -> Result<i32, ApiFailure> {
        let id = self
            .int("message_id")?
            .ok_or_else(|| ApiFailure::bad_request("message identifier is not specified"))?;
        i32::try_from(id).map_err(|_| ApiFailure::bad_request("message identifier is invalid"))
    }
}
