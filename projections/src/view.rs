//! A day-keyed view analysts may export, and its export as CSV that reads the same on both
//! backends.

use chrono::NaiveDate;
use db::{Backend, SqlRow, Tx};

use crate::ProjectionError;

/// way, and the CSV must read the same on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A UTC day, written `YYYY-MM-DD`.
    Day,
    Text,
    Integer,
    /// Written with three decimals; empty when null.
    Real,
}

/// A day-keyed view analysts may export: its columns in order and the order of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnKind)],
    /// The view's key columns, which order an export so that it is stable and diffable.
    pub key: &'static [&'static str],
}

impl View {
    /// `ORDER BY` of the key. Text compares byte by byte on both backends (PostgreSQL's default
    /// collation may ignore punctuation and put `1:1` after `16:9`), so both export alike.
    pub fn order_by(&self, backend: Backend) -> String {
        self.key
            .iter()
            .map(|column| {
                let text = self
                    .columns
                    .iter()
                    .any(|(c, kind)| c == column && *kind == ColumnKind::Text);
                match backend {
                    Backend::Postgres if text => format!("{column} COLLATE \"C\""),
                    _ => (*column).to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The CSV header line (without the newline).
    pub fn header(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The rows for `from..=to` (UTC days) as CSV, header first. Only days with rows appear.
    pub async fn csv(
        &self,
        tx: &mut Tx<'_>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<String, ProjectionError> {
        let columns = self.header();
        let rows = tx
            .fetch_all(
                &format!(
                    "SELECT {columns} FROM {} WHERE day BETWEEN $1 AND $2 ORDER BY {}",
                    self.name,
                    self.order_by(tx.backend())
                ),
                vec![from.into(), to.into()],
            )
            .await?;
        let mut out = columns;
        out.push('\n');
        for row in &rows {
            let fields = self
                .columns
                .iter()
                .map(|(column, kind)| csv_field(row, column, *kind))
                .collect::<Result<Vec<_>, _>>()?;
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        Ok(out)
    }
}

fn csv_field(row: &SqlRow, column: &str, kind: ColumnKind) -> Result<String, ProjectionError> {
    Ok(match kind {
        ColumnKind::Day => row
            .get::<Option<NaiveDate>>(column)?
            .map_or(String::new(), |d| d.to_string()),
        ColumnKind::Text => csv_text(&row.get::<Option<String>>(column)?.unwrap_or_default()),
        ColumnKind::Integer => row
            .get::<Option<i64>>(column)?
            .map_or(String::new(), |n| n.to_string()),
        ColumnKind::Real => row
            .get::<Option<f64>>(column)?
            .map_or(String::new(), |v| format!("{v:.3}")),
    })
}

/// One text field as RFC 4180 writes it: quoted when it holds a comma, a quote or a line break.
/// A leading `=`, `+`, `-` or `@` is prefixed with `'` so that a spreadsheet never runs it as a
/// formula (no value written today starts so; pack ids and endpoints come from operators).
pub fn csv_text(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_text("portrait-business"), "portrait-business");
        assert_eq!(csv_text("fal-ai/flux-lora"), "fal-ai/flux-lora");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text(""), "");
    }
}
