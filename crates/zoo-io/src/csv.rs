//! CSV cells as RFC 4180 writes them: a cell with a comma, quote, CR or LF (or spaces at
//! either end) is quoted with its quotes doubled. Text cells that a spreadsheet would run as
//! a formula (starting with `=`, `+`, `-`, `@`, tab or CR) get a leading `'` (OWASP's guard),
//! so a class named `=1+1` is shown as text; so does text starting with `'` itself, so that
//! [`unguard`] gives every name back exactly. Numbers go through [`number`], unguarded.

use std::borrow::Cow;

/// One text cell (a class name, a path), guarded and quoted as needed.
pub fn text(cell: &str) -> Cow<'_, str> {
    let guarded: Cow<str> = match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    };
    quoted(guarded)
}

/// One number cell (`Display` of an integer or float), never guarded.
pub fn number(value: impl std::fmt::Display) -> String {
    value.to_string()
}

/// A whole row of already made cells, comma-separated, ended by CRLF-free `\n`.
pub fn row<S: AsRef<str>>(cells: impl IntoIterator<Item = S>) -> String {
    let mut line = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(cell.as_ref());
    }
    line.push('\n');
    line
}

fn quoted(cell: Cow<'_, str>) -> Cow<'_, str> {
    let needs =
        cell.contains([',', '"', '\r', '\n']) || cell.starts_with(' ') || cell.ends_with(' ');
    if needs {
        Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")))
    } else {
        cell
    }
}

/// A text cell as [`split`] read it back, without the guard [`text`] added.
pub fn unguard(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// Splits one RFC 4180 record (what [`row`] wrote, without its newline) back into cells, the
/// formula guard left on ([`unguard`] takes it off text cells).
pub fn split(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let cell = cells.last_mut().expect("one cell at least");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => cells.push(String::new()),
            _ => cell.push(c),
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awkward_names_are_quoted_guarded_and_split_back() {
        let names = [
            "daisy",
            "a,b",
            "say \"hi\"",
            "=1+1",
            "+x",
            "-y",
            "@z",
            " pad ",
            "l\nf",
            "'=q",
        ];
        let line = row(names.iter().map(|n| text(n)));
        assert_eq!(
            line,
            "daisy,\"a,b\",\"say \"\"hi\"\"\",'=1+1,'+x,'-y,'@z,\" pad \",\"l\nf\",''=q\n"
        );
        let back = split(line.trim_end_matches('\n'));
        let expected = [
            "daisy",
            "a,b",
            "say \"hi\"",
            "'=1+1",
            "'+x",
            "'-y",
            "'@z",
            " pad ",
            "l\nf",
            "''=q",
        ];
        assert_eq!(back, expected);
        let names_back: Vec<&str> = back.iter().map(|c| unguard(c)).collect();
        assert_eq!(names_back, names);
        assert_eq!(row([number(-0.5), number(3)]), "-0.5,3\n");
    }
}
