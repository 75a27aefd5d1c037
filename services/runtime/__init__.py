"""The consumer runtime and what every service process needs: consumer groups with partition
leases, the app wiring, logging, and the cancel scope of a step."""
