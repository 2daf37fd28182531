"""torch_landscape: training-time landscape diagnostics."""
