"""Clinical decision support: vital-sign detection, NEWS2, alerts and medication safety."""
