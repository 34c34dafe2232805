"""Multi-stage methods made of cached stages: RFT-vs-SFT forgetting, MALT, Digi-Q, Best-of-N."""
