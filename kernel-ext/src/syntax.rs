//! Is a cell's code complete? A small Rust lexer that tracks brackets, strings and comments: enough to
//! tell a console whether to run the code or wait for more lines.

#[derive(Debug, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    /// More lines are needed; the indent to offer on the next line.
    Incomplete(String),
    /// A closing bracket that does not match: running it can only fail.
    Invalid,
}

pub fn completeness(code: &str) -> Completeness {
    if code.trim_start().starts_with(':') {
        return Completeness::Complete; // an evcxr command such as `:dep`
    }
    let chars: Vec<char> = code.chars().collect();
    let mut stack: Vec<char> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 1;
                i += 2;
                while depth > 0 {
                    match (chars.get(i), chars.get(i + 1)) {
                        (None, _) => return incomplete(&stack),
                        (Some('/'), Some('*')) => {
                            depth += 1;
                            i += 1;
                        }
                        (Some('*'), Some('/')) => {
                            depth -= 1;
                            i += 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                continue;
            }
            'r' | 'b' if is_raw_string_start(&chars, i) => {
                let mut j = i + 1;
                if chars[i] == 'b' {
                    j += 1; // br"..."
                }
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                j += 1; // the opening quote
                loop {
                    match chars.get(j) {
                        None => return incomplete(&stack),
                        Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                            i = j + hashes;
                            break;
                        }
                        _ => j += 1,
                    }
                }
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return incomplete(&stack),
                        Some('\\') => i += 2,
                        Some('"') => break,
                        _ => i += 1,
                    }
                }
            }
            '\'' => {
                // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
                if next == Some('\\') {
                    let mut j = i + 2;
                    while j < chars.len() && chars[j] != '\'' && chars[j] != '\n' {
                        j += 1;
                    }
                    i = j;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 2;
                }
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Completeness::Invalid;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if stack.is_empty() { Completeness::Complete } else { incomplete(&stack) }
}

fn is_raw_string_start(chars: &[char], i: usize) -> bool {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i + 1;
    if chars[i] == 'b' {
        if chars.get(j) != Some(&'r') {
            return false;
        }
        j += 1;
    }
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

fn incomplete(stack: &[char]) -> Completeness {
    Completeness::Incomplete("    ".repeat(stack.len().max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_code_is_complete() {
        for code in [
            "1 + 1",
            "let x = vec![1, 2];",
            "fn f() { }",
            r#"let s = "(";"#,
            r##"let s = r#"{"#;"##,
            "let c = '{';",
            "fn f<'a>(x: &'a str) -> &'a str { x }",
            "// {\nlet x = 1;",
            "/* { /* nested */ */ 1",
            ":dep serde = { version = \"1\"",
            "let c = '\\u{7b}';",
        ] {
            assert_eq!(completeness(code), Completeness::Complete, "{code}");
        }
    }

    #[test]
    fn open_brackets_strings_and_comments_are_incomplete() {
        assert_eq!(completeness("fn f() {"), Completeness::Incomplete("    ".into()));
        assert_eq!(completeness("fn f() {\n    if x {"), Completeness::Incomplete("        ".into()));
        assert!(matches!(completeness("let s = \"abc"), Completeness::Incomplete(_)));
        assert!(matches!(completeness("/* open"), Completeness::Incomplete(_)));
        assert!(matches!(completeness("let s = r#\"abc\""), Completeness::Incomplete(_)));
    }

    #[test]
    fn mismatched_closers_are_invalid() {
        assert_eq!(completeness("fn f() { ) }"), Completeness::Invalid);
        assert_eq!(completeness("}"), Completeness::Invalid);
        assert_eq!(completeness("let v = [1, 2);"), Completeness::Invalid);
    }
}
