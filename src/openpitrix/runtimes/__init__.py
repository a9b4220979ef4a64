"""Runtimes (where apps run) and the credentials that reach them."""
