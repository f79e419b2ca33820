"""Datasets and transforms."""
