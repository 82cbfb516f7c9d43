//! The one public error type of the library.
//!
//! Every variant either prints its own message and exposes its cause through
//! [`std::error::Error::source`], or is transparent: no chain prints a cause twice.
//! Messages say what went wrong, where, and how to fix it, on one line.

use std::fmt;

/// Everything that can go wrong in Postpone.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `todo` job with the same queueing lock already exists (Procrastinate's `AlreadyEnqueued`).
    #[error(
        "job not deferred: a job with queueing lock {queueing_lock:?} is already waiting (status todo); \
         wait for it to start, or defer without that queueing lock"
    )]
    AlreadyEnqueued {
        /// The queueing lock that collided.
        queueing_lock: String,
    },
    /// The input given by a caller is invalid; nothing was changed.
    #[error("{0}")]
    InvalidInput(String),
    /// No task with this name (or alias) is registered in the app.
    #[error(
        "unknown task {name:?}: register it in the app, or defer it by name as an unknown task"
    )]
    UnknownTask {
        /// The task name that was looked up.
        name: String,
    },
    /// The arguments do not fit the task's argument type.
    #[error("arguments for task {task:?} do not fit its type: {message}")]
    InvalidArgs {
        /// The task name.
        task: String,
        /// What serde said, naming the field.
        message: String,
    },
    /// No job has this id.
    #[error("job {id} not found")]
    JobNotFound {
        /// The job id.
        id: i64,
    },
    /// A job's stored result does not fit the type it was read as.
    #[error(
        "the result of job {id} does not fit {wanted}: {message}; read it as the type its task returns (or as serde_json::Value)"
    )]
    InvalidResult {
        /// The job id.
        id: i64,
        /// The type asked for.
        wanted: &'static str,
        /// What serde said, naming the field.
        message: String,
    },
    /// A job did not end within the time it was waited for (`JobHandle::wait`); it may
    /// still end later.
    #[error(
        "job {id} did not end within {waited:?} (its status then: {status}); wait longer, or look at it with `postpone jobs show {id}`"
    )]
    WaitTimedOut {
        /// The job id.
        id: i64,
        /// How long it was waited for.
        waited: std::time::Duration,
        /// Its status when the wait gave up.
        status: String,
    },
    /// The job exists but is not in a status that allows the operation.
    #[error("job {id} cannot be {action}: its status is {status}")]
    InvalidJobStatus {
        /// The job id.
        id: i64,
        /// What was attempted ("retried", "cancelled", ...).
        action: &'static str,
        /// The job's current status.
        status: String,
    },
    /// The database has no Procrastinate/Postpone schema.
    #[error(
        "the database has no Postpone schema, or not all of it (a procrastinate_* or postpone_* object is missing): \
         run `postpone schema apply`, or `app.apply_schema(ApplyScope::All)` from code"
    )]
    SchemaMissing,
    /// The database's schema is not complete or not current.
    #[error(
        "the database schema is not up to date ({pending}): \
         run `postpone schema apply`, or `app.apply_schema(ApplyScope::All)` from code"
    )]
    SchemaOutdated {
        /// What is pending, in words.
        pending: String,
    },
    /// The database was migrated by a newer Postpone than this one.
    #[error(
        "the database schema was migrated by a newer Postpone (it has migration {found:?}, this build knows up to {known:?}): upgrade postpone"
    )]
    SchemaTooNew {
        /// The newest migration recorded in the database.
        found: String,
        /// The newest migration this build knows.
        known: String,
    },
    /// The database holds a Procrastinate schema older than 3.10 (or not fully migrated),
    /// which Postpone will not adopt.
    #[error(
        "the database has a Procrastinate schema older than 3.10 ({missing}): upgrade it first with \
         Procrastinate's own migrations (`procrastinate schema --migrations-path`) up to 3.10, then run `postpone schema apply`"
    )]
    ProcrastinateSchemaTooOld {
        /// What is missing or left over, in words.
        missing: String,
    },
    /// A migration failed; its transaction was rolled back, nothing of it remains.
    #[error("schema migration {migration} failed and was rolled back")]
    MigrationFailed {
        /// The migration, as `version_phase_name`.
        migration: String,
        /// Why it failed.
        #[source]
        source: DbError,
    },
    /// The worker's row in `procrastinate_workers` is gone: another worker pruned it as
    /// stalled (its heartbeat was late), or it was unregistered. Register again.
    #[error(
        "worker {worker_id} is not registered (pruned as stalled by another worker, or unregistered): register it again"
    )]
    WorkerNotRegistered {
        /// The worker id that is gone.
        worker_id: i64,
    },
    /// LISTEN was answered, but a notification sent to it never arrived: the connection
    /// goes through a pooler in transaction mode (PgBouncer's `pool_mode = transaction`),
    /// which does not carry LISTEN from one transaction to the next.
    #[error(
        "notifications do not reach a LISTEN at {target} (a test notification did not arrive within {waited:?}): a connection pooler in transaction mode does not carry LISTEN; connect in poll-only mode (postpone --poll-only, POSTPONE_POLL_ONLY=true, ConnectConfig::with_poll_only), or give the worker a direct or session-pooled connection"
    )]
    ListenNotDelivered {
        /// Where the LISTEN connection went, without password.
        target: String,
        /// How long the test notification was waited for.
        waited: std::time::Duration,
    },
    /// Could not connect to PostgreSQL.
    #[error("could not connect to PostgreSQL at {target}")]
    Connect {
        /// Where we tried to connect, without password.
        target: String,
        /// Why it failed.
        #[source]
        source: DbError,
    },
    /// A database operation failed.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl Error {
    /// True when trying the same operation again, unchanged, may succeed: the connection
    /// failed or was lost (the server restarted, a backend was terminated, the network
    /// dropped), or the server gave up on a transaction for a conflict with another one
    /// (serialization failure, deadlock). Anything about the data itself is not transient.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Database(db) => db.is_connection() || db.is_conflict(),
            _ => false,
        }
    }
}

/// A convenient alias for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the database driver, kept opaque; ask it questions with its predicates.
pub struct DbError {
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
    code: Option<String>,
    constraint: Option<String>,
    detail: Option<String>,
}

impl DbError {
    /// The SQLSTATE code, if the server sent one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The constraint (or unique index) involved, if the server named one.
    #[must_use]
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }

    /// The server's detail line, if any.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// True for a unique violation (SQLSTATE 23505).
    #[must_use]
    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some("23505")
    }

    /// True when the connection is gone or could not be made.
    #[must_use]
    pub fn is_connection(&self) -> bool {
        match self.code() {
            Some(code) => code.starts_with("08") || code.starts_with("57P"),
            None => true,
        }
    }

    /// True when the server gave up on the transaction for a conflict with a concurrent
    /// one: serialization failure (40001) or deadlock (40P01); it may succeed if run again.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self.code(), Some("40001" | "40P01"))
    }

    /// Sets the detail line when the driver did not keep it.
    #[cfg(feature = "sqlx")]
    pub(crate) fn with_detail(mut self, detail: Option<String>) -> Self {
        if self.detail.is_none() {
            self.detail = detail;
        }
        self
    }

    /// Wraps any other error (pool, I/O) as a database error.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            inner: Box::new(error),
            code: None,
            constraint: None,
            detail: None,
        }
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres' Display of a server error is only its severity and message;
        // the message is what people need, with the cause chain printed by the caller.
        fmt::Display::fmt(&self.inner, f)?;
        if let Some(source) = self.inner.source() {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        let db = error.as_db_error();
        let code = error.code().map(|c| c.code().to_owned());
        let constraint = db.and_then(|d| d.constraint()).map(str::to_owned);
        let detail = db.and_then(|d| d.detail()).map(str::to_owned);
        Self {
            inner: Box::new(error),
            code,
            constraint,
            detail,
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::other(other),
        }
    }
}

#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        let (code, constraint) = match &error {
            sqlx::Error::Database(db) => (
                db.code().map(|c| c.into_owned()),
                db.constraint().map(str::to_owned),
            ),
            _ => (None, None),
        };
        Self {
            inner: Box::new(error),
            code,
            constraint,
            detail: None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Database(error.into())
    }
}

#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}
