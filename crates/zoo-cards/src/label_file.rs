//! Label files given on the command line: one name a line, or ImageNet's `synset.txt` form
//! `<wnid> <names>`; line i names output i.

use std::path::Path;

/// Larger label files are refused before reading (ImageNet-21k's is about 0.5 MB).
pub const MAX_LABEL_FILE_BYTES: u64 = 16 << 20;

/// The names in a label file. Blank lines at the end are ignored; a blank line before the
/// last name is an error (it would shift every later class by one).
pub fn read_label_file(path: &Path) -> Result<Vec<String>, String> {
    let at = path.display();
    let text = zoo_io::read_text_limited(path, MAX_LABEL_FILE_BYTES)
        .map_err(|e| format!("cannot read the label file {at}: {e}"))?;
    parse_labels(&text).map_err(|e| format!("label file {at}: {e}"))
}

pub fn parse_labels(text: &str) -> Result<Vec<String>, String> {
    let mut lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Err("no labels in it".into());
    }
    if let Some(i) = lines.iter().position(|l| l.trim().is_empty()) {
        return Err(format!(
            "line {} is blank; every line names one output",
            i + 1
        ));
    }
    let synset = lines.iter().all(|l| wnid_prefix(l).is_some());
    Ok(lines
        .iter()
        .map(|l| match (synset, wnid_prefix(l)) {
            (true, Some(rest)) => rest.trim().to_string(),
            _ => l.trim().to_string(),
        })
        .collect())
}

/// `n01440764 tench, Tinca tinca` -> `tench, Tinca tinca`.
fn wnid_prefix(line: &str) -> Option<&str> {
    let (id, rest) = line.split_once(' ')?;
    let digits = id.strip_prefix('n')?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_synset_files_give_one_name_per_output() {
        assert_eq!(
            parse_labels("cat\r\ndog\n\n").unwrap(),
            vec!["cat".to_string(), "dog".into()]
        );
        assert_eq!(
            parse_labels("n01440764 tench, Tinca tinca\nn01443537 goldfish\n").unwrap(),
            vec!["tench, Tinca tinca".to_string(), "goldfish".into()]
        );
        // One line without a wnid: the file is plain, kept as written.
        assert_eq!(
            parse_labels("background\nn01440764 tench").unwrap()[1],
            "n01440764 tench"
        );
    }

    #[test]
    fn blank_lines_inside_and_empty_files_are_errors() {
        assert!(parse_labels("a\n\nb\n").unwrap_err().contains("line 2"));
        assert!(parse_labels("\n\n").is_err());
        let e = read_label_file(Path::new("/nonexistent/labels.txt")).unwrap_err();
        assert!(e.contains("/nonexistent/labels.txt"), "{e}");
    }
}
