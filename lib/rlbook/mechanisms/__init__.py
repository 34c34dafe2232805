"""The registered pure functions a method is made of: estimators, losses, rewards, samplers, filters, phases, credit assignment, length control, curricula, and the presets naming them."""
