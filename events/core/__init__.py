"""The pure domain: the run state machine, who acts next, batching, health and verdicts, the
ledger of a run.  No I/O here: no Redis, no subprocess, no files, no clock, no config (the import
contracts in pyproject.toml check it); services call these functions and do the I/O."""
