"""Repo indexer: fetch repository indexes and sync them into the catalog."""
