"""Scores with their uncertainty: 95% intervals (``stats``), and the classification metrics,
tables and figures the ``evaluate_*`` stages write (``reports``).
"""
