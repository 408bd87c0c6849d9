"""Planning and running: placement, segments and transfers, ``Plan`` with named steps, the plan
cache and re-planning after kernel failures.

These are the public planning names the layers above (``Array``, ``oxcore.compile``,
autotune, the CLI) use; the modules behind them are private. Planning sees graph nodes and
the objects the runtime hands down (``install_runtime``), never the plugin manager itself.
"""

from .context import Runtime, install_runtime, runtime
from .placement import Planner
from .explain import Explanation, UserOp
from .plan import Decomposition, Output, Plan, PlanNode, Step, Transfer, run_steps
from .run import (FAILURES, LOCK, RECORDERS, STATS, build_plan, clear_cache, config_key, disable_failed, evaluate,
                  explain, kept_failing, plan_only_on, retrying)
from .segment import KernelFailed, compiled, guard, transfer_fn

__all__ = ["Runtime", "install_runtime", "runtime", "Planner", "Explanation", "UserOp", "Decomposition", "Output", "Plan", "PlanNode", "Step",
           "Transfer", "run_steps", "FAILURES", "LOCK", "RECORDERS", "STATS", "build_plan", "clear_cache",
           "config_key", "disable_failed", "evaluate", "explain", "kept_failing", "plan_only_on", "retrying",
           "KernelFailed", "compiled", "guard", "transfer_fn"]
