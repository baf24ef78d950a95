//! Tab-aligned columns like Go's `text/tabwriter` as docker configures it
//! (minimum cell width 10, padding 3, spaces): a cell ends at a tab, the
//! last cell of a line is not aligned.

/// Minimum width of an aligned cell, padding included.
const MIN_WIDTH: usize = 10;
/// Spaces after the widest cell of a column.
const PADDING: usize = 3;

/// Aligns `text`'s tab-separated cells; lines without tabs pass through.
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let columns = lines.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for cells in &lines {
        // The last cell of a line is not terminated by a tab: not aligned.
        for (i, cell) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            widths[i] = widths[i].max((width(cell) + PADDING).max(MIN_WIDTH));
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for cells in &lines {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_by_three_with_minimum_ten() {
        let t = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox:latest\tweb\n";
        let out = align(t);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "CONTAINER ID   IMAGE            NAMES");
        assert_eq!(lines[1], "abc            busybox:latest   web");
    }

    #[test]
    fn short_columns_take_the_minimum_width() {
        let out = align("A\tB\nc\td\n");
        assert_eq!(out, "A         B\nc         d\n");
    }

    #[test]
    fn lines_without_tabs_are_unchanged() {
        assert_eq!(align("hello\n"), "hello\n");
    }
}
