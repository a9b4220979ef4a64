"""Repositories: where apps come from (Helm chart repos and VM app repos)."""
