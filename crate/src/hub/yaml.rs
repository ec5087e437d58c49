//! Just enough YAML for a dataset card's header (`---` … `---` at the top of README.md): block mappings
//! and sequences, plain and quoted scalars, flow lists, comments. Enough for the `configs:` section; what
//! it cannot read it skips rather than guesses.

use serde_json::{Map, Value};

/// The YAML header of a dataset card, parsed; `None` when there is none.
pub fn card_header(readme: &str) -> Option<Value> {
    let text = readme.strip_prefix('\u{feff}').unwrap_or(readme);
    let mut lines = text.lines();
    if lines.next()?.trim_end() != "---" {
        return None;
    }
    let body: Vec<&str> = lines.take_while(|l| l.trim_end() != "---").collect();
    Some(parse(&body.join("\n")))
}

/// Parses a YAML document of the supported subset.
pub fn parse(text: &str) -> Value {
    let mut lines: Vec<(usize, String)> = text
        .lines()
        .map(|l| {
            let content = strip_comment(l);
            (l.len() - l.trim_start().len(), content.trim().to_string())
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let mut i = 0;
    if lines.is_empty() {
        return Value::Null;
    }
    let indent = lines[0].0;
    block(&mut lines, &mut i, indent)
}

fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                return &line[..i];
            }
            _ => {}
        }
    }
    line
}

fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

fn block(lines: &mut [(usize, String)], i: &mut usize, indent: usize) -> Value {
    if *i < lines.len() && is_item(&lines[*i].1) { sequence(lines, i, indent) } else { mapping(lines, i, indent) }
}

fn sequence(lines: &mut [(usize, String)], i: &mut usize, indent: usize) -> Value {
    let mut items = Vec::new();
    while *i < lines.len() && lines[*i].0 == indent && is_item(&lines[*i].1) {
        let rest = lines[*i].1[1..].trim_start().to_string();
        if rest.is_empty() {
            *i += 1;
            let value = match lines.get(*i) {
                Some((child, _)) if *child > indent => {
                    let child = *child;
                    block(lines, i, child)
                }
                _ => Value::Null,
            };
            items.push(value);
        } else if is_item(&rest) || split_key(&rest).is_some() {
            // `- key: value` opens a mapping (or `- - x` a sequence) indented past the dash.
            let child = indent + (lines[*i].1.len() - rest.len());
            lines[*i] = (child, rest);
            items.push(block(lines, i, child));
        } else {
            items.push(scalar(&rest));
            *i += 1;
        }
    }
    Value::Array(items)
}

fn mapping(lines: &mut [(usize, String)], i: &mut usize, indent: usize) -> Value {
    let mut map = Map::new();
    while *i < lines.len() && lines[*i].0 == indent && !is_item(&lines[*i].1) {
        let Some((key, rest)) = split_key(&lines[*i].1) else {
            *i += 1; // not a mapping entry: skip it
            continue;
        };
        *i += 1;
        let value = if !rest.is_empty() {
            scalar(&rest)
        } else {
            match lines.get(*i) {
                Some((child, _)) if *child > indent => {
                    let child = *child;
                    block(lines, i, child)
                }
                // A sequence may sit at the key's own indentation.
                Some((child, content)) if *child == indent && is_item(content) => sequence(lines, i, indent),
                _ => Value::Null,
            }
        };
        map.insert(key, value);
    }
    // Lines indented deeper than expected (a shape this parser does not know) are skipped.
    while *i < lines.len() && lines[*i].0 > indent {
        *i += 1;
    }
    Value::Object(map)
}

/// `key: value` or `key:` → (key, value text), outside quotes and flow brackets.
fn split_key(content: &str) -> Option<(String, String)> {
    let (mut single, mut double, mut depth) = (false, false, 0i32);
    let bytes = content.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'[' | b'{' if !single && !double => depth += 1,
            b']' | b'}' if !single && !double => depth -= 1,
            b':' if !single && !double && depth == 0 && (i + 1 == bytes.len() || bytes[i + 1] == b' ') => {
                let key = unquote(content[..i].trim());
                return Some((key, content[i + 1..].trim().to_string()));
            }
            _ => {}
        }
    }
    None
}

fn unquote(text: &str) -> String {
    let t = text.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].replace("\\\"", "\"").replace("\\\\", "\\")
    } else if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_string()
    }
}

fn scalar(text: &str) -> Value {
    let t = text.trim();
    if t.starts_with('[') && t.ends_with(']') {
        return Value::Array(split_flow(&t[1..t.len() - 1]).iter().map(|s| scalar(s)).collect());
    }
    if t.starts_with('{') && t.ends_with('}') {
        let mut map = Map::new();
        for entry in split_flow(&t[1..t.len() - 1]) {
            if let Some((k, v)) = split_key(&entry) {
                map.insert(k, scalar(&v));
            }
        }
        return Value::Object(map);
    }
    let quoted = t.starts_with('"') || t.starts_with('\'');
    match t {
        "true" | "True" | "TRUE" if !quoted => Value::Bool(true),
        "false" | "False" | "FALSE" if !quoted => Value::Bool(false),
        "null" | "~" if !quoted => Value::Null,
        _ => Value::String(unquote(t)),
    }
}

fn split_flow(text: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut single, mut double, mut depth) = (false, false, 0i32);
    for c in text.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '[' | '{' if !single && !double => depth += 1,
            ']' | '}' if !single && !double => depth -= 1,
            ',' if !single && !double && depth == 0 => {
                parts.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_dataset_card_configs_section() {
        let card = "---\nlicense: mit # a comment\ndataset_info:\n  features:\n  - name: text\n    dtype: string\n\
configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: \"data/train-*\"\n  - split: test\n    \
path: data/test-*\n- config_name: 'fr'\n  data_files: fr/*.jsonl\n  default: true\n- config_name: two\n  \
data_files:\n    - split: train\n      path: [a/*.csv, \"b/*.csv\"]\n---\n# Title\n";
        let header = card_header(card).unwrap();
        assert_eq!(header["license"], json!("mit"));
        assert_eq!(header["dataset_info"]["features"][0]["dtype"], json!("string"));
        let configs = &header["configs"];
        assert_eq!(configs[0]["config_name"], json!("default"));
        assert_eq!(configs[0]["data_files"][1], json!({"split": "test", "path": "data/test-*"}));
        assert_eq!(configs[1], json!({"config_name": "fr", "data_files": "fr/*.jsonl", "default": true}));
        assert_eq!(configs[2]["data_files"][0]["path"], json!(["a/*.csv", "b/*.csv"]));
    }

    #[test]
    fn no_header_is_none() {
        assert_eq!(card_header("# Just a title\n"), None);
    }
}
