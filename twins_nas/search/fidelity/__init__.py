"""The rank-fidelity experiment (`twins-nas fidelity`): how well each cheap scorer ranks
architectures as a longer reference training does."""
from .experiment import open_plan, run_fidelity, summarize, write_outputs

__all__ = ["open_plan", "run_fidelity", "summarize", "write_outputs"]
