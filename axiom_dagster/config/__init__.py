"""YAML configuration: pydantic models for the main file, listeners and rulesets, and loading.
Imports nothing else from axiom_dagster: every other package may import it.
"""
