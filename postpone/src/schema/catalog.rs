//! Catalog introspection: the `procrastinate_*` and `postpone_*` objects of one schema as an
//! ordered map `"kind name" -> normalized definition`.
//!
//! Two schemas have equal maps exactly when a client cannot tell them apart, apart from
//! three things left out on purpose:
//!
//! - plpgsql bodies of `procrastinate_*` functions (Procrastinate's and ours are written
//!   differently by design and must only behave alike; their signature, result type,
//!   language, volatility, strictness, security, parallel safety, cost, rows and settings
//!   are compared). Bodies of `postpone_*` functions are compared, as an md5.
//! - column order: clients read columns by name, and a database that Procrastinate
//!   migrated from 2.x has `priority` and later columns at the end.
//! - privileges and comments.
//!
//! Definitions are read with the schema first in `search_path`, so types and tables print
//! unqualified; the qualifiers PostgreSQL always prints (index and trigger definitions)
//! are stripped. Indexes, constraints and triggers are included whatever their name when
//! their table is one of ours (`idx_procrastinate_*`, `check_not_todo_abort_requested`).

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::{Error, Result};

/// `"kind name" -> definition` for every `procrastinate_*` / `postpone_*` object, ordered.
/// Kinds: `type`, `table`, `sequence`, `column`, `constraint`, `index`, `function`, `trigger`.
pub type Catalog = BTreeMap<String, String>;

/// Our object names, as a `LIKE` condition on a `name` expression.
macro_rules! ours {
    ($column:literal) => {
        concat!(
            "(",
            $column,
            " LIKE 'procrastinate\\_%' OR ",
            $column,
            " LIKE 'postpone\\_%')"
        )
    };
}

/// Relations of ours in schema `$1` (tables, views, sequences), by oid.
macro_rules! our_relations {
    () => {
        concat!(
            "(SELECT c.oid, c.relname, c.relkind FROM pg_class c \
              JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND ",
            ours!("c.relname"),
            ")"
        )
    };
}

/// One query per kind; each returns `(key text, definition text)`.
const QUERIES: &[&str] = &[
    // enums, standalone composite types, domains
    concat!(
        "SELECT 'type ' || t.typname,
            CASE t.typtype
                WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                           FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
                WHEN 'c' THEN 'composite (' || (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                                FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) || ')'
                WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod) || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                ELSE 'type of kind ' || t.typtype::text
            END
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = $1 AND t.typtype IN ('e', 'c', 'd', 'b', 'r', 'm')
           AND (t.typtype <> 'c' OR EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
           AND ",
        ours!("t.typname")
    ),
    // tables and views
    concat!(
        "SELECT 'table ' || r.relname,
            CASE r.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                           WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END
            || CASE c.relpersistence WHEN 'u' THEN ', unlogged' ELSE '' END
            || CASE WHEN c.relrowsecurity THEN ', row level security' ELSE '' END
            || CASE WHEN r.relkind IN ('v', 'm') THEN ' as ' || pg_get_viewdef(r.oid) ELSE '' END
         FROM ",
        our_relations!(),
        " r JOIN pg_class c ON c.oid = r.oid WHERE r.relkind <> 'S'"
    ),
    // sequences, with what owns them (serial or identity columns)
    concat!(
        "SELECT 'sequence ' || r.relname,
            format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement
            || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache
            || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
            || coalesce((SELECT ' owned by ' || owner.relname || '.' || a.attname
                         FROM pg_depend d
                         JOIN pg_class owner ON owner.oid = d.refobjid
                         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
                           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                         LIMIT 1), '')
         FROM ",
        our_relations!(),
        " r JOIN pg_sequence s ON s.seqrelid = r.oid"
    ),
    // columns: type, nullability, default, identity, generation, collation
    concat!(
        "SELECT 'column ' || r.relname || '.' || a.attname,
            format_type(a.atttypid, a.atttypmod)
            || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
            || CASE WHEN a.attgenerated = 's' THEN ' generated always as ' || pg_get_expr(d.adbin, d.adrelid) || ' stored'
                    ELSE coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') END
            || CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
                                  WHEN 'd' THEN ' generated by default as identity' ELSE '' END
            || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                    THEN ' collate ' || quote_ident(coll.collname) ELSE '' END
         FROM ",
        our_relations!(),
        " r
         JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         LEFT JOIN pg_collation coll ON coll.oid = a.attcollation
         WHERE r.relkind <> 'S'"
    ),
    // constraints of our tables
    concat!(
        "SELECT 'constraint ' || r.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
         FROM ",
        our_relations!(),
        " r JOIN pg_constraint k ON k.conrelid = r.oid"
    ),
    // indexes of our tables
    concat!(
        "SELECT 'index ' || i.relname, pg_get_indexdef(i.oid)
         FROM ",
        our_relations!(),
        " r JOIN pg_index x ON x.indrelid = r.oid JOIN pg_class i ON i.oid = x.indexrelid"
    ),
    // functions and procedures, keyed by argument types
    concat!(
        "SELECT 'function ' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')',
            concat_ws(' ',
                CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function'
                               ELSE 'function' END,
                '(' || pg_get_function_arguments(p.oid) || ')',
                'returns ' || pg_get_function_result(p.oid),
                'language ' || l.lanname,
                CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END,
                CASE WHEN p.proisstrict THEN 'strict' END,
                CASE WHEN p.prosecdef THEN 'security definer' END,
                CASE WHEN p.proleakproof THEN 'leakproof' END,
                'parallel ' || CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted' ELSE 'unsafe' END,
                'cost ' || p.procost,
                CASE WHEN p.proretset THEN 'rows ' || p.prorows END,
                CASE WHEN p.proconfig IS NOT NULL THEN 'set ' || array_to_string(p.proconfig, ', ') END,
                CASE WHEN p.proname LIKE 'postpone\\_%' THEN 'body md5 ' || md5(p.prosrc) END)
         FROM pg_proc p
         JOIN pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_language l ON l.oid = p.prolang
         WHERE n.nspname = $1 AND ",
        ours!("p.proname")
    ),
    // triggers on our tables (not the internal ones behind foreign keys)
    concat!(
        "SELECT 'trigger ' || r.relname || '.' || g.tgname,
            pg_get_triggerdef(g.oid)
            || CASE g.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica only)'
                                WHEN 'A' THEN ' (always)' ELSE '' END
         FROM ",
        our_relations!(),
        " r JOIN pg_trigger g ON g.tgrelid = r.oid WHERE NOT g.tgisinternal"
    ),
];

/// Reads the catalog of the connection's current schema (the first existing schema of its
/// `search_path`).
///
/// # Errors
/// [`Error::InvalidInput`] when no schema of the `search_path` exists, or a database error.
pub async fn read_catalog(client: &impl GenericClient) -> Result<Catalog> {
    let row = client.query_one("SELECT current_schema()", &[]).await?;
    let schema: Option<String> = row.try_get(0)?;
    let schema = schema.ok_or_else(|| {
        Error::InvalidInput(
            "no schema of the connection's search_path exists: create it or fix search_path"
                .to_owned(),
        )
    })?;
    read_catalog_of(client, &schema).await
}

/// Reads the catalog of `schema`, which must be first in the connection's `search_path`.
pub(crate) async fn read_catalog_of(client: &impl GenericClient, schema: &str) -> Result<Catalog> {
    let quoted: String = client
        .query_one("SELECT quote_ident($1)", &[&schema])
        .await?
        .try_get(0)?;
    let mut catalog = Catalog::new();
    for query in QUERIES {
        for row in client.query(*query, &[&schema]).await? {
            let key: String = row.try_get(0)?;
            let definition: Option<String> = row.try_get(1)?;
            let definition = strip_qualifier(&definition.unwrap_or_default(), &quoted);
            catalog.insert(key, definition);
        }
    }
    Ok(catalog)
}

/// Removes `schema.` qualifiers that start an identifier (not those inside another name).
fn strip_qualifier(definition: &str, quoted_schema: &str) -> String {
    let needle = format!("{quoted_schema}.");
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(at) = rest.find(&needle) {
        let before = &rest[..at];
        let glued = before
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '"');
        out.push_str(before);
        if glued {
            out.push_str(&needle);
        }
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::strip_qualifier;

    #[test]
    fn strips_only_whole_qualifiers() {
        assert_eq!(
            strip_qualifier("CREATE INDEX i ON public.jobs USING btree (x)", "public"),
            "CREATE INDEX i ON jobs USING btree (x)"
        );
        assert_eq!(
            strip_qualifier("ON nopublic.jobs", "public"),
            "ON nopublic.jobs"
        );
        assert_eq!(
            strip_qualifier("ON \"My Schema\".jobs", "\"My Schema\""),
            "ON jobs"
        );
    }
}
