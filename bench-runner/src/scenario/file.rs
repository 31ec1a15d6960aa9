//! Reading a scenario: the file read once and bounded, its TOML deserialized, and every
//! problem placed at its file, line and column ([`ScenarioError`], [`Source`]).

use serde::de::DeserializeOwned;
use std::path::Path;

/// A scenario problem with its place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong and what to write instead.
    pub msg: String,
}

/// The largest scenario file read (a scenario is a few KiB; `/dev/zero` is endless).
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// Scenario text with the name used in messages: turns byte offsets into file:line:column.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    /// The file name in messages.
    pub name: &'a str,
    /// The whole text.
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at byte `offset` of the text.
    pub fn err_at(&self, offset: usize, msg: String) -> ScenarioError {
        let (line, col) = line_col(self.text, offset);
        ScenarioError {
            file: self.name.to_string(),
            line,
            col,
            msg,
        }
    }

    /// An error at the first place `key = ` is written (for values serde has no span for).
    pub fn err_at_key(&self, key: &str, msg: String) -> ScenarioError {
        self.err_at(key_offset(self.text, key), msg)
    }

    /// The text deserialized; a TOML or type error is placed where serde found it.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ScenarioError> {
        toml::from_str(self.text).map_err(|e| {
            let off = e.span().map(|s| s.start).unwrap_or(0);
            self.err_at(off, e.message().to_string())
        })
    }
}

/// The 1-based line and column of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, col)
}

/// Where `key = ` is first written in `text` (for errors about a value serde has no span
/// for); 0 if absent.
fn key_offset(text: &str, key: &str) -> usize {
    text.match_indices(key)
        .find(|(i, _)| {
            text[..*i]
                .rsplit('\n')
                .next()
                .is_some_and(|l| l.trim().is_empty())
                && text[i + key.len()..].trim_start().starts_with('=')
        })
        .map_or(0, |(i, _)| i)
}

/// Reads a scenario file: at most [`MAX_SCENARIO_BYTES`], once (a pipe cannot be read
/// twice), and only UTF-8 text. Errors name the file with line and column 0.
pub(super) fn read(path: &Path) -> Result<String, ScenarioError> {
    use std::io::Read;
    let unreadable = |msg: String| ScenarioError {
        file: path.display().to_string(),
        line: 0,
        col: 0,
        msg,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable(format!("cannot read the scenario: {e}")))?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(unreadable(format!(
            "the scenario is larger than {} KiB: is this a scenario file?",
            MAX_SCENARIO_BYTES >> 10
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        unreadable(format!(
            "cannot read the scenario: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
        assert_eq!(line_col(t, 999), (3, 1), "past the end: the end");
    }

    #[test]
    fn key_offset_finds_a_key_at_a_line_start_only() {
        let t = "max_repetitions = 5\n  repetitions = 2\n";
        assert_eq!(key_offset(t, "repetitions"), 22);
        assert_eq!(key_offset(t, "max_repetitions"), 0);
        assert_eq!(key_offset(t, "absent"), 0);
        assert_eq!(key_offset("x = \"repetitions = 1\"", "repetitions"), 0);
    }

    #[test]
    fn reading_refuses_huge_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_SCENARIO_BYTES as usize + 1]).unwrap();
        let e = read(&big).unwrap_err().to_string();
        assert!(
            e.ends_with(":0:0: the scenario is larger than 1024 KiB: is this a scenario file?"),
            "{e}"
        );
        let bin = dir.path().join("bin.toml");
        std::fs::write(&bin, b"ab\xff").unwrap();
        let e = read(&bin).unwrap_err().to_string();
        assert!(
            e.contains("not UTF-8 text (invalid byte at offset 2)"),
            "{e}"
        );
        let e = read(&dir.path().join("none.toml")).unwrap_err().to_string();
        assert!(
            e.contains(":0:0: cannot read the scenario: No such file"),
            "{e}"
        );
    }

    #[test]
    fn toml_errors_are_placed() {
        let src = Source {
            name: "s.toml",
            text: "[[target]\n",
        };
        let e = src.deserialize::<toml::Table>().unwrap_err().to_string();
        assert!(e.starts_with("s.toml:1:9: invalid table header"), "{e}");
    }
}
