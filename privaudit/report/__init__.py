"""Reporters: turn audit results (data) into text, tables, documents. Reporters never compute."""
