//! The two dialects' differences in statement text: placeholders and the database clock.

use crate::Backend;

/// `($first, …), (…), …`: `rows` tuples of `columns` numbered placeholders.
pub fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * columns + c).to_string());
        }
        out.push(')');
    }
    out
}

/// `$1`-style placeholders become SQLite's numbered `?1`; statements must not contain `$`
/// anywhere else. The clock is the database's, so instances on several machines agree on
/// leases whatever their own clocks say: `{now}` is the current time and `{now+$N}` the time
/// `$N` (a float, negative for the past) seconds from it; SQLite's is the RFC 3339 text its time
/// columns hold.
pub fn for_backend(backend: Backend, sql: &str) -> std::borrow::Cow<'_, str> {
    let sql: std::borrow::Cow<'_, str> = if sql.contains("{now") {
        clock(backend, sql).into()
    } else {
        sql.into()
    };
    match backend {
        Backend::Postgres => sql,
        Backend::Sqlite => sql.replace('$', "?").into(),
    }
}

const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'";

fn clock(backend: Backend, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(at) = rest.find("{now") {
        out.push_str(&rest[..at]);
        let token = &rest[at..];
        let Some(end) = token.find('}') else {
            out.push_str(token);
            return out;
        };
        match (&token[4..end], backend) {
            ("", Backend::Postgres) => out.push_str("now()"),
            ("", Backend::Sqlite) => {
                out.push_str(SQLITE_NOW);
                out.push(')');
            }
            (offset, Backend::Postgres) if offset.starts_with("+$") => {
                out.push_str(&format!(
                    "(now() + make_interval(secs => {}))",
                    &offset[1..]
                ));
            }
            (offset, Backend::Sqlite) if offset.starts_with("+$") => {
                out.push_str(&format!(
                    "{SQLITE_NOW}, printf('%+f seconds', {}))",
                    &offset[1..]
                ));
            }
            _ => out.push_str(&token[..=end]),
        }
        rest = &token[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_the_databases_in_either_dialect() {
        let sql = "UPDATE t SET at = {now}, until = {now+$2} WHERE id = $1";
        assert_eq!(
            for_backend(Backend::Postgres, sql),
            "UPDATE t SET at = now(), until = (now() + make_interval(secs => $2)) WHERE id = $1"
        );
        assert_eq!(
            for_backend(Backend::Sqlite, sql),
            "UPDATE t SET at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'), \
             until = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', printf('%+f seconds', ?2)) \
             WHERE id = ?1"
        );
    }
}
