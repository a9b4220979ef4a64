"""Clusters: app instances deployed onto runtimes, and their release history."""
