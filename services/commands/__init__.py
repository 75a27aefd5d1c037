"""Operator commands: the ``airfix`` command line and what its subcommands do (run, tail, dlq,
trim, replay, export/import, ...)."""
