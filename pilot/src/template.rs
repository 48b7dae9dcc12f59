//! The template language of `spike render`: text copied verbatim, with
//! `{{ secret "PATH" "KEY" }}` replaced by the value of KEY in the secret at PATH.
//!
//! Hand-written rather than a templating crate: there is one substitution form and no logic,
//! so a small parser is shorter than learning, vetting and configuring a general engine,
//! and it can report errors by line in our own words. Any other `{{ ... }}` is an error, so
//! a typo never silently renders as literal text.
//!
//! Quoted strings have no escapes: secret paths and keys cannot contain `"`, and paths may
//! contain `\`, which is therefore taken literally.

use std::collections::BTreeSet;

use zeroize::Zeroizing;

/// How a template can be wrong; `line` is where the `{{` is (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct TemplateError {
    /// The line of the offending `{{`.
    pub line: usize,
    /// What is wrong there.
    pub problem: String,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Copied as is.
    Text(String),
    /// Replaced by the value of `key` in the secret at `path`.
    Secret { path: String, key: String },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A word or a quoted string inside `{{ }}`.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Quoted(&'a str),
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut line = 1;
        while let Some(start) = rest.find("{{") {
            let (literal, action) = rest.split_at(start);
            line += literal.matches('\n').count();
            if !literal.is_empty() {
                parts.push(Part::Text(literal.to_owned()));
            }
            let (tokens, consumed) = tokenize(&action[2..], line)?;
            parts.push(secret_call(&tokens, line)?);
            line += action[..2 + consumed].matches('\n').count();
            rest = &action[2 + consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Every secret path the template reads, each once.
    pub fn paths(&self) -> BTreeSet<&str> {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Secret { path, .. } => Some(path.as_str()),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// The text with every secret substituted; `lookup(path, key)` gives a value.
    pub fn render<'v, E>(
        &self,
        mut lookup: impl FnMut(&str, &str) -> Result<&'v str, E>,
    ) -> Result<Zeroizing<String>, E> {
        let mut pieces = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            pieces.push(match part {
                Part::Text(text) => text.as_str(),
                Part::Secret { path, key } => lookup(path, key)?,
            });
        }
        // One allocation of the final size, so no reallocation leaves a copy of a value.
        let mut out = Zeroizing::new(String::with_capacity(pieces.iter().map(|p| p.len()).sum()));
        pieces.iter().for_each(|piece| out.push_str(piece));
        Ok(out)
    }
}

/// Reads the tokens after a `{{` up to its `}}`; returns them and how many bytes of `text`
/// they took, including the `}}`.
fn tokenize(text: &str, line: usize) -> Result<(Vec<Token<'_>>, usize), TemplateError> {
    let fail = |problem: &str| TemplateError {
        line,
        problem: problem.to_owned(),
    };
    let unterminated = || fail("`{{` is not closed by `}}`");
    let mut tokens = Vec::new();
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if trimmed.is_empty() {
            return Err(unterminated());
        }
        if trimmed.starts_with("}}") {
            return Ok((tokens, at + 2));
        }
        if trimmed.starts_with("{{") {
            return Err(fail(
                "`{{` inside `{{ ... }}` (a `{{` may not appear literally)",
            ));
        }
        if let Some(quoted) = trimmed.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| fail("a quoted string is not closed by `\"`"))?;
            tokens.push(Token::Quoted(&quoted[..end]));
            at += end + 2;
        } else {
            let end = trimmed
                .find(|c: char| c.is_whitespace() || c == '"' || c == '}' || c == '{')
                .unwrap_or(trimmed.len());
            if end == 0 {
                // A lone `}` or `{`: take it as a word so the error can name it.
                let c = trimmed.chars().next().map_or(1, char::len_utf8);
                tokens.push(Token::Word(&trimmed[..c]));
                at += c;
            } else {
                tokens.push(Token::Word(&trimmed[..end]));
                at += end;
            }
        }
    }
}

/// The only construct there is: `secret "PATH" "KEY"`.
fn secret_call(tokens: &[Token<'_>], line: usize) -> Result<Part, TemplateError> {
    let fail = |problem: String| TemplateError { line, problem };
    match tokens {
        [
            Token::Word("secret"),
            Token::Quoted(path),
            Token::Quoted(key),
        ] => {
            if path.is_empty() || key.is_empty() {
                return Err(fail("the secret path and key must not be empty".into()));
            }
            Ok(Part::Secret {
                path: (*path).to_owned(),
                key: (*key).to_owned(),
            })
        }
        [] => Err(fail(
            "empty `{{ }}`; expected {{ secret \"PATH\" \"KEY\" }}".into(),
        )),
        [Token::Word("secret"), ..] => Err(fail(
            "`secret` takes two quoted arguments: {{ secret \"PATH\" \"KEY\" }}".into(),
        )),
        [Token::Word(word), ..] => Err(fail(format!(
            "unknown `{word}`; the only construct is {{{{ secret \"PATH\" \"KEY\" }}}}"
        ))),
        [Token::Quoted(_), ..] => Err(fail(
            "unknown construct; the only one is {{ secret \"PATH\" \"KEY\" }}".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secrets() -> BTreeMap<(&'static str, &'static str), &'static str> {
        [
            (("db/creds", "user"), "app"),
            (("db/creds", "password"), "hunter2"),
            (("a}}b\\c", "k"), "odd"),
        ]
        .into_iter()
        .collect()
    }

    fn render(text: &str) -> Result<String, String> {
        let template = Template::parse(text).map_err(|e| e.to_string())?;
        let values = secrets();
        template
            .render(|path, key| {
                values
                    .iter()
                    .find(|((p, k), _)| *p == path && *k == key)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| format!("no {path} {key}"))
            })
            .map(|s| s.to_string())
    }

    fn error(text: &str) -> TemplateError {
        Template::parse(text).expect_err("the template is refused")
    }

    #[test]
    fn substitutes_and_copies_the_rest() {
        assert_eq!(
            render(
                "user={{ secret \"db/creds\" \"user\" }}\npass={{secret \"db/creds\" \"password\"}}\n"
            ),
            Ok("user=app\npass=hunter2\n".to_owned())
        );
        assert_eq!(
            render("{{\n  secret\t\"db/creds\"\n  \"user\"\n}}"),
            Ok("app".to_owned())
        );
        assert_eq!(render(""), Ok(String::new()));
        let verbatim = "no actions } here }} { \"quoted\" ${VAR} {% x %}\n";
        assert_eq!(render(verbatim), Ok(verbatim.to_owned()));
        // `}}` and `\` inside a quoted path are part of the path.
        assert_eq!(
            render("[{{ secret \"a}}b\\c\" \"k\" }}]"),
            Ok("[odd]".to_owned())
        );
        assert_eq!(
            render("{{ secret \"db/creds\" \"nope\" }}"),
            Err("no db/creds nope".to_owned())
        );
    }

    #[test]
    fn lists_each_path_once() {
        let template = Template::parse(
            "{{ secret \"b\" \"k\" }}{{ secret \"a\" \"k\" }}{{ secret \"b\" \"j\" }}",
        )
        .expect("parses");
        assert_eq!(template.paths().into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(Template::parse("plain").expect("parses").paths().is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let e = error("a\nb\nc {{ secret \"p\" \"k\"\n");
        assert_eq!(e.line, 3);
        assert!(e.problem.contains("not closed"), "{e}");
        assert_eq!(e.to_string(), "line 3: `{{` is not closed by `}}`");

        let e = error("ok {{ secret \"p\" \"k\" }}\n\n{{ env \"HOME\" }}");
        assert_eq!(e.line, 3);
        assert!(e.problem.contains("unknown `env`"), "{e}");

        // Lines inside an earlier multi-line action still count.
        let e = error("{{ secret\n\"p\"\n\"k\" }}\n{{ }}");
        assert_eq!(e.line, 4);
        assert!(e.problem.contains("empty"), "{e}");
    }

    #[test]
    fn malformed_actions_are_refused() {
        for (text, what) in [
            ("{{ secret \"p\" }}", "two quoted arguments"),
            ("{{ secret \"p\" \"k\" \"x\" }}", "two quoted arguments"),
            ("{{ secret p k }}", "two quoted arguments"),
            ("{{ secret \"p }}", "quoted string is not closed"),
            ("{{ secret \"\" \"k\" }}", "must not be empty"),
            ("{{ secret \"p\" \"\" }}", "must not be empty"),
            ("{{ \"p\" }}", "unknown construct"),
            ("{{ .Values }}", "unknown `.Values`"),
            ("{{- secret \"p\" \"k\" }}", "unknown `-`"),
            ("{{ secret \"p\" \"k\" -}}", "two quoted arguments"),
            ("{{ {{ secret \"p\" \"k\" }}", "`{{` inside"),
            ("{{ } }}", "unknown `}`"),
            ("{{", "not closed"),
            ("x {{ secret \"p\" \"k\" }", "not closed"),
        ] {
            let e = error(text);
            assert_eq!(e.line, 1, "{text}");
            assert!(e.problem.contains(what), "{text}: {e}");
        }
    }
}
