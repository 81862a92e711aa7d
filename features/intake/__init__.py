"""Intake: a user's file or records → typed canonical rows, or quarantine records with a reason each."""
