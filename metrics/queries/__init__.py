"""Saved SQL queries and the read-only explorer (DESIGN.md: metrics)."""
