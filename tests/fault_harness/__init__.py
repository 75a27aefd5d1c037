"""Helper processes for the fault tests (tests/test_faults.py): a worker that can be made to die."""
