"""Orchestration: plan -> executor (our pool or Spark) -> slice job -> aggregate -> report.

``plan`` cuts the window into slices, ``executors`` runs them (``pieces`` splits them by
region), ``slicejob`` / ``verifyjob`` are what a worker does with one slice, ``export`` /
``verify`` turn outcomes into a report, the ledger and an exit code.
"""
