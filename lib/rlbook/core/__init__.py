"""Infrastructure every layer uses: errors, registries, config, paths, caches, progress, guards."""
