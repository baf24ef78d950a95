//! Output: tables, `--format` templates and JSON, sizes and times.

pub mod inspect;
pub mod table;
pub mod template;
pub mod units;

pub use template::{Row, Template, TemplateError};

/// Renders rows for a list command: `format` as given by `--format`
/// (`json`, `table`, `table {{...}}`, or a template), else `default`
/// (a `table ...` template). `header_of` names a field's column.
pub fn render_rows(
    rows: &[Row],
    format: Option<&str>,
    default: &str,
    header_of: &dyn Fn(&str) -> String,
) -> Result<String, TemplateError> {
    let f = match format.map(str::trim) {
        None | Some("") | Some("table") => default,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    let t = Template::parse(f)?;
    let mut text = String::new();
    if t.table {
        text.push_str(&t.header(header_of));
        text.push('\n');
    }
    for r in rows {
        text.push_str(&t.render(r)?);
        text.push('\n');
    }
    Ok(if t.table { table::align(&text) } else { text })
}

/// Docker's column name for a field: `CreatedSince` is `CREATED`, most
/// others are upper-cased with spaces between words.
pub fn default_header(field: &str) -> String {
    match field {
        "CreatedSince" | "RunningFor" | "CreatedAt" => "CREATED".into(),
        "Repository" => "REPOSITORY".into(),
        "Names" => "NAMES".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "MemPerc" => "MEM %".into(),
        "CPUPerc" => "CPU %".into(),
        "NetIO" => "NET I/O".into(),
        "BlockIO" => "BLOCK I/O".into(),
        "PIDs" => "PIDS".into(),
        "Name" => "NAME".into(),
        _ => {
            let mut out = String::new();
            let mut prev_lower = false;
            for c in field.chars() {
                if c.is_uppercase() && prev_lower {
                    out.push(' ');
                }
                prev_lower = c.is_lowercase();
                out.extend(c.to_uppercase());
            }
            out
        }
    }
}

/// Shortens a `sha256:`-prefixed or bare id to docker's 12 characters.
pub fn short_id(id: &str) -> String {
    let bare = id.strip_prefix("sha256:").unwrap_or(id);
    bare.chars().take(12).collect()
}

/// Cuts `s` to `max` characters with an ellipsis, as docker's tables do.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let mut a = Row::new();
        a.insert("ID".into(), "0123456789ab".into());
        a.insert("Names".into(), "web".into());
        let mut b = Row::new();
        b.insert("ID".into(), "ba9876543210".into());
        b.insert("Names".into(), "db".into());
        vec![a, b]
    }

    fn hdr(f: &str) -> String {
        if f == "ID" {
            "CONTAINER ID".into()
        } else {
            default_header(f)
        }
    }

    #[test]
    fn default_table_is_aligned_with_header() {
        let out = render_rows(&rows(), None, "table {{.ID}}\t{{.Names}}", &hdr).unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   NAMES\n0123456789ab   web\nba9876543210   db\n"
        );
    }

    #[test]
    fn json_format_is_one_object_per_line() {
        let out = render_rows(&rows(), Some("json"), "table {{.ID}}", &hdr).unwrap();
        assert_eq!(out.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(v["Names"], "web");
    }

    #[test]
    fn plain_template_is_not_aligned() {
        let out = render_rows(&rows(), Some("{{.Names}}\\t{{.ID}}"), "table", &hdr).unwrap();
        assert_eq!(out, "web\t0123456789ab\ndb\tba9876543210\n");
    }

    #[test]
    fn headers_and_ids() {
        assert_eq!(default_header("CreatedSince"), "CREATED");
        assert_eq!(default_header("ImageID"), "IMAGE ID");
        assert_eq!(default_header("LocalVolumes"), "LOCAL VOLUMES");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(ellipsis("\"sleep 1000000000\"", 20), "\"sleep 1000000000\"");
        assert_eq!(ellipsis("abcdefghijklmnopqrstuvwxyz", 5), "abcd…");
    }
}
