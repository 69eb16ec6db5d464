//! Names as they may be shown on a terminal: control characters (C0, DEL, C1, which include
//! ESC and the terminal's title and clear-screen sequences) and the bidirectional overrides
//! that reorder what follows them are written as `\u{..}` escapes, so a downloaded model's
//! labels or a folder's name cannot retitle, clear or hide anything.

use std::borrow::Cow;

/// `name` with every character a terminal would act on escaped as `\u{XX}`; a backslash
/// is doubled only when something was escaped, so plain names print as they are.
pub fn printable(name: &str) -> Cow<'_, str> {
    if !name.chars().any(acted_on) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if acted_on(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A whole rendered text (a report, a message) as it may be shown: like [`printable`], but its
/// own line breaks and tabs kept. The last guard on what reaches the terminal; names inside it
/// should have gone through [`printable`] already (which escapes their line breaks too).
pub fn printable_text(text: &str) -> Cow<'_, str> {
    let acted = |c: char| acted_on(c) && c != '\n' && c != '\t';
    if !text.chars().any(acted) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acted(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Characters a terminal interprets rather than shows.
fn acted_on(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::{printable, printable_text};

    #[test]
    fn control_and_reordering_characters_are_escaped_and_plain_names_kept() {
        assert_eq!(printable("daisy"), "daisy");
        assert_eq!(
            printable("a,b \"c\" =1+1 tulpe\\n"),
            "a,b \"c\" =1+1 tulpe\\n"
        );
        assert_eq!(printable("x\u{1b}]0;pwned\u{7}"), "x\\u{1b}]0;pwned\\u{7}");
        assert_eq!(printable("\u{1b}[2J\\"), "\\u{1b}[2J\\\\");
        assert_eq!(
            printable("a\u{202e}b\u{9b}c\r\n"),
            "a\\u{202e}b\\u{9b}c\\u{d}\\u{a}"
        );
    }

    #[test]
    fn whole_texts_keep_their_lines_and_lose_their_escapes() {
        assert_eq!(printable_text("a\tb\nc\n"), "a\tb\nc\n");
        assert_eq!(printable_text("x \u{1b}[2J\n"), "x \\u{1b}[2J\n");
    }
}
