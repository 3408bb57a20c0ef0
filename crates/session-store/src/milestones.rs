//! Milestones: named groups of tasks, whose usage is the sum of their tasks'.

use crate::db::{OptionalExtension, Row, params};
use redact::Redacted;

use crate::error::{Missing, StoreError};
use crate::ids::MilestoneId;
use crate::status::SessionPolicy;
use crate::store::Store;
use crate::units::Timestamp;

/// A milestone to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMilestone {
    /// Unique among milestones.
    pub name: Redacted,
    pub description: Redacted,
    /// The session policy for the milestone's tasks, unless a task sets its own.
    pub policy: Option<SessionPolicy>,
}

/// A milestone as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    pub id: MilestoneId,
    pub name: String,
    pub description: String,
    pub policy: Option<SessionPolicy>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const MILESTONE_COLUMNS: &str = "id, name, description, session_policy, created_at, updated_at";

impl Store {
    /// Creates a milestone. Its name must be new: [`StoreError::MilestoneExists`] otherwise.
    /// Its name and description come redacted (a name that held a secret is found by its
    /// redacted form).
    pub fn create_milestone(
        &mut self,
        milestone: &NewMilestone,
    ) -> Result<MilestoneId, StoreError> {
        if milestone.name.as_str().trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "milestone name",
                reason: String::from("it is empty"),
            });
        }
        self.write("create a milestone", |transaction| {
            let name = milestone.name.as_str();
            let taken = transaction
                .prepare_cached("SELECT 1 FROM milestones WHERE name = ?1")?
                .exists([name])?;
            if taken {
                return Err(StoreError::MilestoneExists {
                    name: name.to_owned(),
                }
                .into());
            }
            let now = Timestamp::now();
            let id = transaction
                .prepare_cached(
                    "INSERT INTO milestones (name, description, session_policy, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
                )?
                .query_row(
                    params![name, milestone.description.as_str(), milestone.policy, now],
                    |row| row.get(0),
                )?;
            Ok(MilestoneId(id))
        })
    }

    /// The milestone with this id.
    pub fn milestone(&self, id: MilestoneId) -> Result<Milestone, StoreError> {
        self.read("read a milestone", |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {MILESTONE_COLUMNS} FROM milestones WHERE id = ?1"
                ))?
                .query_row([id], milestone_from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(Missing::Milestone(id)).into())
        })
    }

    /// The milestone with this name.
    pub fn milestone_by_name(&self, name: &str) -> Result<Milestone, StoreError> {
        self.read("read a milestone", |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {MILESTONE_COLUMNS} FROM milestones WHERE name = ?1"
                ))?
                .query_row([name], milestone_from_row)
                .optional()?
                .ok_or_else(|| {
                    StoreError::NotFound(Missing::MilestoneNamed(name.to_owned())).into()
                })
        })
    }

    /// Every milestone, oldest first.
    pub fn milestones(&self) -> Result<Vec<Milestone>, StoreError> {
        self.read("list milestones", |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {MILESTONE_COLUMNS} FROM milestones ORDER BY id"
            ))?;
            let milestones = statement
                .query_map((), milestone_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(milestones)
        })
    }
}

fn milestone_from_row(row: &Row<'_>) -> crate::db::Result<Milestone> {
    Ok(Milestone {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        policy: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}
