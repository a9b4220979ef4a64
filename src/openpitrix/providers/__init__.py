"""Runtime provider plugins: the contract, the registry, and one package per provider."""
