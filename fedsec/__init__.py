"""fedsec: federated-learning simulation for security and algorithm research (Flower + Ray)."""
