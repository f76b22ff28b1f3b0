"""What is done to accounts: users and their settings, a user's own changes
(`self_service`), an administrator's (`administration`, `reset`), API tokens."""
