"""Studies and their evidence: claims, metrics, regime checks, power, measurements, figures, lessons."""
