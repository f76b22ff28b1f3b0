"""What is done to accounts, above sign-in: a user's own changes (`self_service`,
`authenticator`, `emails`), an administrator's (`administration`, `reset`).
The records they act on (users, groups, settings, tokens) are in `directory`."""
