"""``oxcore bench ...`` commands (harness in ``oxcore.bench``)."""
