"""Batch scoring, quote extraction and the HTTP service."""
