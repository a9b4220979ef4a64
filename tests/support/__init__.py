"""Test support: real chart repositories and a local HTTP(S) repo server with fault injection."""
