"""Simulators: the analytic simulator (`analytic`) and the Monte Carlo spin simulator (`montecarlo`)."""
