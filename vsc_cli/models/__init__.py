"""The families (posterior and prior distributions and their registered pairs), networks, the VAE harness, schedules and training terms."""
