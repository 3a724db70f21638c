"""Judging answers: GAP and accuracy, solution files, landmark names, the report page and the pictures."""
