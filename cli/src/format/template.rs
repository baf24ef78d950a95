//! The Go-template subset `--format` understands: `{{.Field}}`,
//! `{{json .}}`, `{{json .Field}}`, `{{upper .F}}`, `{{lower .F}}`,
//! `{{.Label "key"}}`, text between actions, `\t`/`\n` escapes and the
//! `table` prefix (a header row and aligned columns).

use std::collections::BTreeMap;

/// One object as templates see it: docker's field names to their text.
pub type Row = BTreeMap<String, String>;

/// Why a format string cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{` without `}}`.
    #[error("template parsing error: unclosed action in {0:?}")]
    Unclosed(String),
    /// An action this subset does not know.
    #[error("template parsing error: function or action {0:?} not supported (use {{{{.Field}}}}, {{{{json .}}}}, {{{{json .Field}}}}, upper, lower)")]
    Unsupported(String),
    /// A field the object does not have.
    #[error("template: can't evaluate field {field} (fields: {known})")]
    UnknownField {
        /// The field asked for.
        field: String,
        /// The fields there are.
        known: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
    Label(String),
    Json(Option<String>),
    Upper(String),
    Lower(String),
}

/// A parsed format: what `--format` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Started with `table`: print a header row and align columns.
    pub table: bool,
    pieces: Vec<Piece>,
}

fn field_of(arg: &str, action: &str) -> Result<String, TemplateError> {
    match arg.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok(f.to_owned())
        }
        _ => Err(TemplateError::Unsupported(action.to_owned())),
    }
}

impl Template {
    /// Parses a `--format` string (docker's escapes and `table` prefix).
    pub fn parse(format: &str) -> Result<Template, TemplateError> {
        let mut s = format;
        let table = s.starts_with("table");
        if table {
            s = &s["table".len()..];
        }
        let s = if table { s.trim() } else { s };
        let s = s.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = s.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(format.to_owned()))?;
            let action = after[..end].trim().trim_matches('-').trim();
            pieces.push(parse_action(action)?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template { table, pieces })
    }

    /// Renders one object.
    pub fn render(&self, row: &Row) -> Result<String, TemplateError> {
        let get = |f: &str| {
            row.get(f)
                .cloned()
                .ok_or_else(|| TemplateError::UnknownField {
                    field: f.to_owned(),
                    known: row.keys().cloned().collect::<Vec<_>>().join(", "),
                })
        };
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(&get(f)?),
                Piece::Upper(f) => out.push_str(&get(f)?.to_uppercase()),
                Piece::Lower(f) => out.push_str(&get(f)?.to_lowercase()),
                Piece::Json(None) => out.push_str(&to_json(row)),
                Piece::Json(Some(f)) => {
                    out.push_str(&serde_json::Value::String(get(f)?).to_string())
                }
                Piece::Label(k) => {
                    let labels = get("Labels")?;
                    let v = labels
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(lk, _)| lk == k)
                        .map(|(_, v)| v.to_owned())
                        .unwrap_or_default();
                    out.push_str(&v);
                }
            }
        }
        Ok(out)
    }

    /// The header row of a `table` format: each field's column name.
    pub fn header(&self, header_of: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) | Piece::Upper(f) | Piece::Lower(f) | Piece::Json(Some(f)) => {
                    out.push_str(&header_of(f))
                }
                Piece::Label(k) => out.push_str(&k.to_uppercase()),
                Piece::Json(None) => {}
            }
        }
        out
    }
}

fn parse_action(action: &str) -> Result<Piece, TemplateError> {
    let words: Vec<&str> = action.split_whitespace().collect();
    let unsupported = || TemplateError::Unsupported(action.to_owned());
    match words.as_slice() {
        ["json", "."] => Ok(Piece::Json(None)),
        ["json", f] => Ok(Piece::Json(Some(field_of(f, action)?))),
        ["upper", f] => Ok(Piece::Upper(field_of(f, action)?)),
        ["lower", f] => Ok(Piece::Lower(field_of(f, action)?)),
        [".Label", key] => {
            let k = key.trim_matches('"');
            if k.len() + 2 != key.len() {
                return Err(unsupported());
            }
            Ok(Piece::Label(k.to_owned()))
        }
        [f] => Ok(Piece::Field(field_of(f, action)?)),
        _ => Err(unsupported()),
    }
}

/// A row as one JSON object (keys sorted, as Go marshals maps).
pub fn to_json(row: &Row) -> String {
    serde_json::to_string(row).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row() -> Row {
        let mut r = Row::new();
        r.insert("ID".into(), "abc123".into());
        r.insert("Names".into(), "web".into());
        r.insert("Labels".into(), "a=1,tier=front".into());
        r
    }

    #[test]
    fn fields_and_text() {
        let t = Template::parse("{{.ID}}: {{.Names}}").unwrap();
        assert!(!t.table);
        assert_eq!(t.render(&row()).unwrap(), "abc123: web");
    }

    #[test]
    fn escapes_become_tabs() {
        let t = Template::parse("{{.ID}}\\t{{.Names}}").unwrap();
        assert_eq!(t.render(&row()).unwrap(), "abc123\tweb");
    }

    #[test]
    fn json_of_the_object_and_of_a_field() {
        let t = Template::parse("{{json .}}").unwrap();
        assert_eq!(
            t.render(&row()).unwrap(),
            r#"{"ID":"abc123","Labels":"a=1,tier=front","Names":"web"}"#
        );
        let t = Template::parse("{{json .Names}}").unwrap();
        assert_eq!(t.render(&row()).unwrap(), "\"web\"");
    }

    #[test]
    fn table_prefix_gives_a_header() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.table);
        let h = t.header(&|f| {
            if f == "ID" {
                "CONTAINER ID".into()
            } else {
                f.to_uppercase()
            }
        });
        assert_eq!(h, "CONTAINER ID\tNAMES");
        assert_eq!(t.render(&row()).unwrap(), "abc123\tweb");
    }

    #[test]
    fn label_upper_lower() {
        let t = Template::parse("{{.Label \"tier\"}} {{upper .Names}} {{lower .ID}}").unwrap();
        assert_eq!(t.render(&row()).unwrap(), "front WEB abc123");
    }

    #[test]
    fn errors_are_reported() {
        assert!(matches!(
            Template::parse("{{.ID"),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            Template::parse("{{range .}}"),
            Err(TemplateError::Unsupported(_))
        ));
        let t = Template::parse("{{.Nope}}").unwrap();
        assert!(matches!(
            t.render(&row()),
            Err(TemplateError::UnknownField { .. })
        ));
    }
}
