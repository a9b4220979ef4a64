"""HTTP gateway: app factory, lifespan, dependencies, error rendering, health."""
