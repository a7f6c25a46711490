//! Streaming pipelines: windowed results against the same query run in batch.

mod enrich_branch;
mod golden;
mod joins;
mod oracle;
mod projections;
mod registry;
mod source;

use arrow::array::RecordBatch;

/// Rows of `batches` as sorted text lines, cells joined by ` | `.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    arrow::util::display::array_value_to_string(c, row)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            out.push(cells.join(" | "));
        }
    }
    out.sort();
    out
}
