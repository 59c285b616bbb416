"""The runbook core: the state table, the steps, upkeep, verdicts, the report, and the protocols it drives."""
