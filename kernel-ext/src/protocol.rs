//! Building and reading Jupyter messages as JSON content, on top of `jupyter-protocol`'s envelope.

use jupyter_protocol::{JupyterMessage, JupyterMessageContent, UnknownMessage};
use serde_json::Value;

/// A message of any type with the given content, as a child of `parent` when given.
pub fn message(msg_type: &str, content: Value, parent: Option<&JupyterMessage>) -> JupyterMessage {
    let content = JupyterMessageContent::UnknownMessage(UnknownMessage { msg_type: msg_type.to_string(), content });
    JupyterMessage::new(content, parent)
}

/// An iopub message: same as [`message`], without the requester's routing identities.
pub fn broadcast(msg_type: &str, content: Value, parent: Option<&JupyterMessage>) -> JupyterMessage {
    message(msg_type, content, parent).with_zmq_identities(Vec::new())
}

/// A request's content as JSON.
pub fn content(msg: &JupyterMessage) -> Value {
    serde_json::to_value(&msg.content).unwrap_or(Value::Null)
}

/// Converts a cursor position in code points (Jupyter's unit) to a byte offset.
pub fn byte_offset(code: &str, cursor: usize) -> usize {
    code.char_indices().nth(cursor).map(|(i, _)| i).unwrap_or(code.len())
}

/// Converts a byte offset to a position in code points.
pub fn char_offset(code: &str, byte: usize) -> usize {
    code[..byte.min(code.len())].chars().count()
}

/// A MIME bundle from evcxr (values are strings) as Jupyter data: JSON types are parsed.
pub fn mime_data<'a>(entries: impl Iterator<Item = (&'a String, &'a String)>) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    for (mime, value) in entries {
        let parsed = if mime.contains("json") { serde_json::from_str(value).ok() } else { None };
        data.insert(mime.clone(), parsed.unwrap_or_else(|| Value::String(value.clone())));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_code_points() {
        let code = "let é = 1;";
        assert_eq!(byte_offset(code, 5), 6);
        assert_eq!(char_offset(code, 6), 5);
        assert_eq!(byte_offset(code, 100), code.len());
    }

    #[test]
    fn messages_carry_their_type_and_parent() {
        let parent = message("execute_request", serde_json::json!({"code": "1"}), None);
        let reply = message("execute_reply", serde_json::json!({"status": "ok"}), Some(&parent));
        assert_eq!(reply.header.msg_type, "execute_reply");
        assert_eq!(reply.parent_header.as_ref().unwrap().msg_id, parent.header.msg_id);
        assert_eq!(content(&reply)["status"], "ok");
    }
}
