"""Training: state, optimizers, losses and metrics, pure step functions, and the loop."""
