//! The kernel's input history, answered for `history_request` (tail, range and glob search), kept for the
//! life of the kernel.

use serde_json::{Value, json};

pub struct History {
    session: u64,
    /// (line number, input, text/plain output)
    entries: Vec<(u64, String, Option<String>)>,
}

impl History {
    pub fn new(session: u64) -> History {
        History { session, entries: Vec::new() }
    }

    pub fn record(&mut self, line: u64, input: &str, output: Option<String>) {
        self.entries.push((line, input.to_string(), output));
    }

    /// The `history_reply` content for a `history_request`'s content.
    pub fn reply(&self, request: &Value) -> Value {
        let output = request["output"].as_bool().unwrap_or(false);
        let n = request["n"].as_u64().map(|n| n as usize);
        let picked: Vec<&(u64, String, Option<String>)> = match request["hist_access_type"].as_str().unwrap_or("") {
            "tail" => {
                let n = n.unwrap_or(10);
                self.entries.iter().skip(self.entries.len().saturating_sub(n)).collect()
            }
            "range" => {
                let session = request["session"].as_i64().unwrap_or(0);
                if session != 0 && session as u64 != self.session {
                    Vec::new()
                } else {
                    let start = request["start"].as_u64().unwrap_or(1);
                    let stop = request["stop"].as_u64().unwrap_or(u64::MAX);
                    self.entries.iter().filter(|e| e.0 >= start && e.0 < stop).collect()
                }
            }
            "search" => {
                let pattern = request["pattern"].as_str().unwrap_or("*");
                let unique = request["unique"].as_bool().unwrap_or(false);
                let mut found: Vec<&(u64, String, Option<String>)> = Vec::new();
                for entry in self.entries.iter().rev() {
                    if glob_match(pattern, &entry.1) && !(unique && found.iter().any(|f| f.1 == entry.1)) {
                        found.push(entry);
                    }
                }
                if let Some(n) = n {
                    found.truncate(n);
                }
                found.reverse();
                found
            }
            _ => Vec::new(),
        };
        let history: Vec<Value> = picked
            .into_iter()
            .map(|(line, input, out)| {
                if output {
                    json!([self.session, line, [input, out.clone().unwrap_or_default()]])
                } else {
                    json!([self.session, line, input])
                }
            })
            .collect();
        json!({"status": "ok", "history": history})
    }
}

/// Glob matching as IPython's history search does it: `*` any run, `?` one character, whole input.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let mut h = History::new(7);
        h.record(1, "1 + 1", Some("2".into()));
        h.record(2, "let x = 3;", None);
        h.record(3, "1 + 1", Some("2".into()));
        h.record(4, "x * 2", Some("6".into()));
        h
    }

    #[test]
    fn tail_range_and_search() {
        let h = history();
        let tail = h.reply(&json!({"hist_access_type": "tail", "n": 2}));
        assert_eq!(tail["history"], json!([[7, 3, "1 + 1"], [7, 4, "x * 2"]]));
        let with_output = h.reply(&json!({"hist_access_type": "tail", "n": 1, "output": true}));
        assert_eq!(with_output["history"], json!([[7, 4, ["x * 2", "6"]]]));
        let range = h.reply(&json!({"hist_access_type": "range", "session": 7, "start": 2, "stop": 3}));
        assert_eq!(range["history"], json!([[7, 2, "let x = 3;"]]));
        let search = h.reply(&json!({"hist_access_type": "search", "pattern": "1*"}));
        assert_eq!(search["history"].as_array().unwrap().len(), 2);
        let unique = h.reply(&json!({"hist_access_type": "search", "pattern": "1*", "unique": true}));
        assert_eq!(unique["history"], json!([[7, 3, "1 + 1"]]));
        let n = h.reply(&json!({"hist_access_type": "search", "pattern": "*", "n": 3}));
        assert_eq!(n["history"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*x*", "let x = 3;"));
        assert!(glob_match("1?+*", "1 + 1"));
        assert!(!glob_match("x", "x * 2"));
    }
}
