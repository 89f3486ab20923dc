"""Condition languages for edge ``when`` clauses and router rules: CEL expressions (strings)
and JSON Logic (objects)."""
