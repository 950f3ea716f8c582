//! Showback (SPEC §11): teams first, models within each team, optionally a
//! label's values within each model, each with the change against the
//! previous period; teams carry the state of their budgets.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::aggregate::{push_csv_line, UsageReport};
use crate::domain::finops::chargeback::exact_usd;
use crate::domain::finops::coverage::usd;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Amounts {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    #[serde(serialize_with = "usd")]
    pub cost_usd: f64,
    #[serde(serialize_with = "usd")]
    pub previous_cost_usd: f64,
    #[serde(serialize_with = "usd")]
    pub change_usd: f64,
    /// `change_usd / previous_cost_usd`; null when the previous period cost
    /// nothing.
    pub change_ratio: Option<f64>,
}

impl Amounts {
    fn add(&mut self, current: bool, requests: i64, input: i64, output: i64, cost: f64) {
        if current {
            self.requests += requests;
            self.input_tokens += input;
            self.output_tokens += output;
            self.cost_usd += cost;
        } else {
            self.previous_cost_usd += cost;
        }
    }

    fn finish(&mut self) {
        self.change_usd = self.cost_usd - self.previous_cost_usd;
        self.change_ratio = (self.previous_cost_usd.abs() >= 1e-12)
            .then(|| self.change_usd / self.previous_cost_usd);
    }
}

/// A team's budget, as showback shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamBudget {
    pub id: String,
    pub period: String,
    pub amount_usd: f64,
    pub spend_usd: f64,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelNode {
    pub value: Option<String>,
    #[serde(flatten)]
    pub amounts: Amounts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelNode {
    pub model: Option<String>,
    #[serde(flatten)]
    pub amounts: Amounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<LabelNode>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamNode {
    /// null: records without a `team` tag.
    pub team: Option<String>,
    #[serde(flatten)]
    pub amounts: Amounts,
    /// The team's budgets (scope exactly `{"team": …}`) in their current
    /// period; the worst state first.
    pub budgets: Vec<TeamBudget>,
    pub models: Vec<ModelNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Showback {
    pub period: String,
    pub previous_period: String,
    pub from: String,
    pub to: String,
    /// The label whose values split each model (`label=`), if asked.
    pub label: Option<String>,
    pub totals: Amounts,
    pub teams: Vec<TeamNode>,
}

type Tree = BTreeMap<
    Option<String>,
    (
        Amounts,
        BTreeMap<Option<String>, (Amounts, BTreeMap<Option<String>, Amounts>)>,
    ),
>;

/// Builds the tree from the current and previous period's reports, both
/// grouped by `team, model` (and the label, if any, as a third dimension).
pub fn build(
    period: String,
    previous_period: String,
    (from, to): (String, String),
    label: Option<String>,
    current: &UsageReport,
    previous: &UsageReport,
    budgets: &dyn Fn(&str) -> Vec<TeamBudget>,
) -> Showback {
    let mut tree: Tree = BTreeMap::new();
    let mut totals = Amounts::default();
    for (is_current, report) in [(true, current), (false, previous)] {
        for row in &report.rows {
            let dim = |i: usize| row.dims.get(i).cloned().flatten();
            let s = &row.sums;
            let add = |a: &mut Amounts| {
                a.add(
                    is_current,
                    s.requests,
                    s.input_tokens,
                    s.output_tokens,
                    s.cost_usd,
                );
            };
            add(&mut totals);
            let team = tree.entry(dim(0)).or_default();
            add(&mut team.0);
            let model = team.1.entry(dim(1)).or_default();
            add(&mut model.0);
            if label.is_some() {
                add(model.1.entry(dim(2)).or_default());
            }
        }
    }
    totals.finish();
    let by_cost = |a: &Amounts, b: &Amounts| {
        b.cost_usd
            .total_cmp(&a.cost_usd)
            .then(b.previous_cost_usd.total_cmp(&a.previous_cost_usd))
    };
    let mut teams: Vec<TeamNode> = tree
        .into_iter()
        .map(|(team, (mut amounts, models))| {
            amounts.finish();
            let mut models: Vec<ModelNode> = models
                .into_iter()
                .map(|(model, (mut amounts, labels))| {
                    amounts.finish();
                    let labels = label.as_ref().map(|_| {
                        let mut v: Vec<LabelNode> = labels
                            .into_iter()
                            .map(|(value, mut amounts)| {
                                amounts.finish();
                                LabelNode { value, amounts }
                            })
                            .collect();
                        v.sort_by(|a, b| by_cost(&a.amounts, &b.amounts));
                        v
                    });
                    ModelNode {
                        model,
                        amounts,
                        labels,
                    }
                })
                .collect();
            models.sort_by(|a, b| by_cost(&a.amounts, &b.amounts));
            let budgets = team.as_deref().map(budgets).unwrap_or_default();
            TeamNode {
                team,
                amounts,
                budgets,
                models,
            }
        })
        .collect();
    teams.sort_by(|a, b| by_cost(&a.amounts, &b.amounts));
    Showback {
        period,
        previous_period,
        from,
        to,
        label,
        totals,
        teams,
    }
}

impl Showback {
    /// CSV: one line per leaf (team × model, or × label value), in the JSON
    /// order, so the `cost_usd` column sums to the total; each line repeats
    /// its team's worst budget state (empty: no budget).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let mut header = vec!["period", "team", "model"];
        if self.label.is_some() {
            header.push("label");
        }
        header.extend([
            "requests",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "previous_cost_usd",
            "change_usd",
            "team_budget_state",
        ]);
        push_csv_line(&mut out, header.into_iter());
        for team in &self.teams {
            let state = team.budgets.first().map(|b| b.state.as_str()).unwrap_or("");
            for model in &team.models {
                let leaves: Vec<(Option<&str>, &Amounts)> = match &model.labels {
                    Some(labels) => labels
                        .iter()
                        .map(|l| (Some(l.value.as_deref().unwrap_or("")), &l.amounts))
                        .collect(),
                    None => vec![(None, &model.amounts)],
                };
                for (label, a) in leaves {
                    let nums = [
                        a.requests.to_string(),
                        a.input_tokens.to_string(),
                        a.output_tokens.to_string(),
                        exact_usd(a.cost_usd),
                        exact_usd(a.previous_cost_usd),
                        exact_usd(a.change_usd),
                    ];
                    let mut fields: Vec<&str> = vec![
                        &self.period,
                        team.team.as_deref().unwrap_or(""),
                        model.model.as_deref().unwrap_or(""),
                    ];
                    if let Some(label) = label {
                        fields.push(label);
                    }
                    fields.extend(nums.iter().map(String::as_str));
                    fields.push(state);
                    push_csv_line(&mut out, fields.into_iter());
                }
            }
        }
        out
    }
}
