//! Comparing SAEs (of one run or several) on their held-out evaluations: a table and the frontiers
//! researchers read a sweep by, L0 against explained variance and against the downstream loss recovered,
//! one point per SAE.

use serde::Serialize;

use super::eval::Evaluation;
use crate::display::{ChartGrid, MimeBundle, Render, Scatter, Table};

/// One SAE in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub run: String,
    pub sae: String,
    pub l0: f64,
    pub explained_variance: f64,
    pub mse: f64,
    pub recovered: Option<f64>,
}

/// SAEs side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub points: Vec<Point>,
}

impl Comparison {
    /// The SAEs of each `(run name, evaluation)`.
    pub fn new<'a>(evaluations: impl IntoIterator<Item = (&'a str, &'a Evaluation)>) -> Comparison {
        let points = evaluations
            .into_iter()
            .flat_map(|(run, e)| {
                e.saes.iter().map(move |s| Point {
                    run: run.to_string(),
                    sae: s.name.clone(),
                    l0: s.l0,
                    explained_variance: s.explained_variance,
                    mse: s.mse,
                    recovered: s.downstream.recovered,
                })
            })
            .collect();
        Comparison { points }
    }

    /// The points no other point beats on both L0 (lower) and explained variance (higher), by L0.
    pub fn frontier(&self) -> Vec<&Point> {
        let mut out: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| {
                !self.points.iter().any(|q| {
                    q.l0 <= p.l0
                        && q.explained_variance >= p.explained_variance
                        && (q.l0 < p.l0 || q.explained_variance > p.explained_variance)
                })
            })
            .collect();
        out.sort_by(|a, b| a.l0.total_cmp(&b.l0));
        out
    }
}

impl Render for Comparison {
    fn bundle(&self) -> MimeBundle {
        let frontier: Vec<(&str, &str)> = self.frontier().iter().map(|p| (p.run.as_str(), p.sae.as_str())).collect();
        let mut table = Table::new(
            "SAEs compared on held-out tokens",
            &["run", "SAE", "L0", "explained variance", "MSE", "recovered", "on the frontier"],
        );
        for p in &self.points {
            table.row(vec![
                p.run.clone(),
                p.sae.clone(),
                format!("{:.2}", p.l0),
                format!("{:.4}", p.explained_variance),
                format!("{:.4}", p.mse),
                p.recovered.map_or("–".into(), |r| format!("{:.1}%", r * 100.0)),
                if frontier.contains(&(p.run.as_str(), p.sae.as_str())) { "yes".into() } else { String::new() },
            ]);
        }
        let mut runs: Vec<&str> = Vec::new();
        for p in &self.points {
            if !runs.contains(&p.run.as_str()) {
                runs.push(&p.run);
            }
        }
        let scatter = |title: &str, y: &str, value: fn(&Point) -> Option<f64>| {
            let mut chart = Scatter::new(title, "L0", y);
            for run in &runs {
                let points = self
                    .points
                    .iter()
                    .filter(|p| p.run == *run)
                    .filter_map(|p| value(p).map(|v| (p.l0, v, p.sae.clone())))
                    .collect();
                chart = chart.series(run.to_string(), points);
            }
            chart
        };
        let grid = ChartGrid::new("L0 against reconstruction and downstream loss", 2)
            .chart(&scatter("explained variance", "explained variance", |p| Some(p.explained_variance)))
            .chart(&scatter("loss recovered", "recovered", |p| p.recovered));
        let t = table.bundle();
        let g = grid.bundle();
        MimeBundle::new(format!("{}\n\n{}", t.plain(), g.plain()))
            .with(
                "text/html",
                format!("{}{}", t.get("text/html").unwrap_or_default(), g.get("text/html").unwrap_or_default()),
            )
            .with("image/svg+xml", g.get("image/svg+xml").unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(sae: &str, l0: f64, ev: f64) -> Point {
        Point { run: "r".into(), sae: sae.into(), l0, explained_variance: ev, mse: 0.0, recovered: Some(ev) }
    }

    #[test]
    fn the_frontier_is_the_points_nothing_beats_on_both() {
        let c = Comparison {
            points: vec![
                point("a", 8.0, 0.7),
                point("b", 16.0, 0.8),
                point("c", 16.0, 0.75),
                point("d", 32.0, 0.79),
                point("e", 4.0, 0.5),
            ],
        };
        let names: Vec<&str> = c.frontier().iter().map(|p| p.sae.as_str()).collect();
        assert_eq!(names, ["e", "a", "b"], "c is beaten by b, d by b");
        let shown = c.bundle();
        assert!(shown.plain().contains("on the frontier") && shown.get("image/svg+xml").unwrap().starts_with("<svg"));
    }
}
