"""rlbook: replicate RL-for-LLM methods at laptop scale."""
__version__ = "0.1.0"
