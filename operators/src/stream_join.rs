//! `StreamJoin`: a pipeline query that joins its events with its events, such as
//! auctions with the persons who sell them, run incrementally.
//!
//! Planned as one batch query, such a join would pair only events of the same source
//! batch. Instead, the pipeline cuts its plan at the join: each side (the events one
//! input of the join keeps, after that side's filters and projections) runs over the
//! batch alone, and the join runs over the side rows of this batch against every side
//! row seen before. The rows a batch adds to the join's result are
//!
//! ```text
//!   Δleft ⋈ (right rows seen ∪ Δright)   ∪   left rows seen ⋈ Δright
//! ```
//!
//! so each pair of matching rows comes out exactly once, when the later of the two
//! arrives, whatever the order of the sides. That is the whole join's result, in the
//! order the pairs complete: at the end of the input, the rows of the same query run
//! as a batch query over the same events.
//!
//! The join is DataFusion's own (a hash join for an equality, with its residual
//! filter such as `BETWEEN`), run over the two inputs as [`FeedExec`] leaves. Only
//! inner joins are incremental this way: an outer join would have to take back rows
//! it emitted without a match. Each side keeps every row it passed (a checkpoint keeps
//! them too), so the state grows with the joined events; a query should filter its
//! sides to the events it joins.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::JoinType;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::execution_plan::{replace_children_if_necessary, reset_plan_states};
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::{ExecutionPlan, collect};

use crate::error::{Error, Result};
use crate::feed::{Feed, FeedExec, RowSource};

/// Side rows kept as one batch once this many batches have gathered.
const MERGE_AT: usize = 64;

/// One input of the join: the plan that reads the batch, and every row it gave.
struct Side {
    plan: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    seen: Vec<RecordBatch>,
    input: Arc<Feed>,
}

impl Side {
    fn new(plan: &Arc<dyn ExecutionPlan>) -> Self {
        Self {
            plan: Arc::clone(plan),
            schema: plan.schema(),
            seen: Vec::new(),
            input: Arc::new(Feed::default()),
        }
    }

    /// The side's rows of the batch now in the events feed.
    async fn rows(&mut self, task: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        self.plan = reset_plan_states(Arc::clone(&self.plan))?;
        let rows = collect(Arc::clone(&self.plan), Arc::clone(task)).await?;
        Ok(rows.into_iter().filter(|b| b.num_rows() > 0).collect())
    }

    fn keep(&mut self, rows: Vec<RecordBatch>) -> Result<()> {
        self.seen.extend(rows);
        if self.seen.len() >= MERGE_AT {
            self.seen = vec![arrow::compute::concat_batches(&self.schema, &self.seen)?];
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<RecordBatch> {
        Ok(arrow::compute::concat_batches(&self.schema, &self.seen)?)
    }

    fn restore(&mut self, rows: &RecordBatch) -> Result<()> {
        if rows.schema().fields() != self.schema.fields() {
            return Err(Error::Invalid(
                "a checkpoint's join state does not match the pipeline's join".into(),
            ));
        }
        self.seen = (rows.num_rows() > 0)
            .then(|| rows.clone())
            .into_iter()
            .collect();
        Ok(())
    }

    fn rows_seen(&self) -> usize {
        self.seen.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A join of the pipeline's events with its events, and what each side has seen.
pub(crate) struct StreamJoin {
    left: Side,
    right: Side,
    /// The join, reading the two sides' feeds.
    join: Arc<dyn ExecutionPlan>,
    /// Where the join's new rows go: the leaf that stands for the join in the plan
    /// above it.
    pub output: Arc<Feed>,
    /// That leaf.
    pub leaf: Arc<dyn ExecutionPlan>,
}

impl StreamJoin {
    /// The join in `plan` whose both inputs read `events`, if there is one. A plan
    /// may hold one such join (an outer one is refused).
    pub fn find(
        plan: &Arc<dyn ExecutionPlan>,
        events: &Arc<dyn RowSource>,
    ) -> Result<Option<(Self, *const ())>> {
        let Some(node) = joining(plan, events) else {
            return Ok(None);
        };
        if !is_inner(node.as_ref()) {
            return Err(Error::Invalid(
                "a pipeline joins its events with its events only with an inner join: an \
                 outer join would have to take back the rows it emitted without a match"
                    .into(),
            ));
        }
        let children = node.children();
        let [left, right] = children.as_slice() else {
            return Err(Error::Internal("a join without two inputs".into()));
        };
        if [left, right].iter().any(|c| joining(c, events).is_some()) {
            return Err(Error::Invalid(
                "a pipeline joins its events with its events once; join a third time \
                 against another pipeline's table"
                    .into(),
            ));
        }
        if [left, right].iter().any(|c| groups(c)) {
            return Err(Error::Invalid(
                "a pipeline joins its events with its events, not with totals of them: \
                 group above the join, or join another pipeline's table"
                    .into(),
            ));
        }
        let (left, right) = (Side::new(left), Side::new(right));
        let inputs: Vec<Arc<dyn ExecutionPlan>> = [&left, &right]
            .into_iter()
            .map(|side| {
                Arc::new(FeedExec::new(
                    Arc::clone(&side.schema),
                    None,
                    Arc::clone(&side.input) as Arc<dyn RowSource>,
                )) as Arc<dyn ExecutionPlan>
            })
            .collect();
        let join = replace_children_if_necessary(Arc::clone(node), inputs)?;
        let output = Arc::new(Feed::default());
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(FeedExec::new(
            join.schema(),
            None,
            Arc::clone(&output) as Arc<dyn RowSource>,
        ));
        let target = Arc::as_ptr(node) as *const ();
        Ok(Some((
            Self {
                left,
                right,
                join,
                output,
                leaf,
            },
            target,
        )))
    }

    /// Take the batch now in the events feed: the join rows it completes go to
    /// [`StreamJoin::output`].
    pub async fn step(&mut self, task: &Arc<TaskContext>) -> Result<()> {
        let new_left = self.left.rows(task).await?;
        let new_right = self.right.rows(task).await?;
        let mut out = Vec::new();
        if !new_left.is_empty() {
            let mut right = self.right.seen.clone();
            right.extend(new_right.iter().cloned());
            out.extend(self.run(new_left.clone(), right, task).await?);
        }
        if !new_right.is_empty() && !self.left.seen.is_empty() {
            out.extend(
                self.run(self.left.seen.clone(), new_right.clone(), task)
                    .await?,
            );
        }
        self.left.keep(new_left)?;
        self.right.keep(new_right)?;
        self.output.set(out);
        Ok(())
    }

    async fn run(
        &mut self,
        left: Vec<RecordBatch>,
        right: Vec<RecordBatch>,
        task: &Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        if right.is_empty() {
            return Ok(Vec::new());
        }
        self.left.input.set(left);
        self.right.input.set(right);
        // The join keeps the input it built from: a run reads both inputs anew.
        self.join = reset_plan_states(Arc::clone(&self.join))?;
        let rows = collect(Arc::clone(&self.join), Arc::clone(task)).await?;
        self.left.input.set(Vec::new());
        self.right.input.set(Vec::new());
        Ok(rows)
    }

    /// The rows each side has kept, left then right.
    pub fn snapshot(&self) -> Result<[RecordBatch; 2]> {
        Ok([self.left.snapshot()?, self.right.snapshot()?])
    }

    /// Go back to rows a [`StreamJoin::snapshot`] took.
    pub fn restore(&mut self, sides: &[RecordBatch; 2]) -> Result<()> {
        self.left.restore(&sides[0])?;
        self.right.restore(&sides[1])
    }

    /// How many rows the two sides keep.
    pub fn rows_kept(&self) -> usize {
        self.left.rows_seen() + self.right.rows_seen()
    }
}

/// The topmost join below `plan` whose two inputs both read `events`.
fn joining<'a>(
    plan: &'a Arc<dyn ExecutionPlan>,
    events: &Arc<dyn RowSource>,
) -> Option<&'a Arc<dyn ExecutionPlan>> {
    let children = plan.children();
    if is_join(plan.as_ref()) && children.len() == 2 && children.iter().all(|c| reads(c, events)) {
        return Some(plan);
    }
    children.into_iter().find_map(|c| joining(c, events))
}

/// Whether `plan` groups (its rows per batch would be partial totals).
fn groups(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<AggregateExec>().is_some() || plan.children().into_iter().any(groups)
}

fn reads(plan: &Arc<dyn ExecutionPlan>, events: &Arc<dyn RowSource>) -> bool {
    if let Some(leaf) = plan.downcast_ref::<FeedExec>() {
        return leaf.reads(events);
    }
    plan.children().into_iter().any(|c| reads(c, events))
}

fn is_join(plan: &dyn ExecutionPlan) -> bool {
    plan.downcast_ref::<HashJoinExec>().is_some()
        || plan.downcast_ref::<NestedLoopJoinExec>().is_some()
        || plan.downcast_ref::<CrossJoinExec>().is_some()
        || plan.downcast_ref::<SortMergeJoinExec>().is_some()
        || plan.downcast_ref::<SymmetricHashJoinExec>().is_some()
}

fn is_inner(plan: &dyn ExecutionPlan) -> bool {
    let join_type = if let Some(j) = plan.downcast_ref::<HashJoinExec>() {
        *j.join_type()
    } else if let Some(j) = plan.downcast_ref::<NestedLoopJoinExec>() {
        *j.join_type()
    } else if let Some(j) = plan.downcast_ref::<SortMergeJoinExec>() {
        j.join_type()
    } else if let Some(j) = plan.downcast_ref::<SymmetricHashJoinExec>() {
        *j.join_type()
    } else {
        // A cross join.
        JoinType::Inner
    };
    join_type == JoinType::Inner
}
