"""The HTTP edge every router uses: dependencies, error rendering, limits, health, docs."""
