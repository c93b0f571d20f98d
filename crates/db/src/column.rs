//! PostgreSQL's array binding for the batch helpers: many rows' values as one array per column.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Postgres;

use crate::Arg;

/// One column of many rows' values, bound as one PostgreSQL array: `INSERT … SELECT * FROM
/// UNNEST($1::bigint[], $2::text[], …)` and `IN (SELECT unnest($1::text[]))` have one statement
/// text whatever the row count, so each is prepared once per connection and planned cheaply,
/// where a `VALUES` list of thousands of placeholders is parsed and planned anew every time.
pub(crate) enum Column {
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Date(Vec<Option<NaiveDate>>),
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

impl Column {
    /// An empty column for values like `arg`; `None` for kinds bound row by row (JSON).
    fn like(arg: &Arg, capacity: usize) -> Option<Self> {
        Some(match arg {
            Arg::I64(_) | Arg::OptI64(_) => Self::I64(Vec::with_capacity(capacity)),
            Arg::F64(_) | Arg::OptF64(_) => Self::F64(Vec::with_capacity(capacity)),
            Arg::Bool(_) => Self::Bool(Vec::with_capacity(capacity)),
            Arg::Text(_) | Arg::OptText(_) => Self::Text(Vec::with_capacity(capacity)),
            Arg::Time(_) | Arg::OptTime(_) => Self::Time(Vec::with_capacity(capacity)),
            Arg::Date(_) => Self::Date(Vec::with_capacity(capacity)),
            Arg::Json(_) | Arg::JsonText(_) | Arg::Uuid(_) => return None,
        })
    }

    /// Appends a value; `false` when it is not of the column's type.
    fn push(&mut self, arg: &Arg) -> bool {
        match (self, arg) {
            (Self::I64(c), Arg::I64(v)) => c.push(Some(*v)),
            (Self::I64(c), Arg::OptI64(v)) => c.push(*v),
            (Self::F64(c), Arg::F64(v)) => c.push(Some(*v)),
            (Self::F64(c), Arg::OptF64(v)) => c.push(*v),
            (Self::Bool(c), Arg::Bool(v)) => c.push(Some(*v)),
            (Self::Text(c), Arg::Text(v)) => c.push(Some(v.clone())),
            (Self::Text(c), Arg::OptText(v)) => c.push(v.clone()),
            (Self::Time(c), Arg::Time(v)) => c.push(Some(*v)),
            (Self::Time(c), Arg::OptTime(v)) => c.push(*v),
            (Self::Date(c), Arg::Date(v)) => c.push(Some(*v)),
            _ => return false,
        }
        true
    }

    /// The rows as columns; `None` when a column mixes types (then the caller binds row by row).
    pub(crate) fn transpose(rows: &[Vec<Arg>], width: usize) -> Option<Vec<Self>> {
        let first = rows.first()?;
        let mut columns: Vec<Self> = first
            .iter()
            .map(|a| Self::like(a, rows.len()))
            .collect::<Option<_>>()?;
        for row in rows {
            if row.len() != width {
                return None;
            }
            for (column, arg) in columns.iter_mut().zip(row) {
                if !column.push(arg) {
                    return None;
                }
            }
        }
        Some(columns)
    }

    /// A list of keys as one column.
    pub(crate) fn transpose_one(keys: &[Arg]) -> Option<Self> {
        let mut column = Self::like(keys.first()?, keys.len())?;
        keys.iter().all(|k| column.push(k)).then_some(column)
    }

    pub(crate) fn pg_type(&self) -> &'static str {
        match self {
            Self::I64(_) => "bigint",
            Self::F64(_) => "float8",
            Self::Bool(_) => "boolean",
            Self::Text(_) => "text",
            Self::Time(_) => "timestamptz",
            Self::Date(_) => "date",
        }
    }

    /// `$1::bigint[], $2::text[], …` for the columns in order.
    pub(crate) fn casts(columns: &[Self]) -> String {
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", i + 1, c.pg_type()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        match self {
            Self::I64(v) => query.bind(v),
            Self::F64(v) => query.bind(v),
            Self::Bool(v) => query.bind(v),
            Self::Text(v) => query.bind(v),
            Self::Time(v) => query.bind(v),
            Self::Date(v) => query.bind(v),
        }
    }
}
