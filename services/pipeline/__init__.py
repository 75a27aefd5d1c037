"""The fix pipeline's roles as consumers of the log, and the I/O they do: measuring a target,
git (worktrees, compare-and-swap), requesting, hosting and finishing a run."""
