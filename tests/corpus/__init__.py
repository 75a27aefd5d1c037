"""The real-world corpus: released projects turned into git repositories, and an independent judge.

Why it exists: airfix's own measurements cannot vouch for themselves.  These modules fetch real
releases, make fresh repositories of them, and re-measure every commit of a fix run with the tools
called directly (never through airfix), so the acceptance test can compare airfix's claims against
what is really in the repository.  Nothing in this package imports airfix.
"""
