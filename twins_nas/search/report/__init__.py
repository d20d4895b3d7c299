"""The report of a study, from its storage alone: best_config.json, pareto.json, trials.csv,
the Pareto figure; and the study in optuna-dashboard."""
from .export import export_study

__all__ = ["export_study"]
