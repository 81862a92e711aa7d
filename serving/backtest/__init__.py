"""The BACUDA simulation protocol: replay labelled history week by week under an inspection capacity.

After WCO BACUDA, "Active Learning for Human-in-the-Loop Customs Inspection". Each week every policy selects
⌈capacity·N⌉ of that week's declarations. Only its selections reveal their labels, at the week's end (their
control date is the week's last day, so later weeks' entity profiles can use them but the same week cannot).
Model policies refit on what they have revealed every K weeks, or the next week when the outcomes of their
exploration picks raise the monitor's alert (fraud well above what their model expected of those picks). Every
policy has its own revealed set and its own model.

The oracle (the simulator's hidden truth, or a user's own labels) is read in two places only: `_reveal`
(a selected row's label) and the metrics. Features see the warm-up's historical labels and the policy's own
reveals, never anything else.

- `config`: the settings (`BacktestConfig`) and the policies to compare.
- `data`: what is replayed (`BacktestData`), from the simulator or a user's labelled file.
- `policies`: the selection policies (random, rules, model, hybrid, targeted) and what each model policy knows.
- `replay`: the weekly loop (`run_backtest`) and its result.
- `report`: the weekly table, the typed summary (`BacktestSummary.to_dict()` for JSON: per policy its
  new-scheme frauds found and weeks to the first, and for a policy with a random part its Horvitz-Thompson
  estimate of the fraud rate with the weekly intervals' coverage) and the findings.

Pure: no Prefect, no MLflow.
"""
from serving.backtest.config import POLICIES, REFIT_ITERATIONS, BacktestConfig
from serving.backtest.data import BacktestData, from_islas, from_labelled, from_world, label_free
from serving.backtest.policies import Knowledge, revealed_profiles, shared_features, with_profiles
from serving.backtest.replay import BacktestResult, run_backtest
from serving.backtest.report import BacktestSummary, HitRates, PolicySummary, Totals, weekly_table

__all__ = [
    "POLICIES", "REFIT_ITERATIONS", "BacktestConfig", "BacktestData", "BacktestResult", "BacktestSummary", "HitRates",
    "Knowledge", "PolicySummary", "Totals", "from_islas", "from_labelled", "from_world", "label_free",
    "revealed_profiles", "run_backtest", "shared_features", "weekly_table", "with_profiles",
]
