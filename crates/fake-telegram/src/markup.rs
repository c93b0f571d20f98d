//! Telegram's rules for what the bot sends: keyboards, callback data, formatting and lengths.

use serde_json::Value;

use super::{
    failure::ApiFailure,
    transcript::{Button, Markup},
};

pub(crate) const MAX_TEXT_LEN: usize = 4096;
pub(crate) const MAX_CAPTION_LEN: usize = 1024;
const MAX_CALLBACK_DATA_BYTES: usize = 64;

/// Inline-button fields that each make a button do something; a button needs exactly one.
const BUTTON_ACTIONS: &[&str] = &[
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
];

/// Checks a `reply_markup` the way Telegram does and keeps what a person would see.
pub(crate) fn parse_reply_markup(value: &Value) -> Result<Markup, ApiFailure> {
    let invalid = || ApiFailure::bad_request("can't parse reply keyboard markup JSON object");
    let object = value.as_object().ok_or_else(invalid)?;
    if let Some(rows) = object.get("inline_keyboard") {
        let rows = rows.as_array().ok_or_else(|| {
            ApiFailure::bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays")
        })?;
        let mut parsed = Vec::with_capacity(rows.len());
        for row in rows {
            let row = row.as_array().ok_or_else(|| {
                ApiFailure::bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays")
            })?;
            parsed.push(
                row.iter()
                    .map(parse_inline_button)
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        return Ok(Markup::Inline(parsed));
    }
    if let Some(rows) = object.get("keyboard") {
        let rows = rows.as_array().ok_or_else(invalid)?;
        let mut parsed = Vec::with_capacity(rows.len());
        for row in rows {
            let row = row.as_array().ok_or_else(invalid)?;
            let texts = row
                .iter()
                .map(|b| match b {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("text").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiFailure::bad_request("keyboard button text must be a String"))?;
            parsed.push(texts);
        }
        return Ok(Markup::Keyboard(parsed));
    }
    if object.get("remove_keyboard").and_then(Value::as_bool) == Some(true) {
        return Ok(Markup::RemoveKeyboard);
    }
    if object.get("force_reply").and_then(Value::as_bool) == Some(true) {
        return Ok(Markup::ForceReply);
    }
    Err(invalid())
}

fn parse_inline_button(value: &Value) -> Result<Button, ApiFailure> {
    let object = value.as_object().ok_or_else(|| {
        ApiFailure::bad_request(
            "can't parse inline keyboard button: InlineKeyboardButton must be an Object",
        )
    })?;
    let text = object.get("text").and_then(Value::as_str).ok_or_else(|| {
        ApiFailure::bad_request(
            "can't parse inline keyboard button: Field \"text\" must be of type String",
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiFailure::bad_request("BUTTON_TEXT_EMPTY"));
    }
    let actions = BUTTON_ACTIONS
        .iter()
        .filter(|a| object.contains_key(**a))
        .count();
    if actions == 0 {
        return Err(ApiFailure::bad_request(
            "text buttons are unallowed in the inline keyboard",
        ));
    }
    if actions > 1 {
        return Err(ApiFailure::bad_request(
            "can't parse inline keyboard button: exactly one of the optional fields must be used",
        ));
    }
    let callback_data = match object.get("callback_data") {
        None => None,
        Some(Value::String(data)) if (1..=MAX_CALLBACK_DATA_BYTES).contains(&data.len()) => {
            Some(data.clone())
        }
        Some(_) => return Err(ApiFailure::bad_request("BUTTON_DATA_INVALID")),
    };
    let url = match object.get("url") {
        None => None,
        Some(Value::String(url)) if is_button_url(url) => Some(url.clone()),
        Some(_) => return Err(ApiFailure::bad_request("BUTTON_URL_INVALID")),
    };
    let pay = match object.get("pay") {
        None => false,
        Some(Value::Bool(pay)) => *pay,
        Some(_) => {
            return Err(ApiFailure::bad_request(
                "can't parse inline keyboard button: Field \"pay\" must be of type Boolean",
            ))
        }
    };
    Ok(Button {
        text: text.to_owned(),
        callback_data,
        url,
        pay,
    })
}

/// Telegram's rule for Pay buttons: "This type of button must always be the first button in the
/// first row and can only be used in invoice messages"; an invoice's own keyboard, if it has one,
/// must start with it.
pub(crate) fn check_pay_buttons(markup: &Markup, is_invoice: bool) -> Result<(), ApiFailure> {
    let Markup::Inline(rows) = markup else {
        return Ok(());
    };
    let buttons = rows.iter().flatten();
    let first_is_pay = rows
        .first()
        .and_then(|row| row.first())
        .is_some_and(|b| b.pay);
    if is_invoice && !first_is_pay {
        return Err(ApiFailure::bad_request("REPLY_MARKUP_BUY_EMPTY"));
    }
    let allowed_pay_buttons = usize::from(is_invoice);
    if buttons.filter(|b| b.pay).count() > allowed_pay_buttons {
        return Err(ApiFailure::bad_request("BUTTON_TYPE_INVALID"));
    }
    Ok(())
}

fn is_button_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .map(|u| {
            matches!(u.scheme(), "http" | "https" | "tg")
                && (u.scheme() == "tg" || u.host().is_some())
        })
        .unwrap_or(false)
}

/// Length as Telegram counts it: UTF-16 code units.
pub(crate) fn telegram_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Applies `parse_mode` and returns the text a person reads.
pub(crate) fn apply_parse_mode(text: &str, parse_mode: Option<&str>) -> Result<String, ApiFailure> {
    let parsed = match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(text.to_owned()),
        Some("html") => parse_html(text),
        Some("markdownv2") => parse_markdown_v2(text),
        Some("markdown") => parse_markdown_legacy(text),
        Some(other) => {
            return Err(ApiFailure::bad_request(format!(
                "unsupported parse_mode \"{other}\""
            )))
        }
    };
    parsed.map_err(|reason| ApiFailure::bad_request(format!("can't parse entities: {reason}")))
}

const HTML_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "span",
    "tg-emoji",
    "blockquote",
];

fn parse_html(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(['<', '&']) {
        let offset = text.len() - rest.len() + pos;
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with('&') {
            let (decoded, used) = html_entity(tail);
            out.push_str(&decoded);
            rest = &tail[used..];
            continue;
        }
        let Some(end) = tail.find('>') else {
            return Err(format!("Unclosed start tag at byte offset {offset}"));
        };
        let inside = &tail[1..end];
        rest = &tail[end + 1..];
        if let Some(name) = inside.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            match open.pop() {
                Some((expected, _)) if expected == name => {}
                Some((expected, _)) => {
                    return Err(format!(
                        "Unmatched end tag at byte offset {offset}, expected \"</{expected}>\", found \"</{name}>\""
                    ))
                }
                None => return Err(format!("Unexpected end tag at byte offset {offset}")),
            }
            continue;
        }
        let name: String = inside
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if !HTML_TAGS.contains(&name.as_str()) {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {offset}"
            ));
        }
        if name == "span" && !inside.contains("tg-spoiler") {
            return Err(format!(
                "Tag \"span\" must have class \"tg-spoiler\" at byte offset {offset}"
            ));
        }
        open.push((name, offset));
    }
    out.push_str(rest);
    match open.first() {
        Some((name, _)) => Err(format!(
            "Can't find end tag corresponding to start tag \"{name}\""
        )),
        None => Ok(out),
    }
}

/// Decodes the HTML entity at the start of `s`; Telegram knows four named ones and numeric ones.
fn html_entity(s: &str) -> (String, usize) {
    let Some(semi) = s.find(';').filter(|i| *i <= 10) else {
        return ("&".to_owned(), 1);
    };
    let name = &s[1..semi];
    let decoded = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        _ => name
            .strip_prefix("#x")
            .or_else(|| name.strip_prefix("#X"))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .or_else(|| name.strip_prefix('#').and_then(|dec| dec.parse().ok()))
            .and_then(char::from_u32),
    };
    match decoded {
        Some(c) => (c.to_string(), semi + 1),
        None => ("&".to_owned(), 1),
    }
}

/// Characters MarkdownV2 reserves: outside markup they must be escaped with a backslash.
const MARKDOWN_V2_RESERVED: &str = "_*[]()~`>#+-=|{}.!";

fn parse_markdown_v2(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<(&'static str, usize)> = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    let toggle = |open: &mut Vec<(&'static str, usize)>, marker: &'static str, offset: usize| {
        if open.last().map(|(m, _)| *m) == Some(marker) {
            open.pop();
        } else {
            open.push((marker, offset));
        }
    };
    while i < chars.len() {
        let (offset, c) = chars[i];
        let next = chars.get(i + 1).map(|(_, c)| *c);
        let at_line_start = i == 0 || chars[i - 1].1 == '\n';
        match c {
            '\\' => {
                match next {
                    Some(escaped) => {
                        out.push(escaped);
                        i += 2;
                        continue;
                    }
                    None => return Err(
                        "Character '\\' is reserved and must be escaped with the preceding '\\'"
                            .to_owned(),
                    ),
                }
            }
            '`' => {
                let fence = text[offset..].starts_with("```");
                let marker = if fence { "```" } else { "`" };
                let body_start = offset + marker.len();
                let Some(len) = find_unescaped(&text[body_start..], marker) else {
                    let entity = if fence { "Pre" } else { "Code" };
                    return Err(format!(
                        "Can't find end of {entity} entity at byte offset {offset}"
                    ));
                };
                let mut body = &text[body_start..body_start + len];
                if fence {
                    // The first line of a fenced block may name its language.
                    if let Some((first, rest)) = body.split_once('\n') {
                        if !first.contains(' ') {
                            body = rest;
                        }
                    }
                }
                out.push_str(&unescape(body));
                let end = body_start + len + marker.len();
                while i < chars.len() && chars[i].0 < end {
                    i += 1;
                }
                continue;
            }
            '*' => toggle(&mut open, "*", offset),
            '_' if next == Some('_') => {
                toggle(&mut open, "__", offset);
                i += 1;
            }
            '_' => toggle(&mut open, "_", offset),
            '~' => toggle(&mut open, "~", offset),
            '|' if next == Some('|') => {
                toggle(&mut open, "||", offset);
                i += 1;
            }
            '[' => open.push(("[", offset)),
            ']' if open.last().map(|(m, _)| *m) == Some("[") && next == Some('(') => {
                open.pop();
                let url_start = chars[i + 1].0 + 1;
                let Some(len) = text[url_start..].find(')') else {
                    return Err(format!(
                        "Can't find end of a URL at byte offset {url_start}"
                    ));
                };
                let end = url_start + len + 1;
                while i < chars.len() && chars[i].0 < end {
                    i += 1;
                }
                continue;
            }
            '>' if at_line_start => {}
            c if MARKDOWN_V2_RESERVED.contains(c) => {
                return Err(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ))
            }
            c => out.push(c),
        }
        i += 1;
    }
    match open.first() {
        Some((marker, offset)) => Err(format!(
            "Can't find end of {} entity at byte offset {offset}",
            entity_name(marker)
        )),
        None => Ok(out),
    }
}

fn entity_name(marker: &str) -> &'static str {
    match marker {
        "*" => "Bold",
        "_" => "Italic",
        "__" => "Underline",
        "~" => "Strikethrough",
        "||" => "Spoiler",
        "[" => "TextUrl",
        _ => "Pre",
    }
}

fn find_unescaped(s: &str, marker: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if s[i..].starts_with(marker) {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The old Markdown mode: `*bold*`, `_italic_`, `` `code` ``, `[text](url)`, nothing nests.
fn parse_markdown_legacy(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['*', '_', '`', '[', '\\']) {
        let offset = text.len() - rest.len() + pos;
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let marker = tail.chars().next().unwrap_or(' ');
        if marker == '\\' {
            let mut it = tail[1..].chars();
            match it.next() {
                Some(c) if "*_`[".contains(c) => {
                    out.push(c);
                    rest = &tail[1 + c.len_utf8()..];
                }
                _ => {
                    out.push('\\');
                    rest = &tail[1..];
                }
            }
            continue;
        }
        let closing = match marker {
            '[' => "]",
            '`' if tail.starts_with("```") => "```",
            '*' => "*",
            '_' => "_",
            _ => "`",
        };
        let body_start = if closing == "```" { 3 } else { 1 };
        let Some(len) = tail[body_start..].find(closing) else {
            return Err(format!(
                "Can't find end of the entity starting at byte offset {offset}"
            ));
        };
        out.push_str(&tail[body_start..body_start + len]);
        let mut after = &tail[body_start + len + closing.len()..];
        if marker == '[' && after.starts_with('(') {
            match after.find(')') {
                Some(close) => after = &after[close + 1..],
                None => {
                    return Err(format!(
                        "Can't find end of the entity starting at byte offset {offset}"
                    ))
                }
            }
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_stripped_and_checked() {
        assert_eq!(
            parse_html("<b>Hi</b> &lt;you&gt; &amp; <a href=\"https://x.y\">link</a>").unwrap(),
            "Hi <you> & link"
        );
        assert!(parse_html("<b>open")
            .unwrap_err()
            .contains("Can't find end tag"));
        assert!(parse_html("<div>x</div>")
            .unwrap_err()
            .contains("Unsupported start tag \"div\""));
        assert!(parse_html("<b><i>x</b></i>")
            .unwrap_err()
            .contains("Unmatched end tag"));
    }

    #[test]
    fn markdown_v2_demands_escapes() {
        assert_eq!(
            parse_markdown_v2("*Hi* \\- _you_ `a.b` [site](https://x.y/a_b)").unwrap(),
            "Hi - you a.b site"
        );
        assert!(parse_markdown_v2("Done.")
            .unwrap_err()
            .contains("Character '.' is reserved"));
        assert!(parse_markdown_v2("*bold")
            .unwrap_err()
            .contains("Can't find end of Bold entity"));
    }

    #[test]
    fn callback_data_is_limited_to_64_bytes() {
        let ok = serde_json::json!({"inline_keyboard": [[{"text": "A", "callback_data": "a".repeat(64)}]]});
        assert!(parse_reply_markup(&ok).is_ok());
        let long = serde_json::json!({"inline_keyboard": [[{"text": "A", "callback_data": "a".repeat(65)}]]});
        assert_eq!(
            parse_reply_markup(&long).unwrap_err().description,
            "Bad Request: BUTTON_DATA_INVALID"
        );
        let empty = serde_json::json!({"inline_keyboard": [[{"text": "A", "callback_data": ""}]]});
        assert!(parse_reply_markup(&empty).is_err());
    }
}
