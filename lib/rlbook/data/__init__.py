"""Problems and tasks: generators, hub data sets, verifiers."""
