"""CLI plumbing shared by every command: one-line errors, quiet consoles, pre-flight checks, signals, temp folders."""
