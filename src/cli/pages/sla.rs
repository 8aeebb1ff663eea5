//! Approval SLA compliance per week: the metrics view keeps only running totals, so the
//! pages fold the same projection (`ProgramMetrics`) over the log themselves and note, at
//! each event, how many decisions it counted and how many were on time; a decision counts
//! in the week (Monday, UTC) of the event that decided it. The fold resumes from where it
//! stopped, so a dashboard load reads only the events appended since the last one.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use dealreg_events::{LogPages, Position};
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::Projection;

#[derive(Default)]
pub struct Weekly {
    metrics: ProgramMetrics,
    after: Position,
    /// Week's Monday -> (decisions, on time).
    pub weeks: BTreeMap<NaiveDate, (u64, u64)>,
}

impl Weekly {
    /// Folds what the log has past the last call.
    pub async fn update(&mut self, spec: &crate::cli::store::StoreSpec) -> Result<(), String> {
        let store = crate::cli::store::open_read(spec).await?;
        let mut pages = LogPages::new(&store, self.after)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
            for recorded in &page {
                let event = dealreg_engine::decode_event(recorded).map_err(|e| e.to_string())?;
                let before = (self.metrics.decisions, self.metrics.decisions_on_time);
                self.metrics.apply(recorded.position, &event);
                let decided = self.metrics.decisions.saturating_sub(before.0);
                if decided > 0 {
                    let day = event.at().date_naive();
                    let monday =
                        day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                    let week = self.weeks.entry(monday).or_default();
                    week.0 += decided;
                    week.1 += self.metrics.decisions_on_time.saturating_sub(before.1);
                }
                self.after = recorded.position;
            }
        }
        Ok(())
    }
}
