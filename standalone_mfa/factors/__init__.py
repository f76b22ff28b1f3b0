"""The ways to prove who you are: passwords, TOTP, recovery codes and remembered
devices, the throttles that limit guessing, and `proofs`, the one way each is checked."""
