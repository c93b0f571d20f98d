//! The shadow tables a PostgreSQL rebuild fills, and the swap that puts them in place of the
//! live ones: the live tables' shape, with their names, constraints and indexes, so that after
//! the swap the schema is the one the migrations made.
//!
//! A replay writes every row once: the shadow tables carry only the unique indexes its upserts
//! need, the other indexes are built once at the end (one sort instead of an insert per row),
//! and the swap moves the tables instead of copying their rows. Views over a swapped table are
//! bound to the table itself, not its name, so the swap recreates them from their definitions.

use sqlx::{PgConnection, Row};

use crate::store::StoreError;

/// A PostgreSQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where a rebuild of one projection replays to: a schema with copies of its tables, and a
/// checkpoint of its own.
pub(super) struct ShadowTables {
    /// The live schema and the shadow one, quoted.
    pub live: String,
    pub shadow: String,
    pub consumer: String,
    tables: &'static [&'static str],
    /// The indexes built once the replay is over: `CREATE INDEX` statements on the shadow.
    deferred: Vec<String>,
}

impl ShadowTables {
    pub fn new(
        projection: &str,
        consumer: String,
        live_schema: &str,
        tables: &'static [&'static str],
    ) -> Self {
        Self {
            live: quote_ident(live_schema),
            shadow: quote_ident(&format!("aisha_rebuild_{projection}")),
            consumer,
            tables,
            deferred: Vec::new(),
        }
    }

    fn live_table(&self, table: &str) -> String {
        format!("{}.{}", self.live, quote_ident(table))
    }

    fn shadow_table(&self, table: &str) -> String {
        format!("{}.{}", self.shadow, quote_ident(table))
    }

    /// The schema's search path during the replay: the shadow first.
    pub fn replay_path(&self) -> String {
        format!("{}, {}", self.shadow, self.live)
    }

    /// Makes the shadow schema afresh: each table with the live one's columns, defaults and
    /// checks, its primary key and unique constraints and indexes under their own names; the
    /// other indexes are noted for [`Self::finish`].
    pub async fn create(&mut self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let shadow = self.shadow.clone();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {shadow}"))
            .execute(&mut *conn)
            .await?;
        for &table in self.tables {
            let (live, copy) = (self.live_table(table), self.shadow_table(table));
            sqlx::query(&format!(
                "CREATE TABLE {copy} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .execute(&mut *conn)
            .await?;
            let constraints = sqlx::query(
                "SELECT conname::text AS name, pg_get_constraintdef(oid) AS definition
                   FROM pg_constraint
                  WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x')
                  ORDER BY conname",
            )
            .bind(&live)
            .fetch_all(&mut *conn)
            .await?;
            for c in constraints {
                let (name, definition): (String, String) = (c.get("name"), c.get("definition"));
                sqlx::query(&format!(
                    "ALTER TABLE {copy} ADD CONSTRAINT {} {definition}",
                    quote_ident(&name)
                ))
                .execute(&mut *conn)
                .await?;
            }
            let indexes = sqlx::query(
                "SELECT c.relname::text AS name, i.indisunique AS is_unique,
                        pg_get_indexdef(i.indexrelid) AS definition
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                  WHERE i.indrelid = $1::regclass
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                     WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
                  ORDER BY c.relname",
            )
            .bind(&live)
            .fetch_all(&mut *conn)
            .await?;
            for index in indexes {
                let (name, unique, definition): (String, bool, String) = (
                    index.get("name"),
                    index.get("is_unique"),
                    index.get("definition"),
                );
                // `CREATE [UNIQUE] INDEX name ON table USING method (…) …`: the part from
                // `USING` on is the index itself, whatever the table is called.
                let Some(at) = definition.find(" USING ") else {
                    return Err(StoreError::Corrupt(format!(
                        "index {name} of {table}: unexpected definition `{definition}`"
                    )));
                };
                let statement = format!(
                    "CREATE {}INDEX {} ON {copy}{}",
                    if unique { "UNIQUE " } else { "" },
                    quote_ident(&name),
                    &definition[at..]
                );
                if unique {
                    // An upsert's conflict target: needed while the replay writes.
                    sqlx::query(&statement).execute(&mut *conn).await?;
                } else {
                    self.deferred.push(statement);
                }
            }
        }
        Ok(())
    }

    /// Builds the indexes left for the end and gathers the tables' statistics, outside the swap
    /// (nobody reads the shadow tables yet), so the swap stays short.
    pub async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), StoreError> {
        for statement in std::mem::take(&mut self.deferred) {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
        for &table in self.tables {
            sqlx::query(&format!("ANALYZE {}", self.shadow_table(table)))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Puts the shadow tables in place of the live ones, inside the caller's transaction (which
    /// holds the projection's lock, and the swap lock: two swaps at once could each drop a
    /// view over both their tables). Readers see the old rows until it commits.
    pub async fn swap(&self, tx: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query(&format!("SET LOCAL search_path TO {}", self.live))
            .execute(&mut *tx)
            .await?;
        let live: Vec<String> = self.tables.iter().map(|t| self.live_table(t)).collect();
        // Every view over these tables, and over such views, deepest last: the order they can
        // be created in again. Their definitions print the names as the live schema sees them.
        let views = sqlx::query(
            "WITH RECURSIVE over(view, depth) AS (
                 SELECT r.ev_class, 1
                   FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                  WHERE d.classid = 'pg_rewrite'::regclass
                    AND d.refobjid = ANY($1::regclass[]) AND r.ev_class <> d.refobjid
                 UNION ALL
                 SELECT r.ev_class, over.depth + 1
                   FROM over JOIN pg_depend d ON d.refobjid = over.view
                        JOIN pg_rewrite r ON r.oid = d.objid
                  WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.refobjid
             )
             SELECT c.relname::text AS name, c.relkind::text AS kind,
                    pg_get_viewdef(c.oid) AS definition, max(over.depth) AS depth
               FROM over JOIN pg_class c ON c.oid = over.view
              GROUP BY c.oid, c.relname, c.relkind
              ORDER BY depth, name",
        )
        .bind(&live)
        .fetch_all(&mut *tx)
        .await?;
        let mut recreate = Vec::with_capacity(views.len());
        for view in views {
            let (name, kind, definition): (String, String, String) =
                (view.get("name"), view.get("kind"), view.get("definition"));
            if kind != "v" {
                // A materialized view would lose its rows: refuse rather than guess.
                return Err(StoreError::Corrupt(format!(
                    "{name} (kind {kind}) depends on a rebuilt table; only plain views can be recreated"
                )));
            }
            recreate.push(format!(
                "CREATE VIEW {}.{} AS {definition}",
                self.live,
                quote_ident(&name)
            ));
        }
        for table in &live {
            sqlx::query(&format!("DROP TABLE {table} CASCADE"))
                .execute(&mut *tx)
                .await?;
        }
        for &table in self.tables {
            sqlx::query(&format!(
                "ALTER TABLE {} SET SCHEMA {}",
                self.shadow_table(table),
                self.live
            ))
            .execute(&mut *tx)
            .await?;
        }
        for statement in recreate {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Drops what is left of the shadow schema (nothing but the schema after a swap).
    pub async fn drop(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.shadow))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
