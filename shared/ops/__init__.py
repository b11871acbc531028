"""Commands for operators: reconciliation against Bling, and dead-letter replay."""
