"""Scores with their uncertainty: 95% intervals (``stats``), the classification metrics, tables
and figures the ``evaluate_*`` stages write (``reports``), and each lab's rows of the results
table (``rows``).
"""
