"""The QingCloud runtime provider: its IaaS API client (signed requests, jobs)."""
