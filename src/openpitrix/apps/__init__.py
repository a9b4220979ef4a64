"""Catalog: apps and app versions cached from repos."""
