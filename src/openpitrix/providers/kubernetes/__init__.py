"""The Kubernetes runtime provider."""
