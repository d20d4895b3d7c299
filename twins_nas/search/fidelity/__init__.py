"""The rank-fidelity experiment (`twins-nas fidelity`): how well each cheap scorer ranks
architectures as a longer reference training does."""
from .experiment import (
                         FidelitySetup,
                         FidelitySummary,
                         fidelity_experiment,
                         open_plan,
                         run_fidelity,
                         summarize,
                         write_outputs,
)

__all__ = ["FidelitySetup", "FidelitySummary", "fidelity_experiment", "open_plan", "run_fidelity", "summarize",
           "write_outputs"]
