//! The hub stack's dashboard, declared once. Like the alarms ([`crate::alarms`]), the stacks
//! read it: `cargo xtask docs` writes it into `infra/contract.json` (key `dashboard`), the CDK
//! app builds its dashboard from there (infra/cdk/lib/constructs/alarms.ts) and
//! infra/tests/test_contract.py checks the SAM template's `DashboardBody` against it.
//!
//! The widgets are laid out in rows, left to right, as CDK's `addWidgets` lays them out (each
//! row below the tallest widget of the one above); the contract gives each widget its place,
//! which the SAM template writes.

use krg_engine::outcome::Metric;
use serde_json::{Value, json};

use crate::alarms::{NAMESPACE, Series, Source, Statistic};

/// The dimension the function publishes a copy of its report counts with (besides the
/// dimensionless fleet total).
pub const REGION: &str = "Region";

/// One graph of the dashboard (a time series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widget {
    pub title: &'static str,
    pub width: u32,
    pub height: u32,
    pub graph: Graph,
}

/// What a widget shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graph {
    /// One line per metric of the function: its fleet total (the dimensionless series), the
    /// statistic over the period (seconds).
    Totals {
        metrics: &'static [Metric],
        statistic: Statistic,
        period: u32,
    },
    /// One line per value of a dimension of a metric of the function: a `SEARCH` over the
    /// copies it publishes with that dimension. `id`: the expression's id in the SAM template
    /// (CDK gives a dashboard's expressions none).
    SearchBy {
        id: &'static str,
        metric: Metric,
        dimension: &'static str,
        statistic: Statistic,
        period: u32,
    },
}

const FIVE_MINUTES: u32 = 300;

/// The dashboard, row by row.
pub const ROWS: &[&[Widget]] = &[
    &[
        Widget {
            title: "Fleet totals (5 min sums)",
            width: 12,
            height: 6,
            graph: Graph::Totals {
                metrics: &[
                    Metric::AutoFixApplied,
                    Metric::DriftDetected,
                    Metric::AutoFixFailed,
                    Metric::FlapSuppressed,
                ],
                statistic: Statistic::Sum,
                period: FIVE_MINUTES,
            },
        },
        Widget {
            title: "Drift detected by Region",
            width: 12,
            height: 6,
            graph: Graph::SearchBy {
                id: "drift",
                metric: Metric::DriftDetected,
                dimension: REGION,
                statistic: Statistic::Sum,
                period: FIVE_MINUTES,
            },
        },
    ],
    &[Widget {
        title: "Member accounts (5 min sums)",
        width: 12,
        height: 6,
        graph: Graph::Totals {
            metrics: &[Metric::AccountNotEntered, Metric::AccountNotAllowed],
            statistic: Statistic::Sum,
            period: FIVE_MINUTES,
        },
    }],
];

impl Graph {
    /// The period of its lines, in seconds.
    pub fn period(self) -> u32 {
        match self {
            Graph::Totals { period, .. } | Graph::SearchBy { period, .. } => period,
        }
    }
}

/// The `SEARCH` expression of a metric's copies with a dimension, in the stack's namespace:
/// `${Name}` stands for the SAM parameter `Name` (`Fn::Sub` in SAM).
fn search_expression(metric: Metric, dimension: &str, statistic: Statistic, period: u32) -> String {
    let namespace = NAMESPACE.names().0;
    format!(
        "SEARCH('{{${{{namespace}}},{dimension}}} MetricName=\"{}\"', '{}', {period})",
        metric.name(),
        statistic.as_str()
    )
}

impl Widget {
    /// Its entry in the contract, at (x, y).
    fn json(&self, x: u32, y: u32) -> Value {
        let mut o = serde_json::Map::new();
        let mut put = |key: &str, value: Value| o.insert(key.to_string(), value);
        put("title", json!(self.title));
        put("x", json!(x));
        put("y", json!(y));
        put("width", json!(self.width));
        put("height", json!(self.height));
        put("view", json!("timeSeries"));
        put("period", json!(self.graph.period()));
        match self.graph {
            Graph::Totals {
                metrics, statistic, ..
            } => put(
                "metrics",
                metrics
                    .iter()
                    .map(|&m| {
                        Series {
                            source: Source::Guard(m),
                            statistic,
                            severity: None,
                        }
                        .json(None)
                    })
                    .collect(),
            ),
            Graph::SearchBy {
                id,
                metric,
                dimension,
                statistic,
                period,
            } => put(
                "search",
                json!({
                    "id": id,
                    "expression": search_expression(metric, dimension, statistic, period),
                    "parameters": [NAMESPACE.json()],
                }),
            ),
        };
        Value::Object(o)
    }
}

/// The contract's `dashboard`: its rows, each widget with its place.
pub fn contract() -> Value {
    let mut y = 0;
    let rows: Vec<Value> = ROWS
        .iter()
        .map(|row| {
            let mut x = 0;
            let widgets: Vec<Value> = row
                .iter()
                .map(|w| {
                    let out = w.json(x, y);
                    x += w.width;
                    out
                })
                .collect();
            y += row.iter().map(|w| w.height).max().unwrap_or(0);
            Value::Array(widgets)
        })
        .collect();
    json!({ "rows": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dashboard's grid is 24 units wide.
    const GRID_WIDTH: u32 = 24;

    #[test]
    fn the_rows_fit_the_grid_and_the_titles_say_what_the_lines_are() {
        for row in ROWS {
            assert!(!row.is_empty());
            assert!(row.iter().map(|w| w.width).sum::<u32>() <= GRID_WIDTH);
            for w in *row {
                assert!(w.width > 0 && w.height > 0, "{}", w.title);
                // "(5 min sums)": the statistic and the period the title announces.
                if let Some(minutes) = w.title.strip_suffix(" min sums)") {
                    let minutes: u32 = minutes.rsplit('(').next().unwrap().parse().unwrap();
                    let Graph::Totals {
                        statistic, period, ..
                    } = w.graph
                    else {
                        panic!("{}: not totals", w.title)
                    };
                    assert_eq!((statistic, period), (Statistic::Sum, minutes * 60));
                }
            }
        }
    }

    #[test]
    fn the_contract_places_each_widget_and_names_its_lines() {
        let c = contract();
        let rows = c["rows"].as_array().unwrap();
        let places: Vec<Vec<(u64, u64)>> = rows
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|w| (w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap()))
                    .collect()
            })
            .collect();
        assert_eq!(places, [vec![(0, 0), (12, 0)], vec![(0, 6)]]);
        let fleet = &rows[0][0];
        assert_eq!(fleet["period"], 300);
        let names: Vec<&str> = fleet["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["metric_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "AutoFixApplied",
                "DriftDetected",
                "AutoFixFailed",
                "FlapSuppressed"
            ]
        );
        assert_eq!(
            fleet["metrics"][0],
            json!({
                "source": "guard",
                "resource": null,
                "namespace": { "sam_parameter": "MetricsNamespace", "cdk_key": "metricsNamespace" },
                "metric_name": "AutoFixApplied",
                "statistic": "Sum",
                "dimensions": {},
            })
        );
        assert_eq!(
            rows[0][1]["search"],
            json!({
                "id": "drift",
                "expression": "SEARCH('{${MetricsNamespace},Region} MetricName=\"DriftDetected\"', 'Sum', 300)",
                "parameters": [{ "sam_parameter": "MetricsNamespace", "cdk_key": "metricsNamespace" }],
            })
        );
    }
}
