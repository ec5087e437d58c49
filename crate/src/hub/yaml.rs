//! A dataset card's YAML header (`---` … `---` at the top of README.md), read with a maintained YAML 1.2
//! parser (`yaml-rust2`: anchors and aliases, block scalars, flow collections, quoted keys, comments) into
//! JSON values, which is how the Hub's API serves the same header (`cardData`). A header that is not
//! valid YAML is an error naming the file and the line, never a silently partial reading.

use std::path::Path;

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::error::{Error, Result};

/// The YAML header of the dataset card `readme` (read from `path`, which errors name), parsed; `None`
/// when the card has no header.
pub fn card_header(path: &Path, readme: &str) -> Result<Option<Value>> {
    let text = readme.strip_prefix('\u{feff}').unwrap_or(readme);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Ok(None);
    }
    let body: Vec<&str> = lines.take_while(|l| l.trim_end() != "---").collect();
    parse(&body.join("\n")).map(Some).map_err(|message| {
        // The header starts on the card's second line.
        Error::format(path, format!("the YAML header of this dataset card: {message}"))
    })
}

/// Parses one YAML document into JSON (`Null` for an empty one); the error says where it went wrong, with
/// lines counted in `text`.
pub fn parse(text: &str) -> std::result::Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        let at = e.marker();
        format!("line {} (of the header), column {}: {}", at.line() + 1, at.col() + 1, e.info())
    })?;
    Ok(docs.into_iter().next().map(to_json).unwrap_or(Value::Null))
}

fn to_json(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Null | Yaml::BadValue => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        // Kept as the number it spells where JSON can hold it, else as its text.
        Yaml::Real(text) => {
            text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::String(text), Value::Number)
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Real(r) => r,
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Null => "null".to_string(),
                    other => format!("{other:?}"),
                };
                map.insert(key, to_json(value));
            }
            Value::Object(map)
        }
        // The loader resolves aliases to the values their anchors name.
        Yaml::Alias(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(card: &str) -> Value {
        card_header(Path::new("README.md"), card).unwrap().unwrap()
    }

    #[test]
    fn reads_a_dataset_card_configs_section() {
        let card = "---\nlicense: mit # a comment\ndataset_info:\n  features:\n  - name: text\n    dtype: string\n\
configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: \"data/train-*\"\n  - split: test\n    \
path: data/test-*\n- config_name: 'fr'\n  data_files: fr/*.jsonl\n  default: true\n- config_name: two\n  \
data_files:\n    - split: train\n      path: [a/*.csv, \"b/*.csv\"]\n---\n# Title\n";
        let header = header(card);
        assert_eq!(header["license"], json!("mit"));
        assert_eq!(header["dataset_info"]["features"][0]["dtype"], json!("string"));
        let configs = &header["configs"];
        assert_eq!(configs[0]["config_name"], json!("default"));
        assert_eq!(configs[0]["data_files"][1], json!({"split": "test", "path": "data/test-*"}));
        assert_eq!(configs[1], json!({"config_name": "fr", "data_files": "fr/*.jsonl", "default": true}));
        assert_eq!(configs[2]["data_files"][0]["path"], json!(["a/*.csv", "b/*.csv"]));
    }

    #[test]
    fn real_card_shapes_anchors_block_scalars_maps_and_quoted_keys() {
        let card = r#"---
pretty_name: "Tiny: a test set"
description: |
  Two lines
  of description.
summary: >
  folded
  text
defaults: &files
  - split: train
    path: "data/train-*.parquet"
  - split: test
    path: data/test-*.parquet
configs:
  - config_name: default
    data_files: *files
  - config_name: "en"      # quoted
    data_files:
      train: en/train/*.jsonl
      validation: [en/val-*.jsonl, en/dev-*.jsonl]
  - config_name: raw
    data_files: raw/*.txt
"size categories": ["1K<n<10K"]
version: 1.0
---
"#;
        let header = header(card);
        assert_eq!(header["description"], json!("Two lines\nof description.\n"));
        assert_eq!(header["summary"], json!("folded text\n"));
        assert_eq!(header["pretty_name"], json!("Tiny: a test set"));
        // The alias is the anchored list itself, not the text "*files".
        assert_eq!(header["configs"][0]["data_files"], header["defaults"]);
        assert_eq!(header["configs"][0]["data_files"][1]["path"], json!("data/test-*.parquet"));
        assert_eq!(header["configs"][1]["config_name"], json!("en"));
        assert_eq!(header["configs"][1]["data_files"]["validation"], json!(["en/val-*.jsonl", "en/dev-*.jsonl"]));
        assert_eq!(header["configs"][2]["data_files"], json!("raw/*.txt"));
        assert_eq!(header["size categories"], json!(["1K<n<10K"]));
        assert_eq!(header["version"], json!(1.0));
    }

    #[test]
    fn no_header_is_none_and_a_broken_one_is_an_error_naming_the_file_and_line() {
        assert_eq!(card_header(Path::new("README.md"), "# Just a title\n").unwrap(), None);
        let err = card_header(Path::new("cards/README.md"), "---\nconfigs:\n- config_name: a\n  data_files: [x\n---\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cards/README.md: the YAML header of this dataset card: line "), "{err}");
    }
}
