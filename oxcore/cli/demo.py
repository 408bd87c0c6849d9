"""``oxcore demo``: build a small MLP and attention block, show the plan, evaluate, time."""
