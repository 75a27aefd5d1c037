"""The projections' pure core: folds of the log into typed descriptions of Redis writes, no I/O."""
