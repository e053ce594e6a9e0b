//! Text that came from outside (a caller's request, a node's answer, a
//! stored value, a service's error, a child's stderr) on its way to a
//! reply, a log line or the operator's terminal: clipped, so junk of any
//! size cannot blow them up, and escaped, so it cannot drive the terminal.
//!
//! A terminal obeys the control characters in what it prints: ESC starts
//! sequences that set the window title, clear the screen or write the
//! clipboard (OSC 52), CR overwrites a line, a newline starts a line that
//! looks like one of ours. C1 characters (U+0080 to U+009F) are the same
//! sequences in one character (U+009B is ESC `[`), and some terminals obey
//! them too. So every control character (C0, DEL, C1: Unicode's `Cc`) of
//! outside text is written as an escape ([`escape`]): `\n`, `\r`, `\t`,
//! `\u{1b}`. Only the program's own newlines and tabs stay raw
//! ([`Keep::Lines`], for a whole page of output), and JSON output keeps
//! exact JSON with those characters as `\u` escapes ([`json`]).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// What [`escape`] leaves raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: one value, shown on one line.
    Nothing,
    /// Newlines and tabs: a text of the program's own, whose values were
    /// escaped already (a last line of defence, not a licence).
    Lines,
}

/// `s` with every control character escaped (but those `keep` names):
/// `\n`, `\r`, `\t`, else `\u{hex}`. Borrowed when there is none.
pub fn escape(s: &str, keep: Keep) -> Cow<'_, str> {
    let kept = |c: char| keep == Keep::Lines && (c == '\n' || c == '\t');
    if !s.chars().any(|c| c.is_control() && !kept(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if kept(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A value from outside, written (`Display`) with every control character
/// escaped: one log field or table cell stays one line.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0, Keep::Nothing))
    }
}

/// At most `max` characters of `s`, marked with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// [`clip`] then [`escape`]: a short, one-line rendering of outside text.
pub fn clean(s: &str, max: usize) -> String {
    escape(&clip(s, max), Keep::Nothing).into_owned()
}

/// JSON text (as serde_json writes it) with DEL and the C1 characters as
/// `\u` escapes: the same JSON value, with no raw control character
/// (serde_json escapes C0 itself). Those characters can only stand inside
/// a string of valid JSON, where `\u00XX` means the same character.
pub fn json(text: &str) -> Cow<'_, str> {
    let raw = |c: char| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c);
    if !text.chars().any(raw) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`json`] over bytes that are UTF-8 JSON or anything else (a log line):
/// DEL and the two-byte UTF-8 forms of C1 become `\u` escapes.
pub fn json_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let at = |i: usize| {
        bytes[i] == 0x7f
            || (bytes[i] == 0xc2 && bytes.get(i + 1).is_some_and(|b| (0x80..=0x9f).contains(b)))
    };
    if !(0..bytes.len()).any(at) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x7f {
            out.extend_from_slice(b"\\u007f");
            i += 1;
        } else if at(i) {
            out.extend_from_slice(format!("\\u00{:02x}", bytes[i + 1]).as_bytes());
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every control character a hostile text can carry.
    const HOSTILE: &str =
        "a\u{1b}]0;title\u{7}b\u{1b}]52;c;SGVsbG8=\u{7}c\r\nd\u{1b}[2Je\u{7f}f\u{9b}31mg\u{85}\u{0}\t";

    #[test]
    fn clip_keeps_short_text_and_marks_cut_text() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("ééééé", 2), "éé…");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn every_control_character_is_escaped_and_the_rest_kept() {
        let out = escape(HOSTILE, Keep::Nothing);
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert_eq!(
            out,
            "a\\u{1b}]0;title\\u{7}b\\u{1b}]52;c;SGVsbG8=\\u{7}c\\r\\nd\\u{1b}[2Je\\u{7f}f\\u{9b}31mg\\u{85}\\u{0}\\t"
        );
        assert!(matches!(
            escape("plain é ✓", Keep::Nothing),
            Cow::Borrowed(_)
        ));
        assert_eq!(Escaped("x\ny").to_string(), "x\\ny");
        assert_eq!(clean("ab\u{1b}cd", 3), "ab\\u{1b}…");
    }

    #[test]
    fn a_page_keeps_its_newlines_and_tabs_only() {
        let out = escape(HOSTILE, Keep::Lines);
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{out:?}"
        );
        assert!(out.contains("\\r\nd"), "{out:?}");
        assert!(out.ends_with("\\u{0}\t"), "{out:?}");
    }

    #[test]
    fn json_stays_the_same_value_without_raw_control_characters() {
        let value = serde_json::json!({ "k\u{9b}": [HOSTILE, "\\\u{7f}"] });
        let text = serde_json::to_string_pretty(&value).expect("json");
        let safe = json(&text);
        assert!(
            !safe.chars().any(|c| c.is_control() && c != '\n'),
            "{safe:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, value);
        assert_eq!(json_bytes(text.as_bytes()).as_ref(), safe.as_bytes());
        assert!(matches!(json("{\"a\": \"é\"}"), Cow::Borrowed(_)));
        assert_eq!(json_bytes(b"\xc2").as_ref(), b"\xc2");
    }
}
