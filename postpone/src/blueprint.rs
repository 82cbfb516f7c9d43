//! Blueprints: tasks (and their periodic schedules) grouped in a library, added to an app
//! under a namespace (Procrastinate's `Blueprint` and `App.add_tasks_from`).
//!
//! A task `send` of a blueprint added under `emails` is registered as `emails:send`, its
//! aliases as `emails:<alias>`, and the blueprint's periodic registrations follow it.
//! Blueprints nest: `app ← "billing" ← "invoices"` gives `billing:invoices:send`.
//!
//! ```
//! use postpone::{App, Blueprint, Task, periodic::Periodic, task::{JobContext, TaskError}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Send {
//!     to: String,
//! }
//! impl Task for Send {
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "send".into()
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         Ok(())
//!     }
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Digest {
//!     timestamp: i64,
//! }
//! impl Task for Digest {
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "digest".into()
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         Ok(())
//!     }
//! }
//!
//! /// What an `emails` library exposes.
//! fn emails() -> Blueprint {
//!     Blueprint::new()
//!         .task::<Send>()
//!         .task::<Digest>()
//!         .periodic(Periodic::new::<Digest>("0 8 * * *"))
//! }
//!
//! # fn main() -> postpone::Result<()> {
//! let app = App::builder()
//!     .blueprint("emails", emails())
//!     .database_url("postgres:///app")?
//!     .build()?;
//! assert!(app.task_names().contains(&"emails:send".to_owned()));
//! assert_eq!(app.periodic_tasks()[0].task_name(), "emails:digest");
//! # Ok(()) }
//! ```

use crate::builtin::{NAMESPACE, RemoveOldJobs};
use crate::periodic::Periodic;
use crate::task::{Task, TaskEntry};
use crate::{Error, Result};

/// Tasks and periodic registrations to add to an app under a namespace.
#[derive(Debug, Default, Clone)]
pub struct Blueprint {
    tasks: Vec<TaskEntry>,
    periodic: Vec<Periodic>,
    children: Vec<(String, Blueprint)>,
}

impl Blueprint {
    /// An empty blueprint.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a task.
    #[must_use]
    pub fn task<T: Task>(mut self) -> Self {
        self.tasks.push(TaskEntry::of::<T>());
        self
    }

    /// Registers a periodic schedule for one of this blueprint's tasks (named as inside
    /// the blueprint).
    #[must_use]
    pub fn periodic(mut self, periodic: Periodic) -> Self {
        self.periodic.push(periodic);
        self
    }

    /// Adds another blueprint's tasks under `namespace` (`namespace:task`).
    #[must_use]
    pub fn blueprint(mut self, namespace: impl Into<String>, blueprint: Blueprint) -> Self {
        self.children.push((namespace.into(), blueprint));
        self
    }

    /// The app's registry: [`Self::flatten`] plus the builtin tasks.
    pub(crate) fn flatten_root(self) -> Result<(Vec<TaskEntry>, Vec<Periodic>)> {
        if self
            .children
            .iter()
            .any(|(namespace, _)| namespace == NAMESPACE)
        {
            return Err(Error::InvalidInput(format!(
                "blueprint namespace {NAMESPACE:?} is taken by the builtin tasks: choose another namespace"
            )));
        }
        let (mut tasks, periodic) = self.flatten()?;
        tasks.push(TaskEntry::of::<RemoveOldJobs>());
        Ok((tasks, periodic))
    }

    /// Every task and periodic registration, nested blueprints included, with names
    /// prefixed by their namespaces.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty namespace or one added twice to the same
    /// blueprint.
    pub(crate) fn flatten(self) -> Result<(Vec<TaskEntry>, Vec<Periodic>)> {
        let mut tasks = self.tasks;
        let mut periodic = self.periodic;
        let mut namespaces: Vec<&str> = Vec::new();
        for (namespace, _) in &self.children {
            if namespace.is_empty() {
                return Err(Error::InvalidInput(
                    "blueprint namespace is empty: give it a name, such as \"emails\"".to_owned(),
                ));
            }
            if namespaces.contains(&namespace.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "blueprint namespace {namespace:?} is added twice: give each blueprint its own namespace"
                )));
            }
            namespaces.push(namespace);
        }
        for (namespace, child) in self.children {
            let prefix = |name: &str| format!("{namespace}:{name}");
            let (child_tasks, child_periodic) = child.flatten()?;
            tasks.extend(child_tasks.into_iter().map(|mut entry| {
                entry.name = prefix(&entry.name);
                entry.config.aliases = entry.config.aliases.iter().map(|a| prefix(a)).collect();
                entry
            }));
            periodic.extend(child_periodic.into_iter().map(|mut p| {
                p.task_name = prefix(&p.task_name);
                p
            }));
        }
        Ok((tasks, periodic))
    }
}
