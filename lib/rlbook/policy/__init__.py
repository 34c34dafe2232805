"""The policy model: loading it, generating completions, the rollout batch."""
