"""Running the service over time: housekeeping of expired rows (`maintenance`)."""
