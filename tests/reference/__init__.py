"""Independent re-implementations that the tests use as oracles (and the benchmarks time)."""
